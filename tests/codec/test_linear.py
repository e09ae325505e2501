"""Linear feedback (codec format 6): fitted weights over causal values and errors."""

from __future__ import annotations

import numpy as np
import pytest

import llic_imaging
from _linear_data import interpolated
from _streams import chunk_headers
from llic_imaging.codec import engine, linear
from llic_imaging.codec.engine import ChunkParams
from llic_imaging.errors import StreamError

N_TAPS = len(engine._TAPS)  # linear chunks' ``taps`` start after the feedback weightings


def _tap(dr: int, dc: int, error: bool = False) -> int:
    """Index of a tap in the full tap list."""
    for i, (r, c, e) in enumerate(zip(linear._DR, linear._DC, linear._IS_ERROR, strict=True)):
        if (r, c, bool(e)) == (dr, dc, error):
            return i
    raise AssertionError((dr, dc, error))


def test_taps_are_causal_and_sets_grow() -> None:
    """Every tap was coded in an earlier step of the knight order (dc + 2 dr < 0), and each
    set's value taps are those within its radius."""
    assert all(dc + 2 * dr < 0 for dr, dc in zip(linear._DR, linear._DC, strict=True))
    sizes = [len(s) for s in linear.SETS]
    assert sizes == [11, 26, 58]
    assert set(linear.SETS[0]) < set(linear.SETS[1]) < set(linear.SETS[2])


def test_correction_reads_values_and_errors_inside_the_tile_only() -> None:
    """Values framed as ``Geometry.framed`` gives them (-1 where nothing is coded), errors
    0 outside the tile, as the codec passes them."""
    values = np.full((1, 5, 6), -1, np.int64)
    values[0, 1:, 1:-1] = np.arange(1, 17).reshape(4, 4)
    errors = -np.arange(1, 17, dtype=np.int64).reshape(1, 4, 4)
    values[0, 1:, 4] = -1  # the tile ends after column 2
    errors[0, :, 3] = 0
    at = (np.zeros(3, np.int64), np.array([1, 1, 2]), np.array([1, 0, 2]))
    mu = np.array([100, 100, 100])
    w = np.zeros(len(linear.SETS[2]), np.int64)
    where = list(linear.SETS[2])
    w[where.index(_tap(0, -1))] = 256  # the W value, weight 1
    # W of (1, 1) is value 5 (x16 = 80), of (1, 0) outside the patch: nothing
    assert linear.correction(values, errors, at, mu, 2, w)[:2].tolist() == [80 - 100, 0]
    w[:] = 0
    w[where.index(_tap(-1, 1, error=True))] = 128  # half the NE error
    # NE of (1, 1) is (0, 2): error -3 -> -1.5, rounded half up: -1; of (2, 2) is (1, 3): outside
    assert linear.correction(values, errors, at, mu, 2, w).tolist() == [-1, -1, 0]


def test_corrections_of_several_chunks_are_each_chunks_correction() -> None:
    """The decoder corrects a step's linear chunks in one parallel call; the encoder each
    tile on its own: both must give the same integers, whatever the tap set per chunk."""
    rng = np.random.default_rng(1)
    values = rng.integers(-1, 300, (3, 4, 17, 18))
    errors = rng.integers(-500, 500, (3, 4, 16, 16))
    r = rng.integers(0, 16, 40)
    at = (rng.integers(0, 4, 40), r, rng.integers(0, 16, 40))
    mu = rng.integers(0, 16 * 300, (3, 40))
    sets = [0, 2, 1]
    weights = [tuple(rng.integers(-4095, 4096, len(linear.SETS[t]))) for t in sets]
    got = linear.corrections(values, errors, at, mu, sets, weights)
    for j, (t, w) in enumerate(zip(sets, weights, strict=True)):
        assert got[j].tolist() == linear.correction(values[j], errors[j], at, mu[j], t, w).tolist()


def test_fit_recovers_a_linear_predictor() -> None:
    """On an image that is 0.75 W + 0.25 N plus noise (around 500) and a network mean of 500,
    the fitted weights of the radius-2 set are those two."""
    rng = np.random.default_rng(0)
    x = np.zeros((64, 64))
    noise = rng.normal(0, 4, x.shape)
    for r in range(64):
        for c in range(64):
            w = x[r, c - 1] if c else 0.0
            n = x[r - 1, c] if r else 0.0
            x[r, c] = 0.75 * w + 0.25 * n + noise[r, c]
    values = np.full((1, 65, 66), -1, np.int64)
    values[0, 1:, 1:-1] = np.round(x).astype(np.int64) + 500
    r, c = np.mgrid[2:64, 2:62]
    at = (np.zeros(r.size, np.int64), r.ravel(), c.ravel())
    mu = np.full(r.size, 16 * 500, np.int64)
    weights = linear.fit(values, np.zeros((1, 64, 64), np.int64), at, mu, np.full(r.size, 40))
    taps = list(linear.SETS[0])
    got = {t: weights[0][taps.index(_tap(*t))] for t in ((0, -1), (-1, 0))}
    assert abs(got[(0, -1)] - 192) < 12
    assert abs(got[(-1, 0)] - 64) < 12
    assert all(abs(int(v)) <= linear.MAX_WEIGHT for s in weights for v in s)


def test_linear_header_round_trips_in_format_6_only() -> None:
    w = tuple(range(-5, 6))
    p = ChunkParams(9, 7, 600, 3, 30, 0, 4, N_TAPS, weights=w)
    data = p.pack(6)
    assert ChunkParams.unpack(data + b"words", fmt=6) == (p, b"words")
    for cut in range(len(data)):
        with pytest.raises(StreamError):
            ChunkParams.unpack(data[:cut], fmt=6)
    with pytest.raises(StreamError):
        ChunkParams.unpack(p.pack(5), fmt=5)  # taps past the feedback weightings
    bad = [
        ChunkParams(9, 7, 600, 3, 30, 16, 4, N_TAPS, weights=w),  # a gain beside weights
        ChunkParams(9, 7, 600, 3, 30, 0, 4, N_TAPS, weights=(linear.MAX_WEIGHT + 1, *w[1:])),
        ChunkParams(9, 7, 600, 3, 30, 0, 4, N_TAPS + len(linear.SETS)),  # no such set
    ]
    for q in bad:
        with pytest.raises(StreamError):
            ChunkParams.unpack(q.pack(6), fmt=6)


def test_linear_chunks_decode_exactly_in_partial_tiles_and_patches() -> None:
    a = interpolated()
    s = llic_imaging.encode(a, tile=64, patch=32)
    kinds = chunk_headers(s)
    assert llic_imaging.info(s).codec_format == 6
    assert sum(k.linear for k in kinds) >= 4
    assert kinds[2].linear  # 64 x 22: partial patches
    assert kinds[3].linear  # 36 x 64
    np.testing.assert_array_equal(llic_imaging.decode(s, numthreads=1), a)
    np.testing.assert_array_equal(llic_imaging.decode(s, window=(30, 50, 40, 70)), a[30:70, 50:120])
    assert llic_imaging.encode(a, tile=64, patch=32, numthreads=2) == s


def test_mapped_tiles_take_linear_feedback_too() -> None:
    """Only even values: the tile is coded as ranks, and its ranks as a linear chunk."""
    a = (interpolated(3, (64, 64)) // 2 * 2).astype(np.uint16)
    s = llic_imaging.encode(a)
    (k,) = chunk_headers(s)
    assert k.gaps
    assert k.linear
    np.testing.assert_array_equal(llic_imaging.decode(s), a)
