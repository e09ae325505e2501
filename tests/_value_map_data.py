"""Synthetic images with unused values, shared by the value-map tests.

At ``tests/`` (on ``sys.path`` through ``tests/conftest.py``) so every test folder can import it.
"""

from __future__ import annotations

import numpy as np


def thresholded(planes: int = 1, seed: int = 5, noise: float = 3.0) -> np.ndarray:
    """A micro-CT-like (planes, 96, 80) uint8 stack: a noisy object whose values start at 40
    on a zero background, so values 1-39 are never used; the planes share the object and its
    texture and differ by their noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :80]
    inside = (yy - 48) ** 2 / 40**2 + (xx - 40) ** 2 / 30**2 < 1
    texture = 60 + 20 * np.sin(yy / 9.0) + rng.normal(0, 6, (96, 80))
    body = texture + rng.normal(0, noise, (planes, 96, 80))
    return np.where(inside, np.clip(body, 40, 255), 0).astype(np.uint8)
