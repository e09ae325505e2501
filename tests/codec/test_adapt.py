"""Per-image adaptation: fitting, the adapter's bytes, and the exact adapted network."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from _adapt_data import period_three
from llic_imaging.codec import adapt
from llic_imaging.codec.engine import rate_tiles, tile_grid
from llic_imaging.errors import StreamError
from llic_imaging.model import zoo
from llic_imaging.model.runtime import deterministic


@pytest.fixture(scope="module")
def net():
    return zoo.load()[0]


def _count(net) -> int:
    return sum(p.numel() for p in net.state_dict().values())


def _deltas(net, seed: int = 0) -> np.ndarray:
    """Small random changes that keep every integer in range."""
    rng = np.random.default_rng(seed)
    d = rng.integers(-3, 4, _count(net)) * (rng.random(_count(net)) < 0.3)
    base = np.concatenate([v.ravel() for v in adapt.integers(net).values()])
    weight = np.concatenate(
        [np.full(v.size, not k.endswith("bias")) for k, v in adapt.integers(net).items()]
    )
    return np.where(weight & (np.abs(base + d) > 127), 0, d)


def test_the_adapted_network_holds_the_base_integers_plus_the_deltas(net) -> None:
    d = _deltas(net)
    tuned = adapt.adapted(net, d)
    before, after = adapt.integers(net), adapt.integers(tuned)
    np.testing.assert_array_equal(
        np.concatenate([(after[k] - before[k]).ravel() for k in before]), d
    )
    assert adapt.integers(zoo.load()[0])["head.bias"].tolist() == before["head.bias"].tolist()


def test_pack_and_unpack_round_trip_every_delta_size(net) -> None:
    d = _deltas(net, 1)
    d[:4] = [2**21, -(2**21), 127, -254]
    np.testing.assert_array_equal(adapt.unpack(adapt.pack(d), net), d)


def _deflate(raw: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def test_malformed_adapters_are_refused(net) -> None:
    good = adapt.pack(_deltas(net, 2))
    n = _count(net)
    bad = {
        "truncated": good[: len(good) // 2],
        "not deflate": b"\xff" * 40,
        "trailing bytes": good + b"\x00",
        "one delta short": _deflate(b"\x00" * (n - 1)),
        "one delta more": _deflate(b"\x00" * (n + 1)),
        "unterminated varint": _deflate(b"\x00" * (n - 1) + b"\x80"),
        "overlong varint": _deflate(b"\x00" * (n - 1) + b"\x80\x80\x80\x80\x01"),
        "too long inflated": _deflate(b"\x00" * (4 * n + 1)),
    }
    for payload in bad.values():
        with pytest.raises(StreamError):
            adapt.unpack(payload, net)


def test_deltas_that_leave_the_integer_range_are_refused(net) -> None:
    d = np.zeros(_count(net), np.int64)
    d[0] = 255  # the first weight of the embedding: beyond +-127 whatever its base value
    with pytest.raises(StreamError, match="range"):
        adapt.adapted(net, d)


def test_an_adapter_that_makes_sums_inexact_is_refused() -> None:
    """In a 128-channel network (wider than any shipped one) deltas that take the first W_A
    layer to full weights let its sums pass 2**24: the decoder refuses the adapter."""
    from llic_imaging.model import quant
    from llic_imaging.model.hpac import HpacConfig, HpacNet

    wide = HpacNet(HpacConfig(channels=128)).eval().requires_grad_(False)
    base = adapt.integers(wide)
    target = {k: v.copy() for k, v in base.items()}
    target["blocks.0.wa.weight"][:] = quant.W_MAX
    target["blocks.0.wa.bias"][:] = quant.BIAS_MAX
    adapt.adapted(wide, np.zeros(_count(wide), np.int64))  # the base itself is exact
    d = np.concatenate([(target[k] - base[k]).ravel() for k in base])
    with pytest.raises(StreamError, match="2\\*\\*24"):
        adapt.adapted(wide, d)


def test_a_fit_the_decoder_would_refuse_is_not_sent(net, monkeypatch) -> None:
    """A fitted network whose sums could pass 2**24 (possible for layers wider than the shipped
    ones) is dropped, as a fit that does not pay is: the plain stream is kept."""

    def refuse(*_: object) -> None:
        msg = "inexact"
        raise StreamError(msg)

    monkeypatch.setattr(adapt, "require_exact", refuse)
    with deterministic(1):
        assert adapt.fit(net, period_three(1).astype(np.int64), tile=64, steps=5) is None


def test_fitting_lowers_the_bits_of_its_own_image(net) -> None:
    stack = period_three(1).astype(np.int64)
    refs = tile_grid(stack.shape, 64)
    with deterministic(1):
        d = adapt.fit(net, stack, tile=64, steps=30)
        assert d is not None
        assert d.any()
        before = rate_tiles(net, stack, refs, patch=64, device=torch.device("cpu")).sum()
        after = rate_tiles(
            adapt.adapted(net, d), stack, refs, patch=64, device=torch.device("cpu")
        ).sum()
    assert after < 0.97 * before


def test_images_smaller_than_a_crop_are_not_fitted(net) -> None:
    small = np.random.default_rng(0).integers(0, 4000, (1, 40, 300))
    with deterministic(1):
        assert adapt.fit(net, small, tile=64, steps=5) is None


def test_fitting_some_parameters_leaves_the_others_unchanged(net) -> None:
    with deterministic(1):
        d = adapt.fit(net, period_three(1).astype(np.int64), tile=64, steps=5, names={"head.bias"})
    assert d[-2:].any()  # head.bias is the last tensor
    assert not d[:-2].any()


def test_a_diverging_fit_stops_and_returns_nothing_worse(net, monkeypatch) -> None:
    """With a learning rate far too high the held-out check stops the fit at its first check,
    and since no check beat the unfitted network, nothing is returned to code with."""
    from llic_imaging.train import loop

    steps: list[int] = []

    def counted(params, cfg, batch_loss, *, log):
        loop.finetune(params, cfg, batch_loss, log=lambda s, v: steps.append(s) or log(s, v))

    monkeypatch.setattr(adapt, "LR", 1.0)
    monkeypatch.setattr(adapt, "finetune", counted)
    with deterministic(1):
        assert adapt.fit(net, period_three(1).astype(np.int64), tile=64, steps=200) is None
    assert steps[-1] == adapt.CHECK
