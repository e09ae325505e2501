"""Slow float64 references for the integer coding path (test oracles, not production code)."""

from __future__ import annotations

import numpy as np

from llic_imaging.codec import intcdf


def ideal_bits(mu16: np.ndarray, scale: np.ndarray, values: np.ndarray, vmax: int) -> np.ndarray:
    """Code length of each value under the full-alphabet discretised logistic (float64).

    Same parameters the coder uses (mean mu16/16 px, scale 2**(j/8-4) px), tails folded into
    the values 0 and vmax: the bound Adaptive Focus Coding is measured against.
    """
    mu = np.asarray(mu16, np.float64) / 16.0
    s = np.exp2(np.asarray(scale, np.float64) / 8.0 - 4.0)
    v = np.asarray(values, np.float64)

    def cdf(x: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * (x - mu) / s))

    hi = np.where(v >= vmax, 1.0, cdf(v + 0.5))
    lo = np.where(v <= 0, 0.0, cdf(v - 0.5))
    p = np.maximum(hi - lo, 1e-300)
    return -np.log2(p)


def freq_row(mu16: int, scale: int, vmax: int) -> np.ndarray:
    """One pixel's focus-window frequencies (bins, then the escape), read straight from the
    rule in docs/focus-coding.md: CDF-grid differences plus one for every bin holding a value
    of ``[0, vmax]``; bin edges at or below 0 read 0 and above vmax read the total; the escape
    takes both tails plus one when a value lies outside the window."""
    c = (int(mu16) + 8) >> 4
    frac = int(mu16) - 16 * c + intcdf.N_FRAC // 2
    w = int(intcdf.n_bins(scale))
    q = int(intcdf.bin_shift(scale))
    low = c - ((w // 2) << q)
    cdf = intcdf.cdf_grid()[scale, frac]
    edges = [low + (k << q) for k in range(w + 1)]
    g = [0 if e <= 0 else intcdf.TOTAL if e > vmax else int(cdf[k]) for k, e in enumerate(edges)]
    row = [g[k + 1] - g[k] + (edges[k + 1] > 0 and edges[k] <= vmax) for k in range(w)]
    row.append(g[0] + intcdf.TOTAL - g[w] + (low > 0 or edges[w] <= vmax))
    return np.array(row, np.float64)
