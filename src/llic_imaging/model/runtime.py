"""Runtime settings under which the integer network is exact (a context manager).

NNPACK (chosen by torch for some CPU convs when oneDNN is off) and TF32 on GPUs compute with
transforms or reduced mantissas and break integer exactness; they are switched off here and the
previous settings are restored on exit. Thread counts are free: exact sums do not depend on them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numba
import torch

__all__ = ["deterministic", "launch_guard", "resolve_device"]

_WORKQUEUE = threading.Lock()


def resolve_device(device: str | None) -> torch.device:
    """``None``/"cpu" -> CPU; "cuda" requires an available GPU (ValueError otherwise)."""
    if device in (None, "cpu"):
        return torch.device("cpu")
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            msg = "device 'cuda' requested but no CUDA device is available"
            raise ValueError(msg)
        return torch.device(device)
    msg = f"unknown device {device!r}; expected 'cpu' or 'cuda'"
    raise ValueError(msg)


@contextmanager
def deterministic(numthreads: int | None = None) -> Iterator[None]:
    """Run the block with exactness-preserving settings and ``numthreads`` CPU threads (default 1)."""
    saved = (
        torch.get_num_threads(),
        numba.get_num_threads(),
        torch._C._get_nnpack_enabled(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.is_grad_enabled(),
    )
    try:
        # One thread unless asked: per-step tensors are small, and torch's spinning worker
        # threads slow coding by 10-80x when other processes share the cores (measured).
        # The compiled CPU kernel (model.cpu_kernel) runs patches on numba's threads.
        threads = int(numthreads or 1)
        torch.set_num_threads(threads)
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        torch.backends.nnpack.set_flags(False)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.set_grad_enabled(False)
        yield
    finally:
        torch.set_num_threads(saved[0])
        numba.set_num_threads(saved[1])
        torch.backends.nnpack.set_flags(saved[2])
        torch.backends.cuda.matmul.allow_tf32 = saved[3]
        torch.backends.cudnn.allow_tf32 = saved[4]
        torch.backends.cudnn.deterministic = saved[5]
        torch.backends.cudnn.benchmark = saved[6]
        torch.set_grad_enabled(saved[7])


def launch_guard() -> AbstractContextManager:
    """Hold around every call of a ``parallel=True`` numba function: numba's fallback thread
    pool ("workqueue", used where neither TBB nor OpenMP loads, e.g. some macOS installs) aborts
    the process on concurrent launches, so they are serialised there."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel launch yet in this process: do not guess
        layer = "workqueue"
    return _WORKQUEUE if layer == "workqueue" else nullcontext()
