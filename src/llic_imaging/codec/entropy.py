"""Range coding of chunks, step by step (the only module that imports constriction).

Per step a chunk's stream holds, in this order: its flat flags (:mod:`flat`), if it has any,
then, for the pixels whose value a flag did not give, the bin symbols of each window-width group
(ascending width, pixels in step order inside a group), the edge flags of wide bins that hold a
range edge, the in-bin offsets of pixels whose bin (still) holds more than one value, then the
escaped values. The encoder prepares every symbol of a chunk in one compiled pass
(:func:`focus.plan`, :func:`focus.encode_symbols`) and the decoder prepares the tables of one
step for all chunks of a batch at once: Python loops only hand contiguous slices to constriction.
Probabilities reach constriction as float64 arrays of exact integers with ``perfect=False``
(its documented deterministic quantisation), so encoder and decoder build identical models.
A decoder that did not (other integers) is told by where its chunks end
(:meth:`ChunkDecoders.misread`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import constriction
import numpy as np

from llic_imaging.codec import flat, focus
from llic_imaging.errors import StreamError

__all__ = ["ChunkDecoders", "encode_chunk"]

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()
_TAIL_BITS = 96  # see ChunkDecoders.misread


def _encode_unit(coder, sym: focus.Symbols, p: focus.Plan, k: int) -> None:
    """Unit ``k`` (a step) of a chunk: bin symbols by group, edge flags, offsets, escapes."""
    for a, b, freqs in p.runs(k):
        coder.encode(sym.bins[a:b], _CATEGORICAL, freqs)
    for run, values, model in (
        (sym.flags, sym.flag_values, _CATEGORICAL),
        (sym.offsets, sym.offset_values, _UNIFORM),
        (sym.escapes, sym.escape_values, _UNIFORM),
    ):
        a, b = run.bounds[k], run.bounds[k + 1]
        if b > a:
            coder.encode(values[a:b], model, run.params[a:b])


def encode_chunk(
    mu16: np.ndarray,
    scale: np.ndarray,
    values: np.ndarray,
    vmax: int,
    step_sizes: Sequence[int],
    flags: flat.Flags | None = None,
) -> bytes:
    """Little-endian words coding ``values`` (a chunk's pixels in stream order, step after
    step), with its flat ``flags`` first in each step where it has them."""
    n_steps = len(step_sizes)
    unit = np.repeat(np.arange(n_steps), step_sizes)
    if flags is not None:
        coded = np.ones(unit.size, bool)
        coded[flags.hits] = False
        bounds = np.searchsorted(unit[flags.at], np.arange(n_steps + 1))
        mu16, scale, values, unit = mu16[coded], scale[coded], values[coded], unit[coded]
    p = focus.plan(mu16, scale, vmax, unit, n_steps)
    sym = focus.encode_symbols(p, values)
    coder = constriction.stream.queue.RangeEncoder()
    for k in range(n_steps):
        if flags is not None and bounds[k + 1] > bounds[k]:
            a, b = bounds[k], bounds[k + 1]
            coder.encode(flags.equal[a:b].astype(np.int32), _CATEGORICAL, flags.freqs[a:b])
        _encode_unit(coder, sym, p, k)
    return coder.get_compressed().astype("<u4").tobytes()


@contextmanager
def _words_corrupt() -> Iterator[None]:
    """What constriction raises on words no encoder wrote, as a :class:`StreamError`."""
    try:
        yield
    except (ValueError, AssertionError, OverflowError) as exc:
        msg = f"range-coded chunk is corrupt: {exc}"
        raise StreamError(msg) from exc


class ChunkDecoders:
    """Reads back, one step at a time, the chunks of a batch written by :func:`encode_chunk`."""

    def __init__(self, payloads: Sequence[bytes], vmax: Sequence[int]):
        self.vmax = np.asarray(vmax, np.int64)
        self._ran_out = np.zeros(len(self.vmax), bool)  # a chunk's words were all read
        self._tail = np.zeros(len(self.vmax))  # bits decoded since
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

    def misread(self) -> list[int]:
        """The chunks whose decoding did not end where the encoder ended it.

        An exact decode rebuilds the encoder's tables, so it reads back the words the encoder
        wrote: all of them, and once they are all read, at most one more renormalisation's
        worth of symbols (under 64 bits; ``_TAIL_BITS`` allows for the difference between the
        tables' ideal code lengths and constriction's quantised ones). A decoder whose
        integers differ (other weights, a platform that does not compute exactly) reads its
        symbols from the same words but almost never ends at their end: it stops short, or
        runs past it and decodes the zeros constriction pads with. The chunk's CRC-32 cannot see
        this (it checks the bytes, not what was computed from them), and a window read has no
        digest of its pixels."""
        return [
            k
            for k, coder in enumerate(self._coders)
            if not coder.maybe_exhausted() or self._tail[k] > _TAIL_BITS
        ]

    def decode_flags(self, k: int, count: int, freqs: np.ndarray) -> np.ndarray:
        """The next ``count`` flat flags of chunk ``k``, all coded with ``freqs`` (a step's
        flags come before its values)."""
        with _words_corrupt():
            return self._coders[k].decode(_CATEGORICAL, np.repeat(freqs[None], count, 0))

    def decode_step(
        self, mu16: np.ndarray, scale: np.ndarray, coded: np.ndarray | None = None
    ) -> np.ndarray:
        """One step of every chunk: ``(chunks, n)`` parameters -> ``(chunks, n)`` int64 values;
        only where ``coded`` (default everywhere; 0 elsewhere: a flag gave those values)."""
        with _words_corrupt():
            return self._decode_step(np.asarray(mu16, np.int64), np.asarray(scale, np.int64), coded)

    def _decode_step(
        self, mu16: np.ndarray, scale: np.ndarray, coded: np.ndarray | None
    ) -> np.ndarray:
        n_chunks, n = mu16.shape
        chunk = np.repeat(np.arange(n_chunks), n)
        mu16, scale = mu16.reshape(-1), scale.reshape(-1)
        if coded is not None:
            keep = coded.reshape(-1)
            chunk, mu16, scale = chunk[keep], mu16[keep], scale[keep]
        p = focus.plan(mu16, scale, self.vmax[chunk], chunk, n_chunks)
        coders = self._coders
        self._ran_out |= [coder.maybe_exhausted() for coder in coders]
        bins = np.empty(p.size, np.int32)
        for k, coder in enumerate(coders):
            for a, b, freqs in p.runs(k):
                bins[a:b] = coder.decode(_CATEGORICAL, freqs)
        pending = focus.Pending(p, bins)
        run = pending.flags
        flags = np.zeros(run.idx.size, np.int32)
        for k, coder in enumerate(coders):
            a, b = run.bounds[k], run.bounds[k + 1]
            if b > a:
                flags[a:b] = coder.decode(_CATEGORICAL, run.params[a:b])
        offsets, escapes = pending.apply_flags(flags)
        out = pending.values
        for k, coder in enumerate(coders):
            for run, add in ((offsets, True), (escapes, False)):
                a, b = run.bounds[k], run.bounds[k + 1]
                if b > a:
                    got = coder.decode(_UNIFORM, run.params[a:b])
                    if add:
                        out[run.idx[a:b]] += got
                    else:
                        out[run.idx[a:b]] = got
        for k in np.flatnonzero(self._ran_out):
            at = chunk == k
            self._tail[k] += focus.code_lengths(mu16[at], scale[at], out[at], self.vmax[k]).sum()
        if coded is None:
            return out.reshape(n_chunks, n)
        full = np.zeros(n_chunks * n, np.int64)
        full[keep] = out
        return full.reshape(n_chunks, n)
