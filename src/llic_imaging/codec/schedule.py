"""The hierarchical parallel coding order: tiles -> P x P patches -> knight-slope steps.

Pure numpy. Inside a patch, pixel (r, c) is coded at step ``c + 2 r``; every patch of every tile
in a batch runs the same step at once, so a tile takes ``3 P - 2`` network steps whatever its
size. A neighbour at offset (dr, dc) was coded strictly earlier exactly when ``dc + 2 dr < 0``,
which makes the causal masks translation invariant (one masked conv serves every step).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Geometry", "mask_taps", "steps_per_patch"]


def steps_per_patch(patch: int) -> int:
    """Number of sequential steps for a P x P patch (the knight-slope scan)."""
    return 3 * patch - 2


def mask_taps(kernel: int, *, include_current: bool) -> np.ndarray:
    """Offsets (dr, dc) of a causal k x k kernel, as an (T, 2) int array in raster order.

    ``include_current=False`` is mask A (strictly earlier steps: used on pixels);
    ``True`` is mask B (earlier or same step: used on features, whose value at a position
    depends only on pixels of strictly earlier steps).
    """
    h = kernel // 2
    taps = [
        (dr, dc)
        for dr in range(-h, h + 1)
        for dc in range(-h, h + 1)
        if (dc + 2 * dr < 0) or (include_current and dc + 2 * dr == 0)
    ]
    return np.asarray(taps, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class Geometry:
    """How an h x w tile is cut into P x P patches, and which positions each step codes.

    Patches are laid out as a batch ``(n_patches, P, P)``; positions beyond the tile edge
    (in the last row/column of patches) are never coded and never seen as context.
    """

    height: int
    width: int
    patch: int

    @property
    def grid(self) -> tuple[int, int]:
        return (-(-self.height // self.patch), -(-self.width // self.patch))

    @property
    def n_patches(self) -> int:
        gy, gx = self.grid
        return gy * gx

    @property
    def steps(self) -> int:
        return steps_per_patch(self.patch)

    @cached_property
    def extents(self) -> np.ndarray:
        """(n_patches, 2) valid rows/cols of each patch (P except at the tile's bottom/right)."""
        gy, gx = self.grid
        p = self.patch
        rows = np.minimum(p, self.height - np.arange(gy) * p)
        cols = np.minimum(p, self.width - np.arange(gx) * p)
        return np.stack(np.broadcast_arrays(rows[:, None], cols[None, :]), -1).reshape(-1, 2)

    @cached_property
    def inside(self) -> np.ndarray:
        """(n_patches, P, P) bool: position lies inside the tile."""
        r = np.arange(self.patch)
        ext = self.extents
        return (r[None, :, None] < ext[:, 0, None, None]) & (
            r[None, None, :] < ext[:, 1, None, None]
        )

    def to_patches(self, tile: np.ndarray) -> np.ndarray:
        """(..., h, w) -> (..., n_patches, P, P), zero-padded at the bottom/right."""
        gy, gx = self.grid
        p = self.patch
        lead = tile.shape[:-2]
        pad = [(0, 0)] * len(lead) + [(0, gy * p - self.height), (0, gx * p - self.width)]
        t = np.pad(tile, pad)
        t = t.reshape(*lead, gy, p, gx, p)
        t = np.moveaxis(t, -3, -2)
        return t.reshape(*lead, gy * gx, p, p)

    def from_patches(self, patches: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_patches`."""
        gy, gx = self.grid
        p = self.patch
        lead = patches.shape[:-3]
        t = patches.reshape(*lead, gy, gx, p, p)
        t = np.moveaxis(t, -2, -3).reshape(*lead, gy * p, gx * p)
        return t[..., : self.height, : self.width]

    def framed(self, values: np.ndarray | None = None) -> np.ndarray:
        """Coded values in a frame of one row above and one column each side of every patch,
        ``(n_patches, P + 1, P + 2)`` int64, -1 wherever nothing is coded: the frame, beyond
        the tile, and everywhere without ``values`` (``(n_patches * P * P,)``, patch layout),
        which a decoder then fills in step by step. Flat flags and linear feedback read the
        causal neighbours of a position here without bounds checks on the frame."""
        out = np.full((self.n_patches, self.patch + 1, self.patch + 2), -1, np.int64)
        if values is not None:
            shape = (self.n_patches, self.patch, self.patch)
            out[:, 1:, 1:-1] = np.where(self.inside, values.reshape(shape), -1)
        return out

    @cached_property
    def step_map(self) -> np.ndarray:
        """(P, P) step index of every patch position."""
        r, c = np.indices((self.patch, self.patch))
        return c + 2 * r

    def step_rows(self, s: int) -> tuple[int, int]:
        """First patch row and number of rows holding a position of step ``s`` (c = s - 2r)."""
        p = self.patch
        first = max(0, (s - p + 2) // 2)
        return first, max(0, min(p - 1, s // 2) - first + 1)

    def step_cells(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Patch rows and columns of step ``s``'s positions, in stream order (index arrays)."""
        first, n = self.step_rows(s)
        r = np.arange(first, first + n)
        return r, s - 2 * r

    @cached_property
    def step_inside(self) -> list[np.ndarray]:
        """For each step, ``(n_patches, rows)`` bool: which of its positions lie inside the tile."""
        return [self.inside[:, *self.step_cells(s)] for s in range(self.steps)]

    @cached_property
    def step_positions(self) -> list[np.ndarray]:
        """For each step, the flat indices ``patch * P * P + r * P + c`` coded in it (inside only).

        Ordered by patch, then row: the order in which symbols are written to the stream.
        """
        p2 = self.patch * self.patch
        flat_inside = self.inside.reshape(-1)
        step_flat = np.tile(self.step_map.reshape(-1), self.n_patches)
        order = np.arange(self.n_patches * p2)
        out = []
        for s in range(self.steps):
            sel = order[(step_flat == s) & flat_inside]
            out.append(sel)
        return out

    @cached_property
    def step_at(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each step, (patch, row, column) index arrays of its :attr:`step_positions`."""
        p = self.patch
        return [(q // (p * p), q % (p * p) // p, q % p) for q in self.step_positions]

    @cached_property
    def stream_order(self) -> np.ndarray:
        """Every coded position in the order the stream holds them (step after step)."""
        return np.concatenate(self.step_positions)

    @cached_property
    def step_sizes(self) -> list[int]:
        """Number of positions coded in each step."""
        return [p.size for p in self.step_positions]
