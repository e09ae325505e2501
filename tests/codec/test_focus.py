"""Adaptive Focus Coding: bounded tables, exact symbol mapping, overhead against the ideal."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import ideal_bits
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
    groups = focus.tables(mu16, scale, 65535)
    for _, t in groups:
        assert t.freqs.shape[1] <= intcdf.MAX_BINS + 1 <= 513
        assert (t.freqs >= 0).all()
        assert (t.freqs.sum(1) > 0).all()


@settings(max_examples=60, deadline=None)
@given(vmax=st.integers(1, 65535), seed=st.integers(0, 2**32 - 1), lo=st.integers(0, 150))
def test_symbols_map_back_to_values(vmax: int, seed: int, lo: int) -> None:
    rng = np.random.default_rng(seed)
    mu16, scale, v = _sample(rng, 300, vmax, lo, min(intcdf.N_SCALES, lo + 10))
    v[:10] = rng.integers(0, vmax + 1, 10)  # some far outliers -> escapes
    groups = focus.tables(mu16, scale, vmax)
    for idx, t in groups:
        sym, off, size = focus.to_symbols(t, v[idx])
        assert (t.freqs[np.arange(idx.size), sym] > 0).all(), "a value was given zero probability"
        first, dsize = focus.to_values(t, sym)
        esc = sym == t.width
        np.testing.assert_array_equal((first + off)[~esc], v[idx][~esc])
        np.testing.assert_array_equal(dsize[~esc], size[~esc])
        assert ((off >= 0) & (off < np.maximum(size, 1))).all()


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
