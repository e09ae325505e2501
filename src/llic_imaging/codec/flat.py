"""Flat flags: a pixel whose four causal neighbours agree is first asked "the same value?".

The network's distribution can never be sure of a value: in a 16-bit tile its scale is set by
the tile's noise, so a pixel of a nodata border (0 beside 0 beside 0) still costs 0.6 bits,
and a thresholded 8-bit background a fraction of that. JPEG-LS has a run mode and JPEG XL its
MA tree for this. Here, where a chunk asks for it, every position whose W, N, NW and NE
neighbours (all coded in earlier steps, inside the tile and patch) hold one value ``v`` first
codes a flag: 1 means the pixel is ``v`` and nothing more is coded; 0 means its value follows
under the network's distribution as usual. The flag's probability is the Krichevsky-Trofimov
estimate, in 1/4096, from the chunk's flags of earlier steps: all flags of a step share it, so
the decoder decodes a step's flags in one call, and encoder and decoder count the same integers.
Design and measurements: ``docs/design.md``, "Flat flags".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PRECISION", "Flags", "candidates", "flags", "frequencies"]

PRECISION = 12  # the flag's probability in 1/4096: a sure flag costs 0.00035 bits
_ONE = 1 << PRECISION


def candidates(values: np.ndarray, at: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which positions ``at`` (patch, row, column arrays) carry a flag, and the value ``v``
    their W, N, NW and NE neighbours share there, from the coded values so far in the framed
    layout of :meth:`Geometry.framed <llic_imaging.codec.schedule.Geometry.framed>`."""
    k, r, c = at
    w = values[k, r + 1, c]
    ok = (w >= 0) & (w == values[k, r, c + 1]) & (w == values[k, r, c]) & (w == values[k, r, c + 2])
    return ok, w


def _probability(equal: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """P(flag = 1) in 1/4096 after ``seen`` flags of which ``equal`` were 1 (KT, clipped)."""
    p = ((2 * equal + 1) << PRECISION) // (2 * seen + 2)
    return np.minimum(np.maximum(p, 1), _ONE - 1)  # not np.clip: its wrapper costs per step


def frequencies(equal: int, seen: int) -> np.ndarray:
    """``[P(0), P(1)]`` in 1/4096 (float64 exact integers, as the range coder takes them)
    of the flags of the next step, after ``seen`` flags of which ``equal`` were 1."""
    p = int(_probability(np.int64(equal), np.int64(seen)))
    return np.array([_ONE - p, p], np.float64)


@dataclass(frozen=True)
class Flags:
    """A chunk's flags: where (indices into its positions in stream order), what, and the
    frequencies ``(n, 2)`` each is coded with."""

    at: np.ndarray
    equal: np.ndarray
    freqs: np.ndarray

    @property
    def hits(self) -> np.ndarray:
        """Positions whose value the flag alone codes."""
        return self.at[self.equal == 1]

    def bits(self) -> np.ndarray:
        """Code length of each flag."""
        return -np.log2(self.freqs[np.arange(self.at.size), self.equal] / _ONE)


def flags(values: np.ndarray, at: tuple[np.ndarray, ...], steps: np.ndarray) -> Flags:
    """The flags of a chunk whose coded values are ``values`` (framed, see
    :func:`candidates`), at its positions ``at`` in stream order, each in step ``steps``."""
    k, r, c = at
    u = values[k, r + 1, c + 1]
    ok, v = candidates(values, at)
    idx = np.flatnonzero(ok)
    equal = (u[idx] == v[idx]).astype(np.int64)
    step = steps[idx]
    seen = np.searchsorted(step, step, side="left")  # flags of earlier steps
    before = np.concatenate([[0], np.cumsum(equal)])[seen]
    p = _probability(before, seen)
    return Flags(idx, equal, np.stack([_ONE - p, p], 1).astype(np.float64))
