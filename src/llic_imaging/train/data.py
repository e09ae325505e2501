"""Training crops from the train split: random crops, flips, bit-depth and offset augmentation.

Side information (vmin, range, input shift, mid) is computed by the codec's own
``codec.engine.chunk_params`` so the network trains on exactly what the encoder will feed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llic_imaging import corpus
from llic_imaging.codec.engine import chunk_params

__all__ = ["Batch", "CropSampler"]


@dataclass
class Batch:
    u: np.ndarray  # (B, crop, crop) int64 values minus vmin
    shift: np.ndarray  # (B,)
    mid: np.ndarray
    vmax: np.ndarray


class CropSampler:
    """Draw crops with group-balanced sampling (every benchmark group equally often)."""

    def __init__(
        self, planes: list[np.ndarray], groups: list[str], crop: int, augment: dict, seed: int
    ):
        self.crop = crop
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        keep = [i for i, p in enumerate(planes) if min(p.shape) >= crop and p.min() != p.max()]
        self.planes = [planes[i].astype(np.int64) for i in keep]
        by_group: dict[str, list[int]] = {}
        for k, i in enumerate(keep):
            by_group.setdefault(groups[i], []).append(k)
        self.groups = [np.asarray(v) for _, v in sorted(by_group.items())]

    @classmethod
    def from_corpus(cls, crop: int, augment: dict, seed: int, split: str = "train") -> CropSampler:
        planes, groups = [], []
        for p in corpus.iter_planes(split=split):
            planes.append(np.asarray(p.array))
            groups.append(p.group)
        return cls(planes, groups, crop, augment, seed)

    def _crop(self) -> np.ndarray:
        rng = self.rng
        g = self.groups[rng.integers(len(self.groups))]
        a = self.planes[g[rng.integers(len(g))]]
        for _ in range(8):
            y = rng.integers(a.shape[0] - self.crop + 1)
            x = rng.integers(a.shape[1] - self.crop + 1)
            c = a[y : y + self.crop, x : x + self.crop]
            if c.min() != c.max():
                break
        aug = self.augment
        if aug.get("flips", True):
            if rng.random() < 0.5:
                c = c[::-1]
            if rng.random() < 0.5:
                c = c[:, ::-1]
            if rng.random() < 0.5:
                c = c.T
        c = c - c.min()
        if c.max() > 255 and rng.random() < aug.get("bit_shift_prob", 0.0):
            c = c >> int(rng.integers(1, 5))
        if rng.random() < aug.get("offset_prob", 0.0):
            c = c + int(rng.integers(0, 4096))
        return np.ascontiguousarray(c)

    def batch(self, size: int) -> Batch:
        crops = [self._crop() for _ in range(size)]
        params = [chunk_params(c) for c in crops]
        u = np.stack([c - p.vmin for c, p in zip(crops, params, strict=True)])
        col = lambda name: np.asarray([getattr(p, name) for p in params], np.int64)  # noqa: E731
        return Batch(u, col("shift"), col("mid"), col("vmax"))
