"""Range coding of one chunk, one step at a time (the only module that imports constriction).

Per step the stream holds, in this order: the bin symbols of each window-width group (ascending
width, pixels in step order inside a group), the edge flags of wide bins that hold a range edge,
the in-bin offsets of pixels whose bin (still) holds more than one value, then the escaped values. Every call is vectorised over a step's pixels.
Probabilities reach constriction as float64 arrays of exact integers with ``perfect=False``
(its documented deterministic quantisation), so encoder and decoder build identical models.
"""

from __future__ import annotations

import constriction
import numpy as np

from llic_imaging.codec import focus
from llic_imaging.errors import StreamError

__all__ = ["StepDecoder", "StepEncoder"]

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()


class StepEncoder:
    """Accumulates the steps of one chunk into one range-coded word stream."""

    def __init__(self, vmax: int):
        self.vmax = int(vmax)
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, mu16: np.ndarray, scale: np.ndarray, values: np.ndarray) -> None:
        """Code ``values`` (one step's pixels, in step order) under the predicted tables."""
        v = np.asarray(values, np.int64)
        offsets, sizes, escaped, flags, flag_freqs = [], [], [], [], []
        _, groups = focus.tables(mu16, scale, self.vmax)
        for idx, t in groups:
            vi = v[idx]
            sym, off, size = focus.to_symbols(t, vi, self.vmax)
            self._coder.encode(sym.astype(np.int32), _CATEGORICAL, t.freqs)
            e = focus.edge_split(t, sym, self.vmax)
            flag = (vi != e.edge).astype(np.int32)
            flags.append(flag[e.mask])
            flag_freqs.append(e.freqs[e.mask])
            # after an edge flag: nothing more for the edge value, else the rest of the bin
            off = np.where(e.mask, vi - e.base, off)
            size = np.where(e.mask, np.where(flag == 1, size - 1, 1), size)
            offsets.append(off)
            sizes.append(size)
            escaped.append(vi[sym == t.width])
        if not groups:
            return
        flag = np.concatenate(flags)
        if flag.size:
            self._coder.encode(flag, _CATEGORICAL, np.concatenate(flag_freqs))
        off, size = np.concatenate(offsets), np.concatenate(sizes)
        multi = size > 1
        if multi.any():
            self._coder.encode(off[multi].astype(np.int32), _UNIFORM, size[multi].astype(np.int32))
        esc = np.concatenate(escaped)
        if esc.size:
            sizes_esc = np.full(esc.size, self.vmax + 1, np.int32)
            self._coder.encode(esc.astype(np.int32), _UNIFORM, sizes_esc)

    def finish(self) -> bytes:
        """Little-endian words of the whole chunk."""
        return self._coder.get_compressed().astype("<u4").tobytes()


class StepDecoder:
    """Reads back the steps written by :class:`StepEncoder`, in the same order."""

    def __init__(self, payload: bytes, vmax: int):
        self.vmax = int(vmax)
        if len(payload) % 4:
            msg = f"chunk payload length {len(payload)} is not a whole number of 32-bit words"
            raise StreamError(msg)
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.queue.RangeDecoder(words)
        except (ValueError, AssertionError) as exc:
            msg = f"range-coded chunk is corrupt: {exc}"
            raise StreamError(msg) from exc

    def decode(self, mu16: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Return one step's values (int64, step order)."""
        n = np.shape(mu16)[0]
        out = np.zeros(n, np.int64)
        size = np.zeros(n, np.int64)
        try:
            _, groups = focus.tables(mu16, scale, self.vmax)
            splits = []
            for idx, t in groups:
                sym = self._coder.decode(_CATEGORICAL, t.freqs).astype(np.int64)
                out[idx], size[idx] = focus.to_values(t, sym, self.vmax)
                e = focus.edge_split(t, sym, self.vmax)
                splits.append((idx[e.mask], e.edge[e.mask], e.base[e.mask], e.freqs[e.mask]))
            if not groups:
                return out
            at = np.concatenate([s[0] for s in splits])
            if at.size:
                flag = self._coder.decode(_CATEGORICAL, np.concatenate([s[3] for s in splits]))
                edge = np.concatenate([s[1] for s in splits])
                base = np.concatenate([s[2] for s in splits])
                out[at] = np.where(flag == 0, edge, base)
                size[at] = np.where(flag == 0, 1, size[at] - 1)
            order = np.concatenate([idx for idx, _ in groups])
            s = size[order]
            multi = order[s > 1]
            if multi.size:
                out[multi] += self._coder.decode(_UNIFORM, size[multi].astype(np.int32))
            esc = order[s == 0]
            if esc.size:
                sizes = np.full(esc.size, self.vmax + 1, np.int32)
                out[esc] = self._coder.decode(_UNIFORM, sizes)
        except (ValueError, AssertionError, OverflowError) as exc:
            msg = f"range-coded chunk is corrupt: {exc}"
            raise StreamError(msg) from exc
        return out
