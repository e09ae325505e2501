"""Runtime settings under which the integer network is exact (a context manager).

Exactness needs float32 products computed in float32 (``docs/design.md``, "Integer
exactness"). Several process-wide torch settings break that and may be set by the host
application: NNPACK (chosen by torch for some CPU convs when oneDNN is off: Winograd/FFT),
TF32 on GPUs, and oneDNN's bf16/TF32 products on CPUs with AVX512-BF16 or AMX (what
``torch.set_float32_matmul_precision("medium"/"high")`` turns on: the 11-bit activations do not
fit bf16's 8-bit mantissa). :func:`deterministic` pins them all while coding and gives the
host its settings back afterwards. Thread counts are free: exact sums do not depend on them.
Threads: torch's and numba's follow the caller's count; every loaded BLAS library (numpy's
serves the encoder's least-squares fits) runs on one, since the encoder fits tiles on the
caller's count of threads (``codec.engine``), so ``numthreads`` bounds what a coder runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numba
import torch
from threadpoolctl import ThreadpoolController

__all__ = ["deterministic", "launch_guard", "resolve_device"]

_WORKQUEUE = threading.Lock()
_FLAGS = threading.Lock()  # guards the two below
_ACTIVE: dict[object, int] = {}  # callers inside deterministic(), in entry order: their threads
_HOST: _HostSettings | None = None  # the host's settings, saved by the first caller to enter
_KNOBS = (
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("cuda", "matmul"),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
)


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


def _precision_knobs() -> list[Any]:
    """The per-backend float32 precision settings of this torch (``fp32_precision``, torch 2.9
    and later; none before, where the legacy settings are the only ones): oneDNN's products and
    convs on the CPU, cuBLAS and cuDNN on GPUs."""
    found = (getattr(getattr(torch.backends, module), op, None) for module, op in _KNOBS)
    return [k for k in found if hasattr(k, "fp32_precision")]


def _legacy(read: Callable[[], Any]) -> Any:
    """A legacy setting's value, or None where torch refuses to answer: a host that mixed the
    legacy and the new precision API has no legacy value to give back."""
    try:
        return read()
    except RuntimeError:
        return None


def _blas() -> list:
    """The BLAS libraries loaded now (threadpoolctl's controllers; found afresh, ~2 ms, since a
    host may load more, e.g. scipy's). Their thread pools are process-wide like torch's; two of
    the encoder's fitting threads, each on both of OpenBLAS's threads, ran 4x slower than on
    one each (measured, 2 cores)."""
    return ThreadpoolController().select(user_api="blas").lib_controllers


@dataclass(frozen=True)
class _HostSettings:
    """The process-wide torch and BLAS settings :func:`deterministic` changes."""

    threads: int
    blas: tuple[tuple[Any, int], ...]  # each BLAS library and its threads
    nnpack: bool
    matmul: str | None  # torch.get_float32_matmul_precision()
    cudnn_tf32: bool | None
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    precisions: tuple[str, ...]  # fp32_precision of each of _precision_knobs()

    @classmethod
    def read(cls) -> _HostSettings:
        """The settings as they are now (the host's, when no caller is inside)."""
        return cls(
            torch.get_num_threads(),
            tuple((lib, lib.num_threads) for lib in _blas()),
            torch._C._get_nnpack_enabled(),
            _legacy(torch.get_float32_matmul_precision),
            _legacy(lambda: torch.backends.cudnn.allow_tf32),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            tuple(k.fp32_precision for k in _precision_knobs()),
        )

    def restore(self) -> None:
        """Give these settings back: the legacy setters first (they also write the new
        per-backend settings), then the new ones, so that both read as they did and
        ``torch.get_float32_matmul_precision()`` keeps working for the host."""
        torch.set_num_threads(self.threads)
        for lib, threads in self.blas:
            lib.set_num_threads(threads)
        torch.backends.nnpack.set_flags(self.nnpack)
        if self.matmul is not None:
            torch.set_float32_matmul_precision(self.matmul)
        if self.cudnn_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = self.cudnn_tf32
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        for knob, value in zip(_precision_knobs(), self.precisions, strict=True):
            knob.fp32_precision = "none"  # inherit from the backend, as torch starts
            if knob.fp32_precision != value:  # the host had set it
                knob.fp32_precision = value


def _pin(host: _HostSettings) -> None:
    """Exactness-preserving settings: float32 products everywhere, no NNPACK, fixed cuDNN
    algorithms. The legacy TF32 flags are set too, consistent with the new per-backend ones, so
    that no torch getter sees a mix of the two APIs (it raises on one). Also the ``host``'s BLAS
    libraries on one thread (the module's docstring says why)."""
    torch.backends.nnpack.set_flags(False)
    for lib, _ in host.blas:
        lib.set_num_threads(1)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    for knob in _precision_knobs():
        knob.fp32_precision = "ieee"


def _enter(token: object, threads: int) -> None:
    """The first caller in saves the host's settings and pins; every caller sets its threads."""
    global _HOST
    with _FLAGS:
        if not _ACTIVE:
            _HOST = _HostSettings.read()
            _pin(_HOST)
        _ACTIVE[token] = threads
        torch.set_num_threads(threads)


def _exit(token: object) -> None:
    """The last caller out restores the host's settings; the others leave the pins in place
    for the callers still coding and hand torch's threads to the latest of them."""
    global _HOST
    with _FLAGS:
        del _ACTIVE[token]
        if _ACTIVE:
            torch.set_num_threads(next(reversed(_ACTIVE.values())))
        elif _HOST is not None:
            _HOST.restore()
            _HOST = None


@contextmanager
def deterministic(numthreads: int | None = None) -> Iterator[None]:
    """Run the block with exactness-preserving settings and ``numthreads`` CPU threads (default 1).

    torch's settings are process-wide, so concurrent callers (Python threads) share them: the
    first to enter pins them, the last to leave restores the host's (reference counted), and
    no caller codes under the host's settings while another leaves. numba's thread count and
    torch's gradient mode are per thread and set per caller.
    """
    # One thread unless asked: per-step tensors are small, and torch's spinning worker
    # threads slow coding by 10-80x when other processes share the cores (measured).
    # The compiled CPU kernel (model.cpu_kernel) runs patches on numba's threads.
    threads = int(numthreads or 1)
    token = object()
    numba_threads = numba.get_num_threads()
    _enter(token, threads)
    try:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        with torch.no_grad():
            yield
    finally:
        numba.set_num_threads(numba_threads)
        _exit(token)


def launch_guard() -> AbstractContextManager:
    """Hold around every call of a ``parallel=True`` numba function: numba's fallback thread
    pool ("workqueue", used where neither TBB nor OpenMP loads, e.g. some macOS installs) aborts
    the process on concurrent launches, so they are serialised there."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel launch yet in this process: do not guess
        layer = "workqueue"
    return _WORKQUEUE if layer == "workqueue" else nullcontext()
