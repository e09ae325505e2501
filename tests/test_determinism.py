"""Bit-exact decoding across processes and runtime settings (threads, oneDNN, batch grouping).

The encoder runs in one process and each decoder in another with different torch settings; the
decoded array must equal the original and the stream must not depend on the encoder's settings.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _adapt_data import period_three
from _streams import chunk_headers

WORKER = textwrap.dedent(
    """
    import sys, numpy as np, torch
    mode, threads, mkldnn, batch, src, dst = sys.argv[1:7]
    context, adapt = (sys.argv[7:] + ["1", "0"][len(sys.argv[7:]) :])[:2]
    torch.backends.mkldnn.enabled = mkldnn == "1"
    import llic_imaging
    from llic_imaging.codec import engine
    engine._BATCH_PIXELS = int(batch)
    engine._DENSE_PIXELS = min(engine._DENSE_PIXELS, int(batch))
    if mode == "encode":
        a = np.load(src)
        s = llic_imaging.encode(
            a, tile=64, numthreads=int(threads), context=int(context), adapt=int(adapt)
        )
        open(dst, "wb").write(s)
    else:
        a = llic_imaging.decode(open(src, "rb").read(), numthreads=int(threads))
        np.save(dst, a)
    """
)


def _run(tmp: Path, *args: str) -> None:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    subprocess.run([sys.executable, str(script), *args], check=True, timeout=600)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    a = np.cumsum(rng.normal(0, 15, (2, 100, 150)), axis=2).astype(np.int64)
    a = (a - a.min() + 100).clip(0, 4095).astype(np.uint16)
    a[0, :20, :30] = 0  # padding-like block
    path = tmp_path_factory.mktemp("det") / "img.npy"
    np.save(path, a)
    return path, a


def test_stream_independent_of_encoder_settings(
    tmp_path: Path, image: tuple[Path, np.ndarray]
) -> None:
    src, _ = image
    _run(tmp_path, "encode", "2", "1", str(1 << 20), str(src), str(tmp_path / "a.llic"))
    _run(tmp_path, "encode", "1", "0", str(4096), str(src), str(tmp_path / "b.llic"))
    assert (tmp_path / "a.llic").read_bytes() == (tmp_path / "b.llic").read_bytes()


@pytest.mark.parametrize(
    ("threads", "mkldnn", "batch"),
    [("1", "0", "4096"), ("2", "1", str(1 << 20)), ("1", "1", "9000")],
    ids=["1thread-nomkldnn-smallbatch", "2threads-mkldnn-bigbatch", "1thread-mkldnn-oddbatch"],
)
def test_cross_process_decode(
    tmp_path: Path, image: tuple[Path, np.ndarray], threads: str, mkldnn: str, batch: str
) -> None:
    src, original = image
    stream = tmp_path / "s.llic"
    _run(tmp_path, "encode", "2", "1", str(1 << 20), str(src), str(stream))
    out = tmp_path / "out.npy"
    _run(tmp_path, "decode", threads, mkldnn, batch, str(stream), str(out))
    decoded = np.load(out)
    assert decoded.dtype == original.dtype
    np.testing.assert_array_equal(decoded, original)


def test_cross_process_decode_with_plane_context(tmp_path: Path) -> None:
    """Delta chunks decode in generations; other threads and batch sizes give the same planes."""
    rng = np.random.default_rng(8)
    base = np.cumsum(rng.normal(0, 15, (100, 150)), axis=1)
    a = np.stack([base * (1 + 0.05 * k) + rng.normal(0, 1, base.shape) for k in range(3)])
    a = (a - a.min() + 100).clip(0, 4095).astype(np.uint16)
    src, stream, out = tmp_path / "img.npy", tmp_path / "s.llic", tmp_path / "out.npy"
    np.save(src, a)
    _run(tmp_path, "encode", "2", "1", str(1 << 20), str(src), str(stream), "3")
    kinds = [p.delta for p in chunk_headers(stream.read_bytes())]
    assert any(kinds), "no tile was coded against the previous plane"
    _run(tmp_path, "decode", "1", "0", "4096", str(stream), str(out))
    np.testing.assert_array_equal(np.load(out), a)


def _one_stream_decoded_elsewhere(tmp_path: Path, a: np.ndarray, kind: str, *context: str) -> None:
    """Two encoder settings give one stream holding a chunk of ``kind`` (a ``ChunkParams``
    flag), and a process with other threads, oneDNN and batch sizes decodes it to ``a``."""
    src, out = tmp_path / "img.npy", tmp_path / "out.npy"
    np.save(src, a)
    _run(tmp_path, "encode", "2", "1", str(1 << 20), str(src), str(tmp_path / "a.llic"), *context)
    _run(tmp_path, "encode", "1", "0", "4096", str(src), str(tmp_path / "b.llic"), *context)
    stream = (tmp_path / "a.llic").read_bytes()
    assert (tmp_path / "b.llic").read_bytes() == stream
    assert any(getattr(p, kind) for p in chunk_headers(stream))
    _run(tmp_path, "decode", "1", "0", "4096", str(tmp_path / "a.llic"), str(out))
    np.testing.assert_array_equal(np.load(out), a)


def test_cross_process_resid_chunks(tmp_path: Path) -> None:
    """Resid chunks read the prediction errors of their reference (from its decoding, or a
    teacher-forced pass over it): the same integers in every process and setting."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:64, :96]
    texture = rng.normal(0, 5, x.shape)
    a = np.stack(
        [1000 + 400 * ((x + 4 * k) // 8 % 2) + 150 * np.sin(y / 5 + k) + texture for k in range(3)]
    )
    _one_stream_decoded_elsewhere(
        tmp_path, (a + rng.normal(0, 1, a.shape)).astype(np.uint16), "resid", "3"
    )


def test_cross_process_feedback_chunks(tmp_path: Path) -> None:
    """Feedback chunks refine each step from the errors of earlier steps."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 40, (96, 134))
    noise = sum(noise[:, k : k + 128] for k in range(7)) / 7
    a = (2000 + 300 * np.sin(np.arange(128)[None, :] / 15) + noise).astype(np.uint16)
    _one_stream_decoded_elsewhere(tmp_path, a, "feedback")


def test_cross_process_linear_chunks(tmp_path: Path) -> None:
    """Linear feedback chunks: weights fitted in float, sent as integers; every process
    refines each step from the same decoded values and errors."""
    rng = np.random.default_rng(3)
    n = rng.normal(0, 30, (102, 152))
    smooth = sum(n[i : i + 100, j : j + 150] for i in range(3) for j in range(3)) / 9
    a = (1500 + smooth + rng.normal(0, 1, smooth.shape)).astype(np.uint16)
    _one_stream_decoded_elsewhere(tmp_path, a, "linear")


def test_cross_process_flat_flags(tmp_path: Path) -> None:
    """Flat flags: their probabilities count the flags of earlier steps, and the pixels they
    give join the decoded values every later step reads."""
    rng = np.random.default_rng(5)
    a = rng.normal(14000, 1500, (120, 130)).astype(np.uint16)
    y, x = np.mgrid[:120, :130]
    a[x + 0.6 * y < 60] = 0
    _one_stream_decoded_elsewhere(tmp_path, a, "flat")


def test_cross_process_adapted_streams(tmp_path: Path) -> None:
    """An adapter is fitted in float, once per machine, with one thread whatever the coding
    threads: two encoder processes write one stream, and the adapted integer network decodes
    it exactly in a process with other settings."""
    import llic_imaging

    a = period_three()
    src, out = tmp_path / "img.npy", tmp_path / "out.npy"
    np.save(src, a)
    _run(tmp_path, "encode", "2", "1", str(1 << 20), str(src), str(tmp_path / "a.llic"), "1", "30")
    _run(tmp_path, "encode", "1", "0", "4096", str(src), str(tmp_path / "b.llic"), "1", "30")
    stream = (tmp_path / "a.llic").read_bytes()
    assert (tmp_path / "b.llic").read_bytes() == stream
    assert llic_imaging.info(stream).adapted
    _run(tmp_path, "decode", "1", "0", "4096", str(tmp_path / "a.llic"), str(out))
    np.testing.assert_array_equal(np.load(out), a)


PRECISION_WORKER = textwrap.dedent(
    """
    import sys, numpy as np, torch
    import llic_imaging
    from llic_imaging.model import cpu_kernel
    from llic_imaging.model.runtime import deterministic

    exact = cpu_kernel._mm

    def products(x, wb, out):
        # what oneDNN computes on a CPU with AVX512-BF16/AMX when torch asks for bf16 products
        # (emulated: this one may have no bf16 unit)
        if torch.backends.mkldnn.matmul.fp32_precision != "bf16":
            return exact(x, wb, out)
        bf16 = lambda t: t.to(torch.bfloat16).float()
        torch.addmm(wb[1], bf16(torch.from_numpy(x)), bf16(wb[0]), out=torch.from_numpy(out))

    cpu_kernel._mm = products
    a = np.load(sys.argv[1])
    plain = llic_imaging.encode(a, tile=64)
    torch.set_float32_matmul_precision(sys.argv[2])  # the host application's choice
    host = torch.backends.mkldnn.matmul.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    with deterministic():
        inside = torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision
    assert inside == ("ieee", "ieee"), inside
    assert llic_imaging.encode(a, tile=64) == plain
    assert np.array_equal(llic_imaging.decode(plain), a)
    assert torch.get_float32_matmul_precision() == sys.argv[2]
    assert (torch.backends.mkldnn.matmul.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == host
    """
)


@pytest.mark.parametrize("precision", ["medium", "high"])
def test_host_float32_precision_does_not_reach_the_codec(
    tmp_path: Path, image: tuple[Path, np.ndarray], precision: str
) -> None:
    """``torch.set_float32_matmul_precision("medium")`` makes oneDNN compute float32 products in
    bf16 on CPUs that have it, which cannot hold the 11-bit activations: coding pins float32
    products, streams do not change, and the host gets its setting back (its getter still
    answers). A process of its own: the setting is global."""
    import torch

    if not hasattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision"):
        pytest.skip("torch before 2.9 has no per-backend fp32_precision")
    script = tmp_path / "precision.py"
    script.write_text(PRECISION_WORKER)
    subprocess.run([sys.executable, str(script), str(image[0]), precision], check=True, timeout=600)
