"""Adaptive Focus Coding: a bounded probability table per pixel, whatever the bit depth.

Integers only. A pixel with predicted mean ``mu16 / 16`` and scale level ``j`` is coded as:
the index of its bin in a focus window of ``width(j)`` bins (at most 64) of ``2**q(j)`` values
each, centred on ``round(mu)`` -- or an escape symbol when the value lies outside the window;
then, for a wide bin that holds a range edge (0 or R), one binary "edge value or not" symbol;
then, if the bin (still) holds several values, the offset inside it (uniform); then, after an
escape, the value itself (uniform over the chunk's range). Bins outside the chunk's range
``[0, R]`` get no mass and the tails beyond the range fold into the edge bins.
Design and measured overhead: docs/focus-coding.md.

The per-pixel rules are compiled (numba) and shared by the encoder, the decoder and the rate
map, so there is one implementation of every rule. A :class:`Plan` lays the pixels of several
coding units (a chunk's steps, or one step of several chunks) out the way the range coder
consumes them: bin-symbol rows grouped by window width, and the stream order of everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numba
import numpy as np

from llic_imaging.codec import intcdf
from llic_imaging.model.runtime import launch_guard

__all__ = [
    "Pending",
    "Plan",
    "Run",
    "Symbols",
    "code_lengths",
    "encode_symbols",
    "plan",
    "window_bounds",
]

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_TOTAL = intcdf.TOTAL
_HALF_FRAC = intcdf.N_FRAC // 2
_Z_MAX = intcdf.Z_MAX
_Z_SHIFT = intcdf.Z_SHIFT


@dataclass(frozen=True)
class _Tables:
    """The frozen integer tables the rules read, as contiguous int64 arrays."""

    grid: np.ndarray  # (N_SCALES, N_FRAC, MAX_BINS + 1) CDF at bin edges
    rows: np.ndarray  # the same shape, float64: frequency rows of windows inside the range
    widths: np.ndarray  # (N_SCALES,) bins per window
    shifts: np.ndarray  # (N_SCALES,) log2 of the bin width
    zcdf: np.ndarray  # point CDF for range edges
    invs: np.ndarray  # integer inverse scales
    group_of: np.ndarray  # (N_SCALES,) index of the scale's width in group_widths
    group_widths: np.ndarray  # distinct widths, ascending: the order of bin-symbol groups


@cache
def _tables() -> _Tables:
    widths = intcdf.n_bins(np.arange(intcdf.N_SCALES)).astype(np.int64)
    distinct = np.unique(widths)
    grid = np.ascontiguousarray(intcdf.cdf_grid(), np.int64)
    rows = np.zeros(grid.shape, np.float64)
    for j, w in enumerate(widths):
        _fill_inside(rows[j], grid[j], w)
    return _Tables(
        grid,
        rows,
        widths,
        intcdf.bin_shift(np.arange(intcdf.N_SCALES)).astype(np.int64),
        *(np.ascontiguousarray(a, np.int64) for a in intcdf.point_tables()),
        np.searchsorted(distinct, widths).astype(np.int64),
        distinct,
    )


def _levels(scale: np.ndarray) -> np.ndarray:
    """Scale levels as contiguous int64, checked: the compiled rules index tables with them."""
    scale = np.ascontiguousarray(scale, np.int64)
    if scale.size and (scale.min() < 0 or scale.max() >= intcdf.N_SCALES):
        msg = f"scale levels must lie in [0, {intcdf.N_SCALES}), got [{scale.min()}, {scale.max()}]"
        raise ValueError(msg)
    return scale


# ---------------------------------------------------------------- per-pixel rules (compiled)


@numba.njit(inline="always", **_JIT)
def _window(mu16, j, widths, shifts):
    """(mean fraction index, width, bin shift, first value of bin 0) of one pixel."""
    c = (mu16 + 8) >> 4
    w = widths[j]
    q = shifts[j]
    return mu16 - 16 * c + _HALF_FRAC, w, q, c - ((w // 2) << q)


@numba.njit(inline="always", **_JIT)
def _edge_cdf(cdf, low, q, vmax, k):
    """The CDF at the edge before bin ``k`` (``k = w``: after the last): 0 at or below 0, the
    total above ``vmax``."""
    edge = low + (k << q)
    return 0 if edge <= 0 else (_TOTAL if edge > vmax else cdf[k])


@numba.njit(inline="always", **_JIT)
def _holds_value(low, q, vmax, k):
    """1 where bin ``k`` holds a value of ``[0, vmax]`` (it gets one more count), else 0."""
    edge = low + (k << q)
    return 1 if (edge + (np.int64(1) << q) > 0 and edge <= vmax) else 0


@numba.njit(inline="always", **_JIT)
def _escape_extra(low, q, w, vmax):
    """1 where a value of ``[0, vmax]`` lies outside the window (the escape's extra count)."""
    return 1 if (low > 0 or low + (w << q) <= vmax) else 0


@numba.njit(inline="always", **_JIT)
def _fill_row(out, at, cdf, low, q, w, vmax):
    """Frequencies of the ``w`` bins and the escape symbol into ``out[at : at + w + 1]``.

    Bin edges at or below 0 read CDF 0 and edges above ``vmax`` read the total, so bins outside
    the range get nothing and the tails beyond the range fold into the bins holding 0 and
    ``vmax``; every bin that holds a value gets one more count (no zero probability). The escape
    takes the tails beyond the window, plus one when a value of the range lies outside it.
    """
    g0 = prev = _edge_cdf(cdf, low, q, vmax, 0)
    for k in range(w):
        g = _edge_cdf(cdf, low, q, vmax, k + 1)
        out[at + k] = g - prev + _holds_value(low, q, vmax, k)
        prev = g
    out[at + w] = g0 + (_TOTAL - prev) + _escape_extra(low, q, w, vmax)


@numba.njit(inline="always", **_JIT)
def _row_entry(cdf, low, q, w, vmax, s):
    """``_fill_row``'s frequency of symbol ``s`` (a bin, or the escape ``w``) alone."""
    if s == w:
        g0, gw = _edge_cdf(cdf, low, q, vmax, 0), _edge_cdf(cdf, low, q, vmax, w)
        return g0 + _TOTAL - gw + _escape_extra(low, q, w, vmax)
    g = _edge_cdf(cdf, low, q, vmax, s + 1) - _edge_cdf(cdf, low, q, vmax, s)
    return g + _holds_value(low, q, vmax, s)


@numba.njit(inline="always", **_JIT)
def _row_total(low, q, w, vmax):
    """The sum of ``_fill_row``'s row: the CDF differences and the escape's tails telescope
    to ``_TOTAL``, leaving one count per bin holding a value and the escape's extra one."""
    held = 0
    for k in range(w):
        held += _holds_value(low, q, vmax, k)
    return _TOTAL + held + _escape_extra(low, q, w, vmax)


@numba.njit(**_JIT)
def _fill_inside(rows, cdf, w):
    """``_fill_row`` of every mean fraction for a window inside the range: the fast path."""
    for f in range(cdf.shape[0]):
        _fill_row(rows[f], 0, cdf[f], 1, 0, w, 1 << 40)


@numba.njit(inline="always", **_JIT)
def _symbol(v, low, q, w):
    """Bin symbol of value ``v``: its bin in the window, or the escape ``w`` outside it."""
    rel = v - low
    s = rel >> q
    return w if rel < 0 or s >= w else s


@numba.njit(inline="always", **_JIT)
def _bin(low, q, vmax, s):
    """First value of bin ``s`` before clipping, and its first value and size inside [0, vmax]."""
    raw = low + (s << q)
    lo = max(raw, 0)
    hi = min(raw + (np.int64(1) << q) - 1, vmax)
    return raw, lo, hi - lo + 1


@numba.njit(inline="always", **_JIT)
def _split(raw, size, q, vmax, fb, mu16, j, zcdf, invs):
    """Edge split of a (non-escape) bin: (is split, is lower edge, edge-symbol frequency).

    The folded tail mass sits on the edge value alone, so coding it uniformly with the rest of
    its bin would waste up to ``log2(bin width)`` bits (padding, nodata, clipped data).
    """
    ok = size >= 2 and fb >= 2
    lower = ok and raw <= 0
    upper = ok and not lower and raw + (np.int64(1) << q) - 1 >= vmax
    if not (lower or upper):
        return False, False, 0
    x16 = 8 if lower else 16 * vmax - 8
    z = ((x16 - mu16) * invs[j]) >> _Z_SHIFT
    f = zcdf[min(max(z, -_Z_MAX), _Z_MAX) + _Z_MAX]
    fe = f if lower else _TOTAL - f
    return True, lower, min(max(fe, 1), max(fb - 1, 1))


# ---------------------------------------------------------------- layout


@numba.njit(**_JIT)
def _layout(scale, unit, n_units, group_of, n_groups):
    """Rows of the bin-symbol groups and the stream order of a set of pixels.

    Unit ``k`` of group ``g`` is rows ``gstart[g] + bounds[g, k] .. gstart[g] + bounds[g, k+1]``
    (rows of a group run by unit, then pixel). The stream visits units, then groups, then rows.
    """
    n = scale.size
    count = np.zeros((n_groups, n_units), np.int64)
    for i in range(n):
        count[group_of[scale[i]], unit[i]] += 1
    bounds = np.zeros((n_groups, n_units + 1), np.int64)
    gstart = np.zeros(n_groups + 1, np.int64)
    for g in range(n_groups):
        for k in range(n_units):
            bounds[g, k + 1] = bounds[g, k] + count[g, k]
        gstart[g + 1] = gstart[g] + bounds[g, n_units]
    fill = bounds[:, :n_units].copy()
    row = np.empty(n, np.int64)
    pix = np.empty(n, np.int64)
    for i in range(n):
        g = group_of[scale[i]]
        r = gstart[g] + fill[g, unit[i]]
        fill[g, unit[i]] += 1
        row[i] = r
        pix[r] = i
    order = np.empty(n, np.int64)
    ustart = np.zeros(n_units + 1, np.int64)
    p = 0
    for k in range(n_units):
        for g in range(n_groups):
            for r in range(gstart[g] + bounds[g, k], gstart[g] + bounds[g, k + 1]):
                order[p] = pix[r]
                p += 1
        ustart[k + 1] = p
    return row, gstart, bounds, order, ustart


@numba.njit(parallel=True, **_JIT)
def _freqs(mu16, scale, vmax, row, gstart, foff, group_of, grid, rows, widths, shifts):
    """Every pixel's frequency row, at its row of its group's block of one flat array (tens
    of MB per 512x512 plane: written on all CPU threads)."""
    flat = np.empty(foff[-1], np.float64)
    for i in numba.prange(mu16.size):
        j = scale[i]
        frac, w, q, low = _window(mu16[i], j, widths, shifts)
        g = group_of[j]
        at = foff[g] + (row[i] - gstart[g]) * (w + 1)
        if low > 0 and low + (w << q) <= vmax[i]:
            for k in range(w + 1):
                flat[at + k] = rows[j, frac, k]
        else:
            _fill_row(flat, at, grid[j, frac], low, q, w, vmax[i])
    return flat


@numba.njit(inline="always", **_JIT)
def _freq_at(flat, foff, gstart, g, r, w, s):
    """Frequency of symbol ``s`` in row ``r`` (of group ``g``, width ``w``)."""
    return np.int64(flat[foff[g] + (r - gstart[g]) * (w + 1) + s])


@numba.njit(**_JIT)
def _select(order, ustart, keep):
    """The pixels of ``order`` where ``keep`` holds (stream order) and their unit bounds."""
    n_units = ustart.size - 1
    idx = np.empty(order.size, np.int64)
    bounds = np.zeros(n_units + 1, np.int64)
    m = 0
    for k in range(n_units):
        for p in range(ustart[k], ustart[k + 1]):
            if keep[order[p]]:
                idx[m] = order[p]
                m += 1
        bounds[k + 1] = m
    return idx[:m], bounds


@dataclass(frozen=True)
class Run:
    """The pixels that code one kind of symbol, in stream order, with their model parameters."""

    idx: np.ndarray  # pixel indices
    params: np.ndarray  # int32 uniform sizes, or (m, 2) float64 edge-flag frequencies
    bounds: np.ndarray  # unit k is idx[bounds[k] : bounds[k + 1]]


def _run(p: Plan, keep: np.ndarray, params: np.ndarray) -> Run:
    idx, bounds = _select(p.order, p.ustart, keep)
    return Run(idx, params[idx], bounds)


@dataclass(frozen=True)
class Plan:
    """How the pixels of ``n_units`` coding units reach the range coder."""

    mu16: np.ndarray  # (n,) int64 parameters and chunk range of every pixel
    scale: np.ndarray
    vmax: np.ndarray
    row: np.ndarray  # (n,) row of each pixel in the bin-symbol groups
    gstart: np.ndarray  # (G + 1,) first row of each group
    bounds: np.ndarray  # (G, n_units + 1) unit bounds inside each group
    flat: np.ndarray  # every row's frequencies, group after group
    foff: np.ndarray  # (G + 1,) start of each group's block in ``flat``
    order: np.ndarray  # (n,) pixels in stream order (unit, group, row)
    ustart: np.ndarray  # (n_units + 1,) unit bounds in ``order``

    @property
    def size(self) -> int:
        return self.mu16.size

    def runs(self, k: int) -> list[tuple[int, int, np.ndarray]]:
        """``(first row, end row, frequency rows)`` of unit ``k``'s non-empty bin-symbol
        groups, in coding order (ascending width). Frequencies are float64 exact integers."""
        widths = _tables().group_widths
        out = []
        for g, w in enumerate(widths):
            a, b = self.gstart[g] + self.bounds[g, k], self.gstart[g] + self.bounds[g, k + 1]
            if b > a:
                at = self.foff[g] + (a - self.gstart[g]) * (w + 1)
                out.append((a, b, self.flat[at : at + (b - a) * (w + 1)].reshape(b - a, w + 1)))
        return out


def plan(
    mu16: np.ndarray, scale: np.ndarray, vmax: np.ndarray | int, unit: np.ndarray, n_units: int
) -> Plan:
    """Lay out pixels (``unit``: the coding unit of each, in ``[0, n_units)``) and build their
    frequency rows; ``vmax`` is one chunk range for all pixels or one per pixel."""
    t = _tables()
    mu16 = np.ascontiguousarray(mu16, np.int64)
    scale = _levels(scale)
    vmax = np.ascontiguousarray(np.broadcast_to(np.asarray(vmax, np.int64), mu16.shape))
    unit = np.ascontiguousarray(unit, np.int64)
    row, gstart, bounds, order, ustart = _layout(
        scale, unit, n_units, t.group_of, t.group_widths.size
    )
    foff = np.concatenate([[0], np.cumsum(np.diff(gstart) * (t.group_widths + 1))])
    with launch_guard():
        flat = _freqs(
            mu16, scale, vmax, row, gstart, foff, t.group_of, t.grid, t.rows, t.widths, t.shifts
        )
    return Plan(mu16, scale, vmax, row, gstart, bounds, flat, foff, order, ustart)


# ---------------------------------------------------------------- encoder side


@numba.njit(**_JIT)
def _symbols(mu16, scale, vmax, values, row, flat, foff, gstart, tabs):
    """Per pixel: bin symbol (at its row), edge flag, in-bin offset and uniform size
    (0: escape, 1: nothing more to code)."""
    group_of, widths, shifts, zcdf, invs = tabs
    n = mu16.size
    bins = np.empty(n, np.int32)
    flagged = np.zeros(n, np.bool_)
    flag = np.zeros(n, np.int32)
    ffreq = np.zeros((n, 2), np.float64)
    off = np.zeros(n, np.int32)
    size = np.ones(n, np.int32)
    for i in range(n):
        j, vm, v = scale[i], vmax[i], values[i]
        _, w, q, low = _window(mu16[i], j, widths, shifts)
        s = _symbol(v, low, q, w)
        bins[row[i]] = s
        if s == w:
            size[i] = 0
            continue
        raw, lo, z = _bin(low, q, vm, s)
        fb = _freq_at(flat, foff, gstart, group_of[j], row[i], w, s)
        split, lower, fe = _split(raw, z, q, vm, fb, mu16[i], j, zcdf, invs)
        if split:
            flagged[i] = True
            ffreq[i, 0], ffreq[i, 1] = fe, fb - fe
            if v == (0 if lower else vm):
                flag[i], size[i] = 0, 1
            else:
                flag[i], off[i], size[i] = 1, v - lo - (1 if lower else 0), z - 1
        else:
            off[i], size[i] = v - lo, z
    return bins, flagged, flag, ffreq, off, size


@dataclass(frozen=True)
class Symbols:
    """What the pixels of a plan code, run by run (the order of a unit's stream)."""

    bins: np.ndarray  # int32 bin symbol of every row of the plan's groups
    flags: Run  # edge flags of wide bins holding a range edge
    flag_values: np.ndarray
    offsets: Run  # in-bin offsets of bins still holding more than one value
    offset_values: np.ndarray
    escapes: Run  # escaped values, uniform over [0, vmax]
    escape_values: np.ndarray


def _tabs() -> tuple[np.ndarray, ...]:
    t = _tables()
    return t.group_of, t.widths, t.shifts, t.zcdf, t.invs


def encode_symbols(p: Plan, values: np.ndarray) -> Symbols:
    """Encoder side: every symbol of the plan's pixels for ``values`` (each in its range)."""
    v = np.ascontiguousarray(values, np.int64)
    bins, flagged, flag, ffreq, off, size = _symbols(
        p.mu16, p.scale, p.vmax, v, p.row, p.flat, p.foff, p.gstart, _tabs()
    )
    flags = _run(p, flagged, ffreq)
    offsets = _run(p, size > 1, size)
    escapes = _run(p, size == 0, (p.vmax + 1).astype(np.int32))
    return Symbols(
        bins,
        flags,
        flag[flags.idx],
        offsets,
        off[offsets.idx],
        escapes,
        v[escapes.idx].astype(np.int32),
    )


# ---------------------------------------------------------------- decoder side


@numba.njit(**_JIT)
def _values(mu16, scale, vmax, bins, row, flat, foff, gstart, tabs):
    """Per pixel, from its bin symbol: first value and size of the bin (0: escape), and the
    edge split (flagged, lower edge, frequencies)."""
    group_of, widths, shifts, zcdf, invs = tabs
    n = mu16.size
    out = np.zeros(n, np.int64)
    size = np.zeros(n, np.int32)
    flagged = np.zeros(n, np.bool_)
    lower_edge = np.zeros(n, np.bool_)
    ffreq = np.zeros((n, 2), np.float64)
    for i in range(n):
        j, vm = scale[i], vmax[i]
        _, w, q, low = _window(mu16[i], j, widths, shifts)
        s = np.int64(bins[row[i]])
        if s >= w:
            continue
        raw, lo, z = _bin(low, q, vm, s)
        out[i], size[i] = lo, z
        fb = _freq_at(flat, foff, gstart, group_of[j], row[i], w, s)
        split, lower, fe = _split(raw, z, q, vm, fb, mu16[i], j, zcdf, invs)
        if split:
            flagged[i], lower_edge[i] = True, lower
            ffreq[i, 0], ffreq[i, 1] = fe, fb - fe
    return out, size, flagged, lower_edge, ffreq


@numba.njit(**_JIT)
def _apply_flags(out, size, lower, vmax, idx, flags):
    """Edge flag 0: the pixel is the edge value; 1: one of the rest of its bin."""
    for m in range(idx.size):
        i = idx[m]
        if flags[m] == 0:
            out[i] = 0 if lower[i] else vmax[i]
            size[i] = 1
        else:
            out[i] += 1 if lower[i] else 0
            size[i] -= 1


class Pending:
    """Decoder side: the values of a plan's pixels between the range coder's passes.

    ``Pending(plan, bins)`` places every pixel in its bin; :meth:`apply_flags` settles the edge
    flags (``flags`` run) and returns the offset and escape runs still to read; ``values``
    then receives them (``values[offsets.idx] += ...``, ``values[escapes.idx] = ...``).
    """

    def __init__(self, p: Plan, bins: np.ndarray):
        self._plan = p
        self.values, self._size, flagged, self._lower, ffreq = _values(
            p.mu16, p.scale, p.vmax, bins, p.row, p.flat, p.foff, p.gstart, _tabs()
        )
        self.flags = _run(p, flagged, ffreq)

    def apply_flags(self, flags: np.ndarray) -> tuple[Run, Run]:
        """Settle the edge flags (stream order of :attr:`flags`); -> (offsets, escapes)."""
        p = self._plan
        _apply_flags(self.values, self._size, self._lower, p.vmax, self.flags.idx, flags)
        return _run(p, self._size > 1, self._size), _run(
            p, self._size == 0, (p.vmax + 1).astype(np.int32)
        )


# ---------------------------------------------------------------- rate and window


@numba.njit(**_JIT)
def _bits(mu16, scale, values, vmax, grid, tabs):
    """Code lengths from the two entries of each row they need and the row's total (the
    rate estimates of the encoder's searches call this on every tile, many times)."""
    group_of, widths, shifts, zcdf, invs = tabs
    n = mu16.size
    bits = np.zeros(n, np.float64)
    for i in range(n):
        j, v = scale[i], values[i]
        frac, w, q, low = _window(mu16[i], j, widths, shifts)
        cdf = grid[j, frac]
        total = np.float64(_row_total(low, q, w, vmax))
        s = _symbol(v, low, q, w)
        if s == w:
            bits[i] = np.log2(total / _row_entry(cdf, low, q, w, vmax, w)) + np.log2(vmax + 1.0)
            continue
        raw, lo, z = _bin(low, q, vmax, s)
        fb = _row_entry(cdf, low, q, w, vmax, s)
        b = np.log2(total / fb)
        split, lower, fe = _split(raw, z, q, vmax, fb, mu16[i], j, zcdf, invs)
        if not split:
            b += np.log2(z)
        elif v == (0 if lower else vmax):
            b += np.log2(fb / fe)
        else:
            b += np.log2(fb / (fb - fe)) + np.log2(max(z - 1, 1))
        bits[i] = b
    return bits


def code_lengths(mu16: np.ndarray, scale: np.ndarray, values: np.ndarray, vmax: int) -> np.ndarray:
    """Ideal code length in bits of each value under the integer tables (rate map, tests)."""
    mu16 = np.ascontiguousarray(mu16, np.int64)
    if vmax == 0:
        return np.zeros(mu16.shape, np.float64)
    args = (np.ascontiguousarray(a, np.int64).ravel() for a in (mu16, _levels(scale), values))
    bits = _bits(*args, np.int64(vmax), _tables().grid, _tabs())
    return bits.reshape(mu16.shape)


@numba.njit(**_JIT)
def _bounds(mu16, scale, widths, shifts):
    low = np.empty(mu16.size, np.int64)
    high = np.empty(mu16.size, np.int64)
    for i in range(mu16.size):
        _, w, q, lo = _window(mu16[i], scale[i], widths, shifts)
        low[i], high[i] = lo, lo + (w << q) - 1
    return low, high


def window_bounds(mu16: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last value of each pixel's focus window (values outside it are escapes)."""
    mu16 = np.asarray(mu16, np.int64)
    t = _tables()
    flat = (np.ascontiguousarray(a, np.int64).ravel() for a in (mu16, _levels(scale)))
    low, high = _bounds(*flat, t.widths, t.shifts)
    return low.reshape(mu16.shape), high.reshape(mu16.shape)
