"""Adaptive Focus Coding: bounded tables, exact symbol mapping, overhead against the ideal."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import freq_row, ideal_bits
from hypothesis import given, settings
from hypothesis import strategies as st

from llic_imaging.codec import focus, intcdf


def _sample(rng: np.random.Generator, n: int, vmax: int, lo: int, hi: int):
    mu16 = rng.integers(0, 16 * vmax + 1, n)
    scale = rng.integers(lo, hi, n)
    s = np.exp2(scale / 8 - 4)
    v = np.clip(np.round(mu16 / 16 + rng.logistic(0, s)), 0, vmax).astype(np.int64)
    return mu16, scale, v


def test_tables_are_bounded_and_positive() -> None:
    rng = np.random.default_rng(0)
    mu16, scale, _ = _sample(rng, 5000, 65535, 0, intcdf.N_SCALES)
    p = focus.plan(mu16, scale, 65535, np.zeros(mu16.size, np.int64), 1)
    runs = p.runs(0)
    assert sum(b - a for a, b, _ in runs) == mu16.size
    for _, _, freqs in runs:
        assert freqs.shape[1] <= intcdf.MAX_BINS + 1 <= 513
        assert (freqs >= 0).all()
        assert (freqs.sum(1) > 0).all()


@pytest.mark.parametrize("vmax", [1, 37, 4095, 65535])
def test_rows_match_the_reference_rule(vmax: int) -> None:
    """The compiled rows equal a plain per-pixel reading of docs/focus-coding.md (2-3)."""
    rng = np.random.default_rng(vmax)
    mu16, scale, _ = _sample(rng, 400, vmax, 0, intcdf.N_SCALES)
    unit = np.sort(rng.integers(0, 3, mu16.size))
    p = focus.plan(mu16, scale, vmax, unit, 3)
    for k in range(3):
        pixels = [i for i in range(mu16.size) if unit[i] == k]
        coded = [int(p.row[i]) for i in pixels]
        for a, b, freqs in p.runs(k):
            for r, row in zip(range(a, b), freqs, strict=True):
                i = pixels[coded.index(r)]
                np.testing.assert_array_equal(row, freq_row(mu16[i], scale[i], vmax))


def _round_trip(p: focus.Plan, v: np.ndarray) -> focus.Symbols:
    """Encode ``v`` under plan ``p``, read it back the decoder's way, check it equals ``v``."""
    sym = focus.encode_symbols(p, v)
    pending = focus.Pending(p, sym.bins)
    np.testing.assert_array_equal(pending.flags.idx, sym.flags.idx)
    np.testing.assert_array_equal(pending.flags.params, sym.flags.params)
    offsets, escapes = pending.apply_flags(sym.flag_values)
    for got, want in ((offsets, sym.offsets), (escapes, sym.escapes)):
        np.testing.assert_array_equal(got.idx, want.idx)
        np.testing.assert_array_equal(got.params, want.params)
        np.testing.assert_array_equal(got.bounds, want.bounds)
    out = pending.values
    out[offsets.idx] += sym.offset_values
    out[escapes.idx] = sym.escape_values
    np.testing.assert_array_equal(out, v)
    return sym


@settings(max_examples=60, deadline=None)
@given(vmax=st.integers(1, 65535), seed=st.integers(0, 2**32 - 1), lo=st.integers(0, 150))
def test_symbols_map_back_to_values(vmax: int, seed: int, lo: int) -> None:
    rng = np.random.default_rng(seed)
    mu16, scale, v = _sample(rng, 300, vmax, lo, min(intcdf.N_SCALES, lo + 10))
    v[:10] = rng.integers(0, vmax + 1, 10)  # some far outliers -> escapes
    v[10:20] = rng.choice([0, vmax], 10)  # range edges -> edge flags in wide bins
    unit = np.sort(rng.integers(0, 4, v.size))
    p = focus.plan(mu16, scale, vmax, unit, 4)
    sym = _round_trip(p, v)
    for k in range(4):
        for a, b, freqs in p.runs(k):
            coded = freqs[np.arange(b - a), sym.bins[a:b]]
            assert (coded > 0).all(), "a value was given zero probability"
    assert ((sym.offset_values >= 0) & (sym.offset_values < sym.offsets.params)).all()
    assert (sym.flags.params > 0).all()


@pytest.mark.parametrize(
    ("vmax", "lo", "hi"),
    [(255, 20, 50), (4095, 30, 70), (65535, 40, 100), (65535, 100, 160), (4095, 0, 16)],
    ids=["8bit", "12bit", "16bit", "16bit-wide", "near-deterministic"],
)
def test_overhead_within_one_percent_of_full_alphabet(vmax: int, lo: int, hi: int) -> None:
    """Wide scales included: range-edge values get their own symbol (``focus.edge_split``)."""
    rng = np.random.default_rng(vmax + lo)
    mu16, scale, v = _sample(rng, 20000, vmax, lo, hi)
    ideal = ideal_bits(mu16, scale, v, vmax).sum()
    coded = focus.code_lengths(mu16, scale, v, vmax).sum()
    assert coded <= ideal * 1.01 + 0.01 * v.size, (coded / ideal - 1, coded / v.size)


def test_grid_matches_generator() -> None:
    gen = intcdf.generate()
    np.testing.assert_array_equal(gen["grid"], intcdf.cdf_grid())
    np.testing.assert_array_equal(gen["widths"], intcdf.n_bins(np.arange(intcdf.N_SCALES)))


def test_scale_levels_outside_the_grid_are_refused() -> None:
    """The compiled rules index the tables without bounds checks: levels are checked first."""
    mu16, v = np.array([160, 320]), np.array([10, 20])
    for bad in (np.array([0, intcdf.N_SCALES]), np.array([-1, 5])):
        with pytest.raises(ValueError, match="scale levels"):
            focus.plan(mu16, bad, 100, np.zeros(2, np.int64), 1)
        with pytest.raises(ValueError, match="scale levels"):
            focus.code_lengths(mu16, bad, v, 100)
        with pytest.raises(ValueError, match="scale levels"):
            focus.window_bounds(mu16, bad)
