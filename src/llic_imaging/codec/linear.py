"""Linear feedback: a least-squares predictor over causal neighbours, fitted per tile.

The network is shared by all data, so it cannot know how an image's pixels correlate: the
interpolation kernel of an MR reconstruction, the filtering of a computed radiograph. Least
squares over the tile itself can (the classical MRP / TMW predictors do exactly this). The
encoder fits integer weights over the tile's decoded values and the network's own errors at
causal neighbours, sends them in the chunk header, and both sides refine every mean by
``(sum(w * f) + 128) >> 8`` in integers; so decoding stays exact whatever machine fitted the
weights. Design and measurements: ``docs/design.md``, "Linear feedback".
"""

from __future__ import annotations

import numba
import numpy as np

from llic_imaging.model.runtime import launch_guard

__all__ = ["MAX_WEIGHT", "SETS", "correction", "corrections", "fit"]

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
RADIUS = 5
_REWEIGHTS = 3  # least-squares solves before the final one, each reweighing the samples (fit)
SHIFT = 8  # weights in 1/256
MAX_WEIGHT = 4095
# Value taps (dr, dc): every position coded before (0, 0) in the knight order (dc + 2 dr < 0)
# within RADIUS, nearest first, so that a smaller radius is a prefix; then the network's
# errors at W, N, NE and NW (feedback chunks' taps).
_VALUES = sorted(
    ((dr, dc) for dr in range(-RADIUS, 1) for dc in range(-RADIUS, RADIUS + 1) if dc + 2 * dr < 0),
    key=lambda t: (max(-t[0], abs(t[1])), t),
)
_ERRORS = ((0, -1), (-1, 0), (-1, 1), (-1, -1))
_DR = np.array([t[0] for t in _VALUES + list(_ERRORS)], np.int64)
_DC = np.array([t[1] for t in _VALUES + list(_ERRORS)], np.int64)
_IS_ERROR = np.array([False] * len(_VALUES) + [True] * len(_ERRORS))


def _values_within(radius: int) -> list[int]:
    return [i for i, (dr, dc) in enumerate(_VALUES) if max(-dr, abs(dc)) <= radius]


_ERROR_TAPS = list(range(len(_VALUES), len(_VALUES) + len(_ERRORS)))
# The tap sets a chunk may use (its index is in the header): radius 2 without errors is the
# cheapest header, radius 5 takes MR4's interpolation; the encoder picks per tile
# (docs/design.md, "Linear feedback", counts its picks on the validation tiles).
SETS: tuple[np.ndarray, ...] = tuple(
    np.array(s, np.int64)
    for s in (_values_within(2), _values_within(3) + _ERROR_TAPS, _values_within(5) + _ERROR_TAPS)
)


@numba.njit(**_JIT)
def _features(values, errors, k, r, c, mu, taps, dr, dc, is_error, out):
    """``out[i, t]``: tap ``taps[t]`` of position ``(k[i], r[i], c[i])``; 0 where nothing is
    coded (beyond the patch or the tile: there the errors are 0 and the values -1)."""
    p = errors.shape[1]
    for i in range(k.size):
        for t in range(taps.size):
            j = taps[t]
            rr, cc = r[i] + dr[j], c[i] + dc[j]
            out[i, t] = 0
            if rr < 0 or cc < 0 or cc >= p:
                continue
            if is_error[j]:
                out[i, t] = errors[k[i], rr, cc]
            elif values[k[i], rr + 1, cc + 1] >= 0:
                out[i, t] = 16 * values[k[i], rr + 1, cc + 1] - mu[i]


@numba.njit(inline="always", **_JIT)
def _weighted(values, errors, k, r, c, mu, taps, weights, dr, dc, is_error):
    """The weighted taps of position ``(k, r, c)``, rounded to 1/16 px (see correction)."""
    p = errors.shape[1]
    acc = 0
    for t in range(taps.size):
        j = taps[t]
        rr, cc = r + dr[j], c + dc[j]
        if rr < 0 or cc < 0 or cc >= p:
            continue
        if is_error[j]:
            acc += weights[t] * errors[k, rr, cc]
        elif values[k, rr + 1, cc + 1] >= 0:
            acc += weights[t] * (16 * values[k, rr + 1, cc + 1] - mu)
    return (acc + (1 << (SHIFT - 1))) >> SHIFT


@numba.njit(**_JIT)
def _correct(values, errors, k, r, c, mu, taps, weights, dr, dc, is_error, out):
    """``out[i]``: the weighted taps of position ``i`` of one chunk."""
    for i in range(k.size):
        out[i] = _weighted(values, errors, k[i], r[i], c[i], mu[i], taps, weights, dr, dc, is_error)


@numba.njit(**dict(_JIT, parallel=True))
def _correct_chunks(values, errors, k, r, c, mu, sets, sizes, weights, dr, dc, is_error, out):
    """``out[j, i]``: the weighted taps of position ``i`` of chunk ``j`` (tap set ``sets[j]``
    of ``sizes[j]`` taps, ``weights[j]``), all chunks' positions side by side."""
    m, n = mu.shape
    for q in numba.prange(m * n):
        j, i = q // n, q % n
        taps = sets[j, : sizes[j]]
        out[j, i] = _weighted(
            values[j], errors[j], k[i], r[i], c[i], mu[j, i], taps, weights[j], dr, dc, is_error
        )


def correction(
    values: np.ndarray,
    errors: np.ndarray,
    at: tuple[np.ndarray, np.ndarray, np.ndarray],
    mu16: np.ndarray,
    taps: int,
    weights: tuple[int, ...] | np.ndarray,
) -> np.ndarray:
    """What tap set ``taps`` with ``weights`` adds to the means ``mu16`` (1/16 px) of the
    positions ``at`` (patch, row, column index arrays), from the coded values in the framed
    layout of :meth:`Geometry.framed <llic_imaging.codec.schedule.Geometry.framed>` (-1
    where nothing is coded) and the network's errors ``(n_patches, P, P)`` (0 outside the
    tile). Only causal positions are read, so the decoder passes what it has decoded so far.
    One thread: the encoder calls it from its per-tile search threads."""
    k, r, c = (np.ascontiguousarray(a, np.int64).ravel() for a in at)
    out = np.empty(k.size, np.int64)
    w = np.asarray(weights, np.int64)
    _correct(
        values, errors, k, r, c, np.ascontiguousarray(mu16, np.int64).ravel(),
        SETS[taps], w, _DR, _DC, _IS_ERROR, out,
    )  # fmt: skip
    return out


def corrections(
    values: np.ndarray,
    errors: np.ndarray,
    at: tuple[np.ndarray, np.ndarray, np.ndarray],
    mu16: np.ndarray,
    taps: list[int],
    weights: list[tuple[int, ...]],
) -> np.ndarray:
    """:func:`correction` of several chunks at the same positions in one parallel call (the
    decoder's step): ``values`` and ``errors`` stacked by chunk, ``mu16`` ``(chunks, n)``,
    a tap set and its weights per chunk -> ``(chunks, n)``."""
    k, r, c = (np.ascontiguousarray(a, np.int64).ravel() for a in at)
    sets = np.zeros((len(taps), SETS[-1].size), np.int64)
    w = np.zeros_like(sets)
    for j, (t, wj) in enumerate(zip(taps, weights, strict=True)):
        sets[j, : SETS[t].size], w[j, : len(wj)] = SETS[t], wj
    sizes = np.array([SETS[t].size for t in taps], np.int64)
    out = np.empty((len(taps), k.size), np.int64)
    mu = np.ascontiguousarray(mu16, np.int64)
    with launch_guard():
        _correct_chunks(values, errors, k, r, c, mu, sets, sizes, w, _DR, _DC, _IS_ERROR, out)
    return out


def fit(
    values: np.ndarray,
    errors: np.ndarray,
    at: tuple[np.ndarray, np.ndarray, np.ndarray],
    mu16: np.ndarray,
    scale: np.ndarray,
) -> list[np.ndarray]:
    """Integer weights of every tap set for the positions ``at`` (values and errors as
    :func:`correction` takes them), fitted to the errors ``16 u - mu16`` by iteratively
    reweighted least squares on the network's scale levels ``scale``: an error costs about
    its square over the scale's square within one scale and its size over the scale beyond
    (a logistic's code length), so each sample weighs ``1 / (s * max(|error|, s))``. One set
    of sample weights serves every set: the largest set's, so the samples are weighed once."""
    k, r, c = (np.ascontiguousarray(a, np.int64) for a in at)
    mu = np.ascontiguousarray(mu16, np.int64)
    full = SETS[-1]
    x = np.empty((k.size, full.size), np.int64)
    _features(values, errors, k, r, c, mu, full, _DR, _DC, _IS_ERROR, x)
    x = x.astype(np.float64)
    y = (16 * values[k, r + 1, c + 1] - mu).astype(np.float64)
    index = {t: i for i, t in enumerate(full)}
    subsets = [np.array([index[t] for t in taps]) for taps in SETS]
    sigma = np.exp2(np.asarray(scale, np.float64) / 8.0)  # 1/16 px (intcdf.scale_px x 16)
    s = 1.0 / (sigma * sigma)
    for _ in range(_REWEIGHTS):
        w = _solve(*_normal(x, y, s), subsets[-1])
        s = 1.0 / (sigma * np.maximum(np.abs(y - x @ w), sigma))
    g, b = _normal(x, y, s)
    return [
        np.clip(np.round(_solve(g, b, cols) * (1 << SHIFT)), -MAX_WEIGHT, MAX_WEIGHT).astype(
            np.int64
        )
        for cols in subsets
    ]


def _normal(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations of the least squares with sample weights ``s``."""
    xs = x * s[:, None]
    return x.T @ xs, xs.T @ y


def _solve(g: np.ndarray, b: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Weights of the taps ``cols`` (a touch of ridge: flat tiles have all-zero taps)."""
    sub = g[np.ix_(cols, cols)]
    sub[np.diag_indices_from(sub)] += 1e-6 * (np.trace(sub) / len(cols) + 1.0)
    return np.linalg.solve(sub, b[cols])
