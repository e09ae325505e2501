"""Range coding of chunks, step by step (the only module that imports constriction).

Per step a chunk's stream holds, in this order: the bin symbols of each window-width group
(ascending width, pixels in step order inside a group), the edge flags of wide bins that hold a
range edge, the in-bin offsets of pixels whose bin (still) holds more than one value, then the
escaped values. The encoder prepares every symbol of a chunk in one vectorised pass and the
decoder prepares the tables of one step for all chunks of a batch at once: numpy work is per
batch, and Python loops only hand contiguous slices to constriction.
Probabilities reach constriction as float64 arrays of exact integers with ``perfect=False``
(its documented deterministic quantisation), so encoder and decoder build identical models.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np

from llic_imaging.codec import focus
from llic_imaging.errors import StreamError

__all__ = ["ChunkDecoders", "encode_chunk"]

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()
_KEY = 1 << 10  # > any window width: sort key = unit * _KEY + width


def _sorted_by_width(unit: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Stable order by (unit, window width): the stream order of bin symbols within each unit."""
    return np.argsort(unit * _KEY + focus.window_width(scale), kind="stable")


def _bounds(unit: np.ndarray, n_units: int) -> np.ndarray:
    """Start of every unit in a non-decreasing ``unit`` array (n_units + 1 entries)."""
    return np.searchsorted(unit, np.arange(n_units + 1))


def encode_chunk(
    mu16: np.ndarray, scale: np.ndarray, values: np.ndarray, vmax: int, step_sizes: Sequence[int]
) -> bytes:
    """Little-endian words coding ``values`` (a chunk's pixels in stream order, step after step)."""
    n_steps = len(step_sizes)
    step = np.repeat(np.arange(n_steps), step_sizes)
    order = _sorted_by_width(step, scale)
    step, v = step[order], np.asarray(values, np.int64)[order]
    groups = focus.tables(np.asarray(mu16)[order], np.asarray(scale)[order], vmax)
    off = np.zeros(v.size, np.int64)
    size = np.ones(v.size, np.int64)
    flagged = np.zeros(v.size, bool)
    flag = np.zeros(v.size, np.int32)
    flag_freqs = np.zeros((v.size, 2), np.float64)
    runs = []
    for idx, t in groups:
        vi = v[idx]
        sym, o, z = focus.to_symbols(t, vi)
        e = focus.edge_split(t, sym)
        f = (vi != e.edge).astype(np.int32)
        # after an edge flag: nothing more for the edge value, else the rest of the bin
        off[idx] = np.where(e.mask, vi - e.base, o)
        size[idx] = np.where(e.mask, np.where(f == 1, z - 1, 1), z)
        size[idx[sym == t.width]] = 0
        flagged[idx], flag[idx], flag_freqs[idx] = e.mask, f, e.freqs
        runs.append((sym.astype(np.int32), t.freqs, _bounds(step[idx], n_steps)))
    fl = np.flatnonzero(flagged)
    multi = np.flatnonzero(size > 1)
    esc = np.flatnonzero(size == 0)
    fb, mb, eb = (_bounds(step[i], n_steps) for i in (fl, multi, esc))
    flag, flag_freqs = flag[fl], flag_freqs[fl]
    off, usize = off[multi].astype(np.int32), size[multi].astype(np.int32)
    escaped = v[esc].astype(np.int32)
    esc_size = np.full(escaped.size, vmax + 1, np.int32)
    coder = constriction.stream.queue.RangeEncoder()
    for s in range(n_steps):
        for sym, freqs, b in runs:
            if b[s + 1] > b[s]:
                coder.encode(sym[b[s] : b[s + 1]], _CATEGORICAL, freqs[b[s] : b[s + 1]])
        if fb[s + 1] > fb[s]:
            coder.encode(flag[fb[s] : fb[s + 1]], _CATEGORICAL, flag_freqs[fb[s] : fb[s + 1]])
        if mb[s + 1] > mb[s]:
            coder.encode(off[mb[s] : mb[s + 1]], _UNIFORM, usize[mb[s] : mb[s + 1]])
        if eb[s + 1] > eb[s]:
            coder.encode(escaped[eb[s] : eb[s + 1]], _UNIFORM, esc_size[eb[s] : eb[s + 1]])
    return coder.get_compressed().astype("<u4").tobytes()


class ChunkDecoders:
    """Reads back, one step at a time, the chunks of a batch written by :func:`encode_chunk`."""

    def __init__(self, payloads: Sequence[bytes], vmax: Sequence[int]):
        self.vmax = np.asarray(vmax, np.int64)
        self._coders = []
        for payload in payloads:
            if len(payload) % 4:
                msg = f"chunk payload length {len(payload)} is not a whole number of 32-bit words"
                raise StreamError(msg)
            words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
            try:
                self._coders.append(constriction.stream.queue.RangeDecoder(words))
            except (ValueError, AssertionError) as exc:
                msg = f"range-coded chunk is corrupt: {exc}"
                raise StreamError(msg) from exc

    def decode_step(self, mu16: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """One step of every chunk: ``(chunks, n)`` parameters -> ``(chunks, n)`` int64 values."""
        try:
            return self._decode_step(np.asarray(mu16, np.int64), np.asarray(scale, np.int64))
        except (ValueError, AssertionError, OverflowError) as exc:
            msg = f"range-coded chunk is corrupt: {exc}"
            raise StreamError(msg) from exc

    def _decode_step(self, mu16: np.ndarray, scale: np.ndarray) -> np.ndarray:
        n_chunks, n = mu16.shape
        chunk = np.repeat(np.arange(n_chunks), n)
        order = _sorted_by_width(chunk, scale.reshape(-1))
        chunk = chunk[order]
        groups = focus.tables(mu16.reshape(-1)[order], scale.reshape(-1)[order], self.vmax[chunk])
        coders = self._coders
        syms = [np.zeros(idx.size, np.int64) for idx, _ in groups]
        bounds = [_bounds(chunk[idx], n_chunks) for idx, _ in groups]
        for k, coder in enumerate(coders):
            for (_, t), sym, b in zip(groups, syms, bounds, strict=True):
                if b[k + 1] > b[k]:
                    sym[b[k] : b[k + 1]] = coder.decode(_CATEGORICAL, t.freqs[b[k] : b[k + 1]])
        out = np.zeros(chunk.size, np.int64)
        size = np.zeros(chunk.size, np.int64)
        flagged = np.zeros(chunk.size, bool)
        edge = np.zeros(chunk.size, np.int64)
        base = np.zeros(chunk.size, np.int64)
        flag_freqs = np.zeros((chunk.size, 2), np.float64)
        for (idx, t), sym in zip(groups, syms, strict=True):
            out[idx], size[idx] = focus.to_values(t, sym)
            e = focus.edge_split(t, sym)
            flagged[idx], edge[idx], base[idx], flag_freqs[idx] = e.mask, e.edge, e.base, e.freqs
        fl = np.flatnonzero(flagged)
        fb = _bounds(chunk[fl], n_chunks)
        flag = np.zeros(fl.size, np.int64)
        for k, coder in enumerate(coders):
            if fb[k + 1] > fb[k]:
                flag[fb[k] : fb[k + 1]] = coder.decode(
                    _CATEGORICAL, flag_freqs[fl[fb[k] : fb[k + 1]]]
                )
        out[fl] = np.where(flag == 0, edge[fl], base[fl])
        size[fl] = np.where(flag == 0, 1, size[fl] - 1)
        multi = np.flatnonzero(size > 1)
        mb = _bounds(chunk[multi], n_chunks)
        usize = size[multi].astype(np.int32)
        esc = np.flatnonzero(size == 0)
        eb = _bounds(chunk[esc], n_chunks)
        esc_size = (self.vmax[chunk[esc]] + 1).astype(np.int32)
        for k, coder in enumerate(coders):
            if mb[k + 1] > mb[k]:
                out[multi[mb[k] : mb[k + 1]]] += coder.decode(_UNIFORM, usize[mb[k] : mb[k + 1]])
            if eb[k + 1] > eb[k]:
                out[esc[eb[k] : eb[k + 1]]] = coder.decode(_UNIFORM, esc_size[eb[k] : eb[k + 1]])
        result = np.empty(chunk.size, np.int64)
        result[order] = out
        return result.reshape(n_chunks, n)
