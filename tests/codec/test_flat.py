"""Flat flags (codec format 7): pixels whose four causal neighbours agree ask "the same?" first."""

from __future__ import annotations

import numpy as np
import pytest

import llic_imaging
from _streams import chunk_headers
from _value_map_data import thresholded
from llic_imaging import container
from llic_imaging.codec import engine, flat
from llic_imaging.codec.engine import ChunkParams
from llic_imaging.codec.schedule import Geometry
from llic_imaging.errors import StreamError


def footprint(shape: tuple[int, int] = (150, 140), seed: int = 0) -> np.ndarray:
    """A reprojected scene: noisy 16-bit radiance inside a slanted footprint, nodata 0 around
    it (``noweb.tif``'s layout)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(14000, 1500, shape).astype(np.uint16)
    y, x = np.mgrid[: shape[0], : shape[1]]
    a[(x + 0.6 * y < 0.5 * shape[1]) | (x - 0.5 * y > 0.7 * shape[1])] = 0
    return a


def test_candidates_need_four_agreeing_coded_neighbours() -> None:
    values = Geometry(4, 4, 4).framed()
    values[0, 1:4, 1:5] = [[7, 7, 7, 7], [7, 7, 7, -1], [7, 3, 7, 7]]  # (1, 3) not coded
    at = (np.zeros(5, np.int64), np.array([1, 1, 1, 2, 0]), np.array([1, 2, 3, 3, 1]))
    ok, v = flat.candidates(values, at)
    # (1, 1): all four 7; (1, 2): NE is (0, 3) = 7, W (1, 1) = 7; (1, 3): NE beyond the patch;
    # (2, 3): N is not coded; (0, 1): nothing above the first row
    np.testing.assert_array_equal(ok, [True, True, False, False, False])
    assert v[0] == v[1] == 7


def test_encoder_frequencies_are_the_decoders_step_by_step() -> None:
    """The encoder computes every flag's probability at once; the decoder step by step from
    its counts. They must be the same integers."""
    rng = np.random.default_rng(1)
    geo_steps = np.repeat(np.arange(6), [5, 9, 3, 12, 7, 4])
    n = geo_steps.size
    r, c = np.divmod(np.arange(n), 8)
    u = (rng.random(n) < 0.15).astype(np.int64)  # mostly 0: many flags, some of them misses
    values = np.full((1, 8, 10), -1, np.int64)
    values[0, 1 + r, 1 + c] = u
    f = flat.flags(values, (np.zeros(n, np.int64), r, c), geo_steps)
    assert f.at.size > 10
    assert 0 < f.equal.sum() < f.at.size
    equal = seen = 0
    for s in range(6):
        in_step = geo_steps[f.at] == s
        for row in f.freqs[in_step]:
            np.testing.assert_array_equal(row, flat.frequencies(equal, seen))
        equal += int(f.equal[in_step].sum())
        seen += int(in_step.sum())
    assert f.freqs.sum(1).tolist() == [4096.0] * f.at.size


def test_nodata_borders_take_flat_flags_and_decode_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    a = footprint()
    s = llic_imaging.encode(a, tile=64, patch=32)  # partial tiles and patches
    kinds = chunk_headers(s)
    assert llic_imaging.info(s).codec_format == 7
    assert sum(k.flat for k in kinds) >= 4
    assert kinds[5].flat  # 64 x 12 at (64, 128): partial patches
    np.testing.assert_array_equal(llic_imaging.decode(s, numthreads=1), a)
    np.testing.assert_array_equal(
        llic_imaging.decode(s, window=(40, 50, 60, 70)), a[40:100, 50:120]
    )
    assert llic_imaging.encode(a, tile=64, patch=32, numthreads=2) == s
    monkeypatch.setattr(engine, "_FLAT_MARGIN", np.inf)
    plain = llic_imaging.encode(a, tile=64, patch=32)
    assert llic_imaging.info(plain).codec_format < 7
    assert len(s) < 0.99 * len(plain)


def test_flat_flags_ride_on_value_maps_and_deltas() -> None:
    """A thresholded stack whose planes differ by a little noise inside the object: the first
    plane's ranks (a mapped tile) and the others' differences to the plane before (delta
    chunks, 0 on the background) all carry flags and decode exactly."""
    rng = np.random.default_rng(2)
    body = thresholded(1, noise=0)[0].astype(np.int64)
    stack = np.stack(
        [np.where(body > 0, body + rng.integers(-2, 3, body.shape), 0) for _ in range(3)]
    ).astype(np.uint8)
    s = llic_imaging.encode(stack, context=3)
    kinds = chunk_headers(s)
    assert (kinds[0].flat, bool(kinds[0].gaps)) == (1, True)
    assert (kinds[1].flat, kinds[1].delta) == (1, True)
    np.testing.assert_array_equal(llic_imaging.decode(s), stack)
    np.testing.assert_array_equal(llic_imaging.decode(s, 2), stack[2])


def test_rate_map_counts_the_flags() -> None:
    a = footprint()
    s = llic_imaging.encode(a, tile=64)
    kinds = chunk_headers(s)
    c = container.read(s)
    words = sum(len(c.payload(i)) - len(k.pack(7)) for i, k in enumerate(kinds))
    rates = llic_imaging.rate_map(a, tile=64)
    assert abs(rates.sum() / (8 * words) - 1) < 0.01
    assert rates[a == 0].mean() < 0.2  # patch edges and flag-free tiles: about 1 bit


@pytest.mark.parametrize("value", [0, 1])
def test_flat_field_round_trips_in_format_7_only(value: int) -> None:
    p = ChunkParams(9, 0, 500, 3, 250, tighten=2, taps=4, weights=(3,) * 11, flat=value)
    assert ChunkParams.unpack(p.pack(7) + b"w", fmt=7) == (p, b"w")
    assert len(p.pack(7)) == len(p.pack(6)) + 1
    assert p.format == (7 if value else 6)
    constant = ChunkParams(0, 5, 0, 0, 0)
    assert constant.pack(7) == constant.pack(6)  # no field: nothing is coded


def test_a_forged_flat_field_is_caught() -> None:
    """Flags switched on or off in a chunk that was coded the other way (checksums rewritten):
    the words are then read as other symbols, and the decoder refuses them (corrupt words or
    the array digest), never returning an image."""
    from dataclasses import replace

    s = llic_imaging.encode(footprint(), tile=64)
    c, headers = container.read(s), chunk_headers(s)
    with_flags = next(i for i, k in enumerate(headers) if k.flat)
    without = next(i for i, k in enumerate(headers) if k.coded and not k.flat)
    for i in (with_flags, without):
        p, words = ChunkParams.unpack(c.payload(i), fmt=7)
        forged = replace(p, flat=1 - p.flat).pack(7) + words
        chunks = [(e.key, forged if j == i else c.payload(j)) for j, e in enumerate(c.chunks)]
        stream = container.write(c.header, chunks, metadata=c.metadata, array_sha256=c.array_sha256)
        with pytest.raises(llic_imaging.LlicError):
            llic_imaging.decode(stream)


def test_malformed_flat_field_is_refused() -> None:
    p = ChunkParams(1, 0, 500, 3, 250)
    bad = p.pack(6) + b"\x02"
    with pytest.raises(StreamError, match="invalid"):
        ChunkParams.unpack(bad, fmt=7)
    with pytest.raises(StreamError, match="truncated"):
        ChunkParams.unpack(p.pack(6), fmt=7)
