"""The network: dense teacher forcing == step-wise CSI decoding == the CPU path, causality,
integer bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llic_imaging.codec.schedule import Geometry
from llic_imaging.model import quant, zoo
from llic_imaging.model.cpu_kernel import CpuSteps
from llic_imaging.model.hpac import (
    HpacConfig,
    HpacNet,
    TileParams,
    accumulator_bounds,
    require_exact,
)
from llic_imaging.model.runtime import deterministic

PATCH = 32


def _params(n: int, shift: int, mid: int, vmax: int) -> TileParams:
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return TileParams(full(shift), full(mid), full(vmax))


def _dense(net: HpacNet, img: np.ndarray, geo: Geometry, p: TileParams):
    u = torch.from_numpy(geo.to_patches(img).astype(np.float32))
    inside = torch.from_numpy(geo.inside.astype(np.float32))
    with deterministic():
        return net.dense(u, inside, p)


def _stepwise(net: HpacNet, img: np.ndarray, geo: Geometry, p: TileParams):
    u = torch.from_numpy(geo.to_patches(img).astype(np.float32))
    mu, sc = torch.full(u.shape, -1.0), torch.full(u.shape, -1.0)
    pp = TileParams(p.shift[:, None], p.mid[:, None], p.vmax[:, None])
    with deterministic():
        caches = net.new_caches(torch.from_numpy(geo.inside))
        q = net.qparams()
        for s in range(geo.steps):
            pred = net.step(caches, s, pp, q)
            r, c = (torch.from_numpy(i) for i in geo.step_cells(s))
            mu[:, r, c], sc[:, r, c] = pred.mu16, pred.scale
            caches.at(caches.pixels, s).copy_(u[:, r, c])  # zero outside the tile
    return mu.reshape(-1), sc.reshape(-1)


def _assert_paths_agree(net: HpacNet, img: np.ndarray, *, shift: int) -> None:
    """Dense teacher forcing, step-wise decoding and the CPU path give identical integers
    inside the tile."""
    geo = Geometry(*img.shape, PATCH)
    p = _params(geo.n_patches, shift, int(np.median(img)), int(img.max()))
    d = _dense(net, img, geo, p)
    mu, sc = _stepwise(net, img, geo, p)
    inside = torch.from_numpy(geo.inside.reshape(-1))
    assert torch.equal(mu[inside], d.mu16.reshape(-1)[inside])
    assert torch.equal(sc[inside], d.scale.reshape(-1)[inside])
    k = CpuSteps(net, geo.inside.astype(np.float32), *(t.numpy() for t in (p.shift, p.mid, p.vmax)))
    k.pixels[:] = geo.to_patches(img)
    cmu, csc = (torch.from_numpy(a.reshape(-1)) for a in k.dense())
    assert torch.equal(cmu[inside], d.mu16.reshape(-1)[inside])
    assert torch.equal(csc[inside], d.scale.reshape(-1)[inside])


@pytest.fixture(scope="module")
def net() -> HpacNet:
    return zoo.load()[0]


@pytest.mark.parametrize(("h", "w"), [(128, 128), (70, 45), (33, 97)])
def test_dense_equals_stepwise_on_real_image(
    net: HpacNet, ct_slice: np.ndarray, h: int, w: int
) -> None:
    _assert_paths_agree(net, ct_slice[:h, :w], shift=2)


@pytest.mark.parametrize(
    "config",
    [
        HpacConfig(blocks=2, mlp_ratio=1, shift_input=1),
        HpacConfig(channels=16, embed_kernel=5, dw_kernel=5, shift_input=1),
        HpacConfig(channels=8),
    ],
    ids=["lite-shift-input", "other-kernels", "other-widths"],
)
def test_dense_equals_stepwise_for_other_architectures(
    ct_slice: np.ndarray, config: HpacConfig
) -> None:
    """Every architecture the configs allow keeps the two paths identical (random weights)."""
    torch.manual_seed(0)
    net = HpacNet(config).eval().requires_grad_(False)
    _assert_paths_agree(net, ct_slice[:70, :45], shift=3)


def test_features_extra_is_added_to_the_embedding(net: HpacNet, ct_slice: np.ndarray) -> None:
    """A zero ``extra`` accumulator leaves :meth:`HpacNet.dense` unchanged; one that lifts the
    embedding moves predictions, and it receives the MED anchors the head uses."""
    img = ct_slice[:64, :64]
    geo = Geometry(64, 64, PATCH)
    p = _params(geo.n_patches, 1, int(np.median(img)), int(img.max()))
    u = torch.from_numpy(geo.to_patches(img).astype(np.float32))
    inside = torch.from_numpy(geo.inside.astype(np.float32))
    base = _dense(net, img, geo, p)
    seen = []

    def zero(anchor: torch.Tensor) -> torch.Tensor:
        seen.append(anchor)
        return torch.zeros(*anchor.shape, net.config.channels)

    with deterministic():
        x, anchor = net.features(u, inside, p, zero)
        same = net.head_prediction(x, anchor, p)
        lifted = net.head_prediction(*net.features(u, inside, p, lambda a: zero(a) + 64.0), p)
    assert torch.equal(seen[0], anchor)
    assert torch.equal(same.mu16, base.mu16)
    assert torch.equal(same.scale, base.scale)
    assert not torch.equal(lifted.mu16, base.mu16)


def test_no_step_sees_its_own_or_later_pixels(net: HpacNet, ct_slice: np.ndarray) -> None:
    """Perturb every pixel of step >= s (and every other patch): predictions of step s stay put."""
    img = ct_slice[:64, :64].copy()
    geo = Geometry(64, 64, PATCH)
    p = _params(geo.n_patches, 1, int(np.median(img)), int(img.max()) + 500)
    base = _dense(net, img, geo, p)
    rng = np.random.default_rng(0)
    step = geo.step_map
    for s in (0, 1, 2, 17, 40, 93):
        pat = geo.to_patches(img).copy()
        later = np.broadcast_to(step >= s, pat.shape).copy()
        later[1:] = True  # other patches entirely: patches are independent
        pat[later] = rng.integers(0, int(img.max()) + 500, later.sum())
        pert = _dense(net, geo.from_patches(pat), geo, p)
        at = np.zeros(pat.shape, bool)
        at[0] = step == s
        at_t = torch.from_numpy(at)
        assert torch.equal(base.mu16[at_t], pert.mu16[at_t]), f"step {s} saw later pixels"
        assert torch.equal(base.scale[at_t], pert.scale[at_t])


def test_earlier_pixels_do_matter(net: HpacNet, ct_slice: np.ndarray) -> None:
    """Sanity check of the perturbation test: changing earlier steps does change predictions."""
    img = ct_slice[:32, :32].copy()
    geo = Geometry(32, 32, PATCH)
    p = _params(1, 1, int(np.median(img)), int(img.max()) + 500)
    base = _dense(net, img, geo, p)
    pert_img = img.copy()
    pert_img[geo.step_map < 30] += 300
    pert = _dense(net, pert_img, geo, p)
    assert not torch.equal(base.mu16[0][geo.step_map == 30], pert.mu16[0][geo.step_map == 30])


@pytest.mark.parametrize("name", zoo.available())
def test_shipped_accumulators_stay_below_2_pow_24(name: str) -> None:
    """Integer exactness bound of every shipped model, from its weights for worst-case inputs
    (``zoo.load`` refuses a model that fails it)."""
    net = zoo.load(name)[0]
    bounds = accumulator_bounds(net)
    assert len(bounds) == 2 + 6 * net.config.blocks  # embed, head, per block 5 1x1 + depthwise
    assert max(bounds.values()) <= quant.EXACT_MAX


def test_folded_weights_are_integers(net: HpacNet) -> None:
    """``qparams`` folds ``2**-W_FRAC`` into weights and biases: unfolded, they are the integers
    the bound is computed on."""
    unfold = 2.0**quant.W_FRAC
    q = net.qparams()
    pairs = [q["embed"], q["head"]]
    for qb in q["blocks"]:
        pairs += [qb["wav"], qb["wo"], qb["w1"], qb["w2"], (qb["dw"], qb["dw_bias"])]
    for t in (t * unfold for pair in pairs for t in pair):
        assert torch.equal(t, t.round())


def _saturated(config: HpacConfig) -> HpacNet:
    """A network of ``config`` whose first W_A layer has every weight and bias at its limit."""
    net = HpacNet(config).eval().requires_grad_(False)
    wa = net.blocks[0].wa
    wa.weight.fill_(quant.W_MAX / 2**quant.W_FRAC)
    wa.bias.fill_(quant.BIAS_MAX / 2 ** (quant.W_FRAC + quant.A_FRAC))
    return net


def test_accumulator_bound_is_the_worst_case_sum() -> None:
    """Per output channel: largest input times the sum of absolute integer weights, plus the
    absolute bias (W_A reads the 11-bit residual stream)."""
    net = _saturated(HpacConfig(channels=8))
    assert (
        accumulator_bounds(net)["blocks.0.wa"] == 8 * quant.W_MAX * quant.RES_MAX + quant.BIAS_MAX
    )


def test_too_wide_a_layer_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """160 channels at full weight sum past 2**24: export and load (here from
    $LLIC_MODEL_PATH) refuse the model."""
    import hashlib
    import json

    from safetensors.torch import save

    from llic_imaging.errors import ModelError
    from llic_imaging.train.export import export

    net = _saturated(HpacConfig(channels=160))
    with pytest.raises(ModelError, match="blocks.0.wa"):
        require_exact(net, ModelError, "test")
    with pytest.raises(ModelError, match="2\\*\\*24"):
        export(net, "wide-v0", {}, weights_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    data = save({k: v.contiguous() for k, v in net.state_dict().items()})
    (tmp_path / "wide.safetensors").write_bytes(data)
    entry = {"file": "wide.safetensors", "sha256": hashlib.sha256(data).hexdigest()}
    entry["config"] = net.config.to_dict()
    (tmp_path / "MODELS.json").write_text(json.dumps({"wide-v0": entry}))
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="2\\*\\*24"):
        zoo.load("wide-v0")


def test_parameter_count_is_small() -> None:
    n = sum(p.numel() for p in HpacNet(HpacConfig()).parameters())
    assert n < 1_000_000


def test_luts_match_generator() -> None:
    gen = quant.generate_luts()
    shipped = quant.lut_tables()
    for k in gen:
        np.testing.assert_array_equal(gen[k], shipped[k])
