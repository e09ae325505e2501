"""Adaptive Focus Coding: a bounded probability table per pixel, whatever the bit depth.

Pure numpy, integers only. A pixel with predicted mean ``mu16 / 16`` and scale level ``j`` is
coded as: the index of its bin in a focus window of ``width(j)`` bins (at most 64) of
``2**q(j)`` values each, centred on ``round(mu)`` -- or an escape symbol when the value lies
outside the window; then, if the bin holds several values, the offset inside the bin (uniform);
then, after an escape, the value itself (uniform over the chunk's range). Bins outside the
chunk's range ``[0, R]`` get no mass and the tails beyond the range fold into the edge bins.
Design and measured overhead: docs/focus-coding.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llic_imaging.codec import intcdf

__all__ = [
    "EdgeSplit",
    "Tables",
    "code_lengths",
    "edge_split",
    "tables",
    "to_symbols",
    "to_values",
    "window_bounds",
    "window_width",
]


@dataclass(frozen=True)
class Tables:
    """Frequency tables of one group of pixels that share a window width."""

    width: int  # bins; the escape symbol is column ``width``
    freqs: np.ndarray  # (n, width + 1) float64 holding exact integers (constriction's input)
    low: np.ndarray  # (n,) first value of bin 0 (may be < 0)
    shift: np.ndarray  # (n,) log2 of bin width
    mu16: np.ndarray  # (n,) the distribution's parameters, for edge splits
    scale: np.ndarray
    vmax: np.ndarray  # (n,) each pixel's chunk range R (pixels of several chunks may share a group)
    edge_rows: np.ndarray  # rows whose window reaches past 0 or R (the only ones clipped or split)


def _window(
    mu16: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    c = (mu16 + 8) >> 4
    frac = mu16 - 16 * c + intcdf.N_FRAC // 2
    width = window_width(scale)
    shift = intcdf.bin_shift(scale).astype(np.int64)
    low = c - ((width // 2) << shift)
    return frac, width, shift, low


def window_width(scale: np.ndarray) -> np.ndarray:
    """Number of focus bins of each pixel (its group key)."""
    return intcdf.n_bins(np.asarray(scale, np.int64)).astype(np.int64)


def window_bounds(mu16: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last value of each pixel's focus window (values outside it are escapes)."""
    _, width, shift, low = _window(np.asarray(mu16, np.int64), np.asarray(scale, np.int64))
    return low, low + (width << shift) - 1


def tables(
    mu16: np.ndarray, scale: np.ndarray, vmax: int | np.ndarray
) -> list[tuple[np.ndarray, Tables]]:
    """Group pixels by window width and build their integer frequency rows.

    ``vmax`` is one range for all pixels or one per pixel. Returns ``(indices, Tables)`` per
    group in ascending width (the coding order of bin symbols inside a step).
    """
    mu16 = np.asarray(mu16, np.int64)
    scale = np.asarray(scale, np.int64)
    vmax = np.broadcast_to(np.asarray(vmax, np.int64), mu16.shape)
    frac, width, shift, low = _window(mu16, scale)
    groups = []
    for w in np.unique(width):
        idx = np.flatnonzero(width == w)
        w = int(w)
        key = scale[idx] * intcdf.N_FRAC + frac[idx]
        freqs = np.take(_freq_rows(w), key, axis=0)
        lo, sh, vm = low[idx], shift[idx], vmax[idx]
        e = np.flatnonzero((lo <= 0) | (lo + (np.int64(w) << sh) > vm))
        if e.size:
            g = np.take(_grid_rows(w), key[e], axis=0)
            freqs[e] = _clipped(g, lo[e], sh[e], w, vm[e])
        groups.append((idx, Tables(w, freqs, lo, sh, mu16[idx], scale[idx], vm, e)))
    return groups


_ROWS: dict[int, np.ndarray] = {}
_FREQS: dict[int, np.ndarray] = {}


def _grid_rows(w: int) -> np.ndarray:
    """CDF rows of every (scale, frac) for window width ``w``, contiguous for fast gathers."""
    rows = _ROWS.get(w)
    if rows is None:
        grid = intcdf.cdf_grid()
        rows = np.ascontiguousarray(grid[:, :, : w + 1].reshape(-1, w + 1).astype(np.int64))
        _ROWS[w] = rows
    return rows


def _freq_rows(w: int) -> np.ndarray:
    """Frequency rows (w bins + escape) of every (scale, frac) whose window lies inside the range.

    Every bin gets its CDF mass plus one (no zero probability); the escape takes both tails.
    """
    freqs = _FREQS.get(w)
    if freqs is None:
        g = _grid_rows(w)
        freqs = np.empty((g.shape[0], w + 1), np.float64)
        freqs[:, :w] = np.diff(g, axis=1) + 1
        freqs[:, w] = g[:, 0] + (intcdf.TOTAL + 1) - g[:, -1]
        _FREQS[w] = freqs
    return freqs


def _clipped(
    g: np.ndarray, low: np.ndarray, shift: np.ndarray, w: int, vmax: np.ndarray
) -> np.ndarray:
    """Rows whose window crosses 0 or vmax: no mass outside the range, tails fold inwards."""
    k = np.arange(w + 1, dtype=np.int64)
    vmax = vmax[:, None]
    edge = low[:, None] + (k[None, :] << shift[:, None])  # first value at/after edge k
    g = np.where(edge <= 0, 0, np.where(edge > vmax, intcdf.TOTAL, g))
    valid = (edge[:, 1:] > 0) & (edge[:, :-1] <= vmax)  # bin holds a value in [0, vmax]
    freqs = np.empty((g.shape[0], w + 1), np.float64)
    freqs[:, :w] = np.diff(g, axis=1) + valid
    outside = (low > 0) | (edge[:, -1] <= vmax[:, 0])
    freqs[:, w] = g[:, 0] + (intcdf.TOTAL - g[:, -1]) + outside
    return freqs


def _bin_range(
    low: np.ndarray, shift: np.ndarray, vmax: np.ndarray, sym: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First value and size of bin ``sym``, clipped to ``[0, vmax]``."""
    lo = low + (sym << shift)
    hi = lo + (np.int64(1) << shift) - 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, vmax)
    return lo, hi - lo + 1


def to_symbols(t: Tables, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder side: (bin symbol, offset inside bin, bin size) for each value; escape = width."""
    v = np.asarray(values, np.int64)
    rel = v - t.low
    sym = rel >> t.shift
    esc = (rel < 0) | (sym >= t.width)
    sym = np.where(esc, t.width, sym)
    lo, size = _bin_range(t.low, t.shift, t.vmax, np.where(esc, 0, sym))
    return sym, np.where(esc, 0, v - lo), np.where(esc, 1, size)


def to_values(t: Tables, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decoder side: (first value of the decoded bin, bin size); escapes give size 0."""
    esc = sym >= t.width
    lo, size = _bin_range(t.low, t.shift, t.vmax, np.where(esc, 0, sym))
    return lo, np.where(esc, 0, size)


@dataclass(frozen=True)
class EdgeSplit:
    """Wide bins that hold a range edge (0 or R): the edge value gets its own binary symbol.

    The folded tail mass sits on the edge value alone, so coding it uniformly with the rest of
    its bin would waste up to ``log2(bin width)`` bits (padding, nodata, clipped data).
    """

    mask: np.ndarray  # pixel's bin holds an edge and is split
    edge: np.ndarray  # the edge value (0 or vmax) where mask
    freqs: np.ndarray  # (n, 2) float64: [edge value, rest of the bin]
    base: np.ndarray  # first non-edge value of the bin


def edge_split(t: Tables, sym: np.ndarray) -> EdgeSplit:
    """Which pixels of a group get an edge symbol, and its frequencies (same on both sides).

    Only rows whose window reaches a range edge can hold one, so only those are evaluated.
    """
    n, e = sym.size, t.edge_rows
    mask, edge, base = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
    freqs = np.zeros((n, 2), np.float64)
    if e.size:
        s = sym[e]
        esc = s >= t.width
        s = np.where(esc, 0, s)
        low, shift, vmax = t.low[e], t.shift[e], t.vmax[e]
        lo, size = _bin_range(low, shift, vmax, s)
        raw_lo = low + (s << shift)  # before clipping: does the bin reach an edge?
        fb = t.freqs[e, s].astype(np.int64)
        ok = ~esc & (size >= 2) & (fb >= 2)
        lower = ok & (raw_lo <= 0)
        upper = ok & ~lower & (raw_lo + (np.int64(1) << shift) - 1 >= vmax)
        f = intcdf.cdf_at(np.where(lower, 8, 16 * vmax - 8), t.mu16[e], t.scale[e])
        fe = np.clip(np.where(lower, f, intcdf.TOTAL - f), 1, np.maximum(fb - 1, 1))
        mask[e], edge[e], base[e] = lower | upper, np.where(lower, 0, vmax), lo + lower
        freqs[e, 0], freqs[e, 1] = fe, fb - fe
    return EdgeSplit(mask, edge, freqs, base)


def code_lengths(mu16: np.ndarray, scale: np.ndarray, values: np.ndarray, vmax: int) -> np.ndarray:
    """Ideal code length in bits of each value under the integer tables (rate map, tests)."""
    bits = np.zeros(np.shape(values), np.float64)
    if vmax == 0:
        return bits
    v = np.asarray(values, np.int64)
    groups = tables(mu16, scale, vmax)
    for idx, t in groups:
        sym, _, size = to_symbols(t, v[idx])
        f = t.freqs[np.arange(idx.size), sym]
        b = np.log2(t.freqs.sum(1) / f)
        e = edge_split(t, sym)
        is_edge = v[idx] == e.edge
        with np.errstate(divide="ignore", invalid="ignore"):  # rows outside e.mask: 0/0, unused
            split_bits = np.where(
                is_edge,
                np.log2(e.freqs.sum(1) / e.freqs[:, 0]),
                np.log2(e.freqs.sum(1) / e.freqs[:, 1]) + np.log2(np.maximum(size - 1, 1)),
            )
        b = b + np.where(e.mask, split_bits, np.log2(size))
        b = np.where(sym == t.width, b + np.log2(t.vmax + 1.0), b)
        bits[idx] = b
    return bits
