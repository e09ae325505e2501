"""Slow float64 references for the integer coding path (test oracles, not production code)."""

from __future__ import annotations

import numpy as np


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
