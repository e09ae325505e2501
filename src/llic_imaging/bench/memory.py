"""Peak-memory measurement in a fresh process, for the 8192x8192 uint16 target of ``llic bench --memory``.

A fresh (spawned) process is the only way to see the peak of one job: this process's own peak
already includes whatever it did before.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["measure_memory", "peak_memory", "synthetic_plane"]

T = TypeVar("T")


def peak_memory(fn: Callable[..., T], /, *args: Any) -> tuple[T, int]:
    """Run ``fn(*args)`` in a fresh Python process; return its result and that process's peak RSS.

    ``fn`` and ``args`` must be picklable (a module-level function). The peak covers the whole
    child process, interpreter and imports included, because that is what a user's job costs.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_call_and_measure, fn, *args).result()


def synthetic_plane(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A 12-bit uint16 plane with smooth structure plus noise, built in strips to stay lean.

    Building it in one expression would allocate several float64 temporaries of the full size
    and inflate the very peak being measured.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((height, width), dtype=np.uint16)
    x = np.arange(width, dtype=np.uint32)
    for top in range(0, height, 256):
        y = np.arange(top, min(top + 256, height), dtype=np.uint32)[:, None]
        smooth = (x // 3 + y // 5 + (x * y) % 1021 // 8) % 3072
        noise = rng.integers(0, 64, size=smooth.shape, dtype=np.uint32)
        out[top : top + len(y)] = smooth + noise + 512
    return out


def measure_memory(
    shape: tuple[int, int] = (8192, 8192),
    *,
    numthreads: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Encode and decode a synthetic uint16 plane with llic in a fresh process; report peak RSS.

    Returns
    -------
    dict
        ``shape``, ``dtype``, ``peak_rss_bytes``, ``exact``, ``compressed_bytes``, ``bps``,
        ``encode_s``, ``decode_s``, ``numthreads`` and ``model``.
    """
    result, peak = peak_memory(_llic_round_trip, tuple(shape), numthreads, model)
    return {"shape": list(shape), "dtype": "uint16", "peak_rss_bytes": peak, **result}


def _call_and_measure(fn: Callable[..., T], *args: Any) -> tuple[T, int]:
    result = fn(*args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux and bytes on macOS.
    return result, peak if sys.platform == "darwin" else peak * 1024


def _llic_round_trip(
    shape: tuple[int, int], numthreads: int | None, model: str | None
) -> dict[str, Any]:
    import llic_imaging

    plane = synthetic_plane(*shape)
    t0 = time.perf_counter()
    data = llic_imaging.encode(plane, numthreads=numthreads, model=model)
    t1 = time.perf_counter()
    decoded = llic_imaging.decode(data, numthreads=numthreads)
    t2 = time.perf_counter()
    return {
        "exact": bool(np.array_equal(decoded, plane)),
        "compressed_bytes": len(data),
        "bps": 8 * len(data) / plane.size,
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "numthreads": numthreads,
        "model": model,
    }
