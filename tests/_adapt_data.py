"""The synthetic image the adaptation tests share.

At ``tests/`` (on ``sys.path`` through ``tests/conftest.py``) so every test folder can import it.
"""

from __future__ import annotations

import numpy as np


def period_three(*planes: int) -> np.ndarray:
    """128 x 128 noise on a column pattern of period 3 that no training image has (a 30-step
    adapter pays for itself there); ``planes`` prefixes the shape, e.g. ``period_three(2)``.
    Every third column is brighter and noisier: a linear feedback chunk takes the brightness
    but not the noise (it cannot change one pixel's scale and not its neighbour's), the
    adapter learns both. The noise leaves no value of the range unused, so no value map takes
    the pattern's place."""
    rng = np.random.default_rng(5)
    x = np.arange(128)[None, :]
    noise = rng.normal(0, 1, (*planes, 128, 128)) * np.where(x % 3 == 0, 10, 1.5)
    return (1000 + 12 * (x % 3 == 0) + noise).astype(np.uint16)
