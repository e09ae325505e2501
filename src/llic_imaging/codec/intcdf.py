"""Integer logistic CDF grid: the frozen table every probability the coder sees is read from.

Pure numpy. The grid is part of the bitstream format (version ``CDF_VERSION``): it is generated
once by :func:`generate` (float64, offline) and shipped as ``cdf-v1.npz``; coding only ever
*reads* it, so no exp/log runs at coding time and encoder and decoder agree bit for bit.

Parameterisation (see docs/focus-coding.md): a pixel's distribution is a discretised logistic
with mean ``mu16 / 16`` pixels and scale ``s_j = 2 ** (j / 8 - 4)`` pixels, ``j`` in
``[0, N_SCALES)``. The focus window of scale level ``j`` has ``width(j)`` bins of ``2 ** q(j)``
pixel values each, centred on ``c = round(mu)``; ``G[j, f + 8, k]`` is ``TOTAL`` times the
logistic CDF at bin edge ``k`` for a mean offset ``f / 16`` from ``c``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

__all__ = [
    "CDF_VERSION",
    "MAX_BINS",
    "N_FRAC",
    "N_SCALES",
    "TOTAL",
    "bin_shift",
    "cdf_grid",
    "generate",
    "n_bins",
    "point_tables",
    "scale_px",
]

CDF_VERSION = 1
N_SCALES = 160  # 1/16 px .. 2**15.9 px in 1/8-octave steps
N_FRAC = 16  # mean resolution: 1/16 pixel
TOTAL = 1 << 20  # CDF precision: near-deterministic pixels cost ~1e-5 bits of rounding
MAX_BINS = 64  # focus window size cap (bins, excluding the escape symbol)
TAIL = 9.0  # window half-span in scales: logistic tail mass 2*sigmoid(-9) = 2.5e-4
Z_STEPS = 32  # point CDF (range edges): z in 1/32 logistic units ...
Z_MAX = 40 * Z_STEPS  # ... over [-40, 40]
Z_SHIFT = 20


def scale_px(j: np.ndarray | int) -> np.ndarray:
    """Scale in pixels of level ``j``."""
    return np.exp2(np.asarray(j, dtype=np.float64) / 8.0 - 4.0)


def _window(j: int) -> tuple[int, int]:
    span = 2.0 * TAIL * float(scale_px(j)) + 2.0
    if span <= MAX_BINS:
        return max(4, 1 << int(np.ceil(np.log2(span)))), 0
    return MAX_BINS, int(np.ceil(np.log2(span / MAX_BINS)))


def generate() -> dict[str, np.ndarray]:
    """Build the grid from float64 math (offline; the shipped file is the reference)."""
    widths = np.zeros(N_SCALES, np.int32)
    shifts = np.zeros(N_SCALES, np.int32)
    grid = np.zeros((N_SCALES, N_FRAC, MAX_BINS + 1), np.int32)
    frac = (np.arange(N_FRAC) - N_FRAC // 2) / N_FRAC
    for j in range(N_SCALES):
        w, q = _window(j)
        widths[j], shifts[j] = w, q
        k = np.arange(w + 1)
        edges = (k - w // 2) * float(1 << q) - 0.5
        z = (edges[None, :] - frac[:, None]) / scale_px(j)
        cdf = 0.5 * (1.0 + np.tanh(0.5 * z))  # logistic sigmoid without overflow
        grid[j, :, : w + 1] = np.rint(cdf * TOTAL).astype(np.int32)
        grid[j, :, w + 1 :] = TOTAL
    zi = np.arange(-Z_MAX, Z_MAX + 1) / Z_STEPS
    zcdf = np.rint(0.5 * (1.0 + np.tanh(0.5 * zi)) * TOTAL).astype(np.int64)
    invs = np.rint(2.0 ** (Z_SHIFT + 1) / scale_px(np.arange(N_SCALES))).astype(np.int64)
    return {"grid": grid, "widths": widths, "shifts": shifts, "zcdf": zcdf, "invs": invs}


@cache
def _tables() -> dict[str, np.ndarray]:
    ref = resources.files("llic_imaging.codec").joinpath(f"cdf-v{CDF_VERSION}.npz")
    with resources.as_file(ref) as path, np.load(path) as z:
        return {k: z[k] for k in z.files}


def cdf_grid() -> np.ndarray:
    """(N_SCALES, N_FRAC, MAX_BINS + 1) int32 CDF values at bin edges."""
    return _tables()["grid"]


def point_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(zcdf, invs)``: the point CDF where a range edge falls inside a wide focus bin.

    ``TOTAL * P(X < x16 / 16)`` for mean ``mu16 / 16`` and scale level ``j`` is
    ``zcdf[clip((x16 - mu16) * invs[j] >> Z_SHIFT, -Z_MAX, Z_MAX) + Z_MAX]`` (integer only;
    ``focus._split`` evaluates it).
    """
    t = _tables()
    return t["zcdf"], t["invs"]


def n_bins(j: np.ndarray) -> np.ndarray:
    """Focus window width (bins) for scale levels ``j``."""
    return _tables()["widths"][j]


def bin_shift(j: np.ndarray) -> np.ndarray:
    """log2 of the bin width (pixel values per bin) for scale levels ``j``."""
    return _tables()["shifts"][j]
