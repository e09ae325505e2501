"""Training crops from the train split: random crops, flips, bit-depth and offset augmentation.

Side information (vmin, range, input shift, mid) is computed by the codec's own
``codec.engine.chunk_params`` so the network trains on exactly what the encoder will feed it.
With ``context`` set to the codec's tile size, it is computed on a tile-sized window around the
crop, as the encoder does: a flat crop inside a busy tile then teaches the model what padding
next to anatomy costs (crops alone never show it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llic_imaging import corpus
from llic_imaging.codec.engine import ChunkParams, chunk_params

__all__ = ["Batch", "CropSampler", "augment"]


@dataclass
class Batch:
    u: np.ndarray  # (B, crop, crop) int64 values minus vmin
    shift: np.ndarray  # (B,)
    mid: np.ndarray
    vmax: np.ndarray


def augment(windows: list[np.ndarray], aug: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """Random flips and transpose, minimum to zero, bit-depth and offset augmentation of
    aligned windows (a plane, or a plane and its predecessor): each is drawn once and applied to
    all alike, with the first window's minimum and range deciding."""
    if aug.get("flips", True):
        if rng.random() < 0.5:
            windows = [w[::-1] for w in windows]
        if rng.random() < 0.5:
            windows = [w[:, ::-1] for w in windows]
        if rng.random() < 0.5:
            windows = [w.T for w in windows]
    lo = windows[0].min()
    windows = [w - lo for w in windows]
    if windows[0].max() > 255 and rng.random() < aug.get("bit_shift_prob", 0.0):
        k = int(rng.integers(1, 5))
        windows = [w >> k for w in windows]
    if rng.random() < aug.get("offset_prob", 0.0):
        off = int(rng.integers(0, 4096))
        windows = [w + off for w in windows]
    return windows


class CropSampler:
    """Draw crops with group-balanced sampling (every benchmark group equally often)."""

    def __init__(
        self,
        planes: list[np.ndarray],
        groups: list[str],
        crop: int,
        augment: dict,
        seed: int,
        *,
        context: int = 0,
    ):
        self.crop = crop
        self.context = context
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        keep = [i for i, p in enumerate(planes) if min(p.shape) >= crop and p.min() != p.max()]
        self.planes = [planes[i].astype(np.int64) for i in keep]
        by_group: dict[str, list[int]] = {}
        for k, i in enumerate(keep):
            by_group.setdefault(groups[i], []).append(k)
        self.groups = [np.asarray(v) for _, v in sorted(by_group.items())]

    @classmethod
    def from_corpus(
        cls,
        crop: int,
        augment: dict,
        seed: int,
        split: str = "train",
        *,
        context: int = 0,
        groups: Sequence[str] = (),
    ) -> CropSampler:
        """Planes of a corpus split; ``groups`` (benchmark group names) keeps only those."""
        planes, kept = [], []
        for p in corpus.iter_planes(split=split):
            if groups and p.group not in groups:
                continue
            planes.append(np.asarray(p.array))
            kept.append(p.group)
        if not planes:
            msg = f"no {split} planes in groups {list(groups)}"
            raise ValueError(msg)
        return cls(planes, kept, crop, augment, seed, context=context)

    def _window(self) -> np.ndarray:
        """An augmented region the size of a coded tile (``context``), or of a crop if 0."""
        rng = self.rng
        g = self.groups[rng.integers(len(self.groups))]
        a = self.planes[g[rng.integers(len(g))]]
        wh, ww = (self.crop, self.crop)
        if self.context:
            wh, ww = min(self.context, a.shape[0]), min(self.context, a.shape[1])
        for _ in range(8):
            y = rng.integers(a.shape[0] - wh + 1)
            x = rng.integers(a.shape[1] - ww + 1)
            c = a[y : y + wh, x : x + ww]
            if c.min() != c.max():
                break
        return np.ascontiguousarray(augment([c], self.augment, rng)[0])

    def _sample(self) -> tuple[np.ndarray, ChunkParams]:
        """A crop (minus vmin) and the side information of the window it was cut from."""
        w = self._window()
        p = chunk_params(w)
        if w.shape != (self.crop, self.crop):
            y = self.rng.integers(w.shape[0] - self.crop + 1)
            x = self.rng.integers(w.shape[1] - self.crop + 1)
            w = w[y : y + self.crop, x : x + self.crop]
        return w - p.vmin, p

    def batch(self, size: int) -> Batch:
        samples = [self._sample() for _ in range(size)]
        params = [p for _, p in samples]
        u = np.stack([c for c, _ in samples])
        col = lambda name: np.asarray([getattr(p, name) for p in params], np.int64)  # noqa: E731
        return Batch(u, col("shift"), col("mid"), col("vmax"))
