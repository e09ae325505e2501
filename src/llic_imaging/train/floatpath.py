"""One float code path for training on every x86-64 CPU, so a config gives the same weights.

Coding is integer-exact everywhere; training is not: gradients are floats, and torch's CPU BLAS
(oneMKL) picks its GEMM kernels by CPU vendor and vector width, so the same config trained other
weights on an Intel Xeon than on an AMD EPYC (docs/MODEL_CARD.md, "Reproducibility"). oneMKL's
conditional-numerical-reproducibility branch ``COMPATIBLE`` (SSE2 without the approximate
``rcpps``/``rsqrtps``, whose results differ between vendors) runs the same code on every CPU, and
``ATEN_CPU_CAPABILITY=avx2`` does the same for torch's own vector kernels on CPUs with and without
AVX-512. Both are read when torch loads, so :func:`pin` must run before ``import torch``; a fixed
thread count is the third condition (``llic-train --threads``).
"""

from __future__ import annotations

import os
import sys

__all__ = ["PINS", "pin"]

PINS: dict[str, str] = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}


def pin() -> str:
    """Set :data:`PINS` (values already in the environment win) if torch is not loaded yet.

    Returns what the record of an exported model says about the float path: the pinned values,
    or ``"native"`` when torch was loaded first (in-process callers such as tests) or a pin was
    overridden.
    """
    if "torch" not in sys.modules:
        for key, value in PINS.items():
            os.environ.setdefault(key, value)
        if all(os.environ[k] == v for k, v in PINS.items()):
            return " ".join(f"{k}={v}" for k, v in PINS.items())
    return "native"
