"""Shared data of the training tests: a tiny config and synthetic planes (no corpus, fast)."""

from __future__ import annotations

import numpy as np

from llic_imaging.train.data import CropSampler
from llic_imaging.train.loop import TrainConfig

# Small enough that a step takes ~0.1 s on a shared CPU; kernels as the codec allows (mask A
# needs the W, N and NW taps, so any odd embed kernel >= 3 works).
TINY_TOML = """\
name = "tiny-test-v0"
seed = 7
steps = 12
batch = 2
crop = 32
lr = 1e-2
lr_final = 1e-3
log_every = 1
checkpoint_every = 4

[model]
channels = 8
blocks = 1
mlp_ratio = 1
embed_kernel = 5
dw_kernel = 3

[augment]
flips = true
bit_shift_prob = 0.0
offset_prob = 0.0
"""


def synthetic_planes() -> tuple[list[np.ndarray], list[str]]:
    """Smooth fields plus noise in three stored types (12-bit, signed 16-bit, 8-bit)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:96, 0:96]
    planes, groups = [], []
    for k in range(2):
        base = 1500 + 600 * np.sin(x / (9 + k)) + 400 * np.cos(y / (13 + k))
        planes.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 4095).astype(np.uint16))
        groups.append("12-bit")
    ct = -1000 + 300 * np.cos(np.hypot(x - 48, y - 40) / 7) + rng.normal(0, 8, x.shape)
    planes.append(ct.astype(np.int16))
    groups.append("signed")
    planes.append((120 + 60 * np.sin((x + y) / 11) + rng.normal(0, 3, x.shape)).astype(np.uint8))
    groups.append("8-bit")
    return planes, groups


def make_sampler(cfg: TrainConfig, seed: int | None = None) -> CropSampler:
    """A sampler over :func:`synthetic_planes` with ``cfg``'s crop and augmentation."""
    planes, groups = synthetic_planes()
    return CropSampler(planes, groups, cfg.crop, cfg.augment, cfg.seed if seed is None else seed)
