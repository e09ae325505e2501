"""A synthetic image whose pixels follow a predictor the shared network does not know, shared
by the linear feedback tests and the golden format-6 stream (``tests/data``).

At ``tests/`` (on ``sys.path`` through ``tests/conftest.py``) so every test folder can import it.
"""

from __future__ import annotations

import numpy as np


def interpolated(seed: int = 3, shape: tuple[int, int] = (100, 150)) -> np.ndarray:
    """Noise smoothed by a 3 x 3 box on a slope: neighbours' values predict each pixel in a
    way the shared network does not know."""
    rng = np.random.default_rng(seed)
    n = rng.normal(0, 30, (shape[0] + 2, shape[1] + 2))
    smooth = sum(n[i : i + shape[0], j : j + shape[1]] for i in range(3) for j in range(3)) / 9
    y, x = np.mgrid[: shape[0], : shape[1]]
    return (1500 + 3 * x + 2 * y + smooth + rng.normal(0, 1, shape)).astype(np.uint16)
