"""``model.runtime.deterministic``: the settings it pins, and what concurrent and nested callers
see (the host's float32 precision setting and its getter: tests/test_determinism.py)."""

from __future__ import annotations

import threading

import numba
import torch
from threadpoolctl import threadpool_info

from llic_imaging.model.runtime import deterministic


def _settings() -> tuple:
    """The process-wide settings an exact decode needs pinned, as this thread sees them."""
    return (
        torch._C._get_nnpack_enabled(),
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        _mkldnn_precision(),
    )


def _mkldnn_precision() -> str | None:
    """oneDNN's float32 product precision (None before torch 2.9, which has no such setting)."""
    return getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", None)


PINNED = (False, False, False, None if _mkldnn_precision() is None else "ieee")


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_settings_are_pinned_inside_and_restored_after() -> None:
    host, threads, blas = _settings(), torch.get_num_threads(), _blas_threads()
    with deterministic(2):
        assert _settings() == PINNED
        assert torch.get_num_threads() == 2
        assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
        assert _blas_threads() == [1] * len(blas)  # the encoder's fitting threads share the cores
        assert not torch.is_grad_enabled()
    assert _settings() == host
    assert _blas_threads() == blas
    assert torch.get_num_threads() == threads
    assert torch.is_grad_enabled()


def test_nested_callers_get_their_thread_counts_back() -> None:
    threads = torch.get_num_threads()
    with deterministic(2):
        with deterministic(1):
            assert torch.get_num_threads() == 1
            assert numba.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
        assert _settings() == PINNED
    assert torch.get_num_threads() == threads


def test_concurrent_callers_keep_the_pins_until_the_last_leaves() -> None:
    """torch's settings are process-wide: when the first of two overlapping callers (Python
    threads) leaves, the second still codes under the pins, with its own thread count; the
    host's settings come back when both are out."""
    host, threads = _settings(), torch.get_num_threads()
    first_in, first_out, second_in = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def first() -> None:
        with deterministic(1):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with deterministic(2):
            second_in.set()
            first_out.wait(10)
            seen["settings"] = _settings()
            seen["threads"] = torch.get_num_threads(), numba.get_num_threads()
            seen["grad"] = torch.is_grad_enabled()

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert first_out.is_set()
    assert seen["settings"] == PINNED
    assert seen["threads"] == (2, min(2, numba.config.NUMBA_NUM_THREADS))
    assert seen["grad"] is False
    assert _settings() == host
    assert torch.get_num_threads() == threads
