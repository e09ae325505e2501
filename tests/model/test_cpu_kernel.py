"""The compiled CPU path gives the torch paths' integers for every shipped model, step by step
and for any thread count (other architectures: tests/model/test_hpac.py)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from llic_imaging.codec.schedule import Geometry
from llic_imaging.model import zoo
from llic_imaging.model.cpu_kernel import CpuSteps
from llic_imaging.model.hpac import HpacNet, TileParams, TorchSteps
from llic_imaging.model.runtime import deterministic

PATCH = 32


def _setup(img: np.ndarray, shift: int) -> tuple[Geometry, np.ndarray, np.ndarray, TileParams]:
    geo = Geometry(*img.shape, PATCH)
    u = geo.to_patches(img).astype(np.float32)
    n = geo.n_patches
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    p = TileParams(full(shift), full(int(np.median(img))), full(int(img.max())))
    return geo, u, geo.inside.astype(np.float32), p


def _cpu(net: HpacNet, inside: np.ndarray, p: TileParams) -> CpuSteps:
    return CpuSteps(net, inside, p.shift.numpy(), p.mid.numpy(), p.vmax.numpy())


def _check_dense(net: HpacNet, img: np.ndarray, shift: int) -> None:
    geo, u, inside, p = _setup(img, shift)
    with deterministic():
        ref = net.dense(torch.from_numpy(u), torch.from_numpy(inside), p)
    k = _cpu(net, inside, p)
    k.pixels[:] = u
    mu, sc = k.dense()
    m = geo.inside
    np.testing.assert_array_equal(mu[m], ref.mu16.numpy()[m])
    np.testing.assert_array_equal(sc[m], ref.scale.numpy()[m])


@pytest.fixture(scope="module")
def shipped() -> list[HpacNet]:
    return [zoo.load(name)[0] for name in zoo.available()]


@pytest.mark.parametrize(("h", "w"), [(128, 128), (70, 45), (33, 97), (1, 5)])
def test_dense_equals_torch_dense_for_every_shipped_model(
    shipped: list[HpacNet], ct_slice: np.ndarray, h: int, w: int
) -> None:
    for net in shipped:
        _check_dense(net, ct_slice[:h, :w], shift=2)


def test_step_by_step_equals_torch_steps(shipped: list[HpacNet], ct_slice: np.ndarray) -> None:
    """The decoder interface: predict a step, write its pixels, go on (edge patches included)."""
    net = shipped[0]
    geo, u, inside, p = _setup(ct_slice[:70, :45], shift=1)
    with deterministic():
        ref = TorchSteps(net, torch.from_numpy(geo.inside), p)
        k = _cpu(net, inside, p)
        for s, mask in enumerate(geo.step_inside):
            got, want = k.predict(s), ref.predict(s)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a[mask], b[mask])
            values = u[:, *geo.step_cells(s)]
            k.write(s, values)
            ref.write(s, values * mask)  # the torch caches hold zero outside the tile


def test_thread_count_does_not_change_results(shipped: list[HpacNet], ct_slice: np.ndarray) -> None:
    geo, u, inside, p = _setup(ct_slice[:96, :128], shift=2)
    out = []
    for threads in (1, 2):
        with deterministic(threads):
            assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
            k = _cpu(shipped[0], inside, p)
            k.pixels[:] = u
            out.append(tuple(a.copy() for a in k.dense()))
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)


def test_concurrent_decodes_from_python_threads(ct_slice: np.ndarray) -> None:
    """Threaded callers (dask's threaded scheduler, napari workers) share numba's thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    import llic_imaging

    img = ct_slice.astype(np.uint16)
    data = llic_imaging.encode(img, tile=64)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: llic_imaging.decode(data, numthreads=2), range(6)))
    for r in results:
        np.testing.assert_array_equal(r, img)


def test_concurrent_decodes_under_numba_s_fallback_thread_pool(tmp_path) -> None:
    """Where only numba's "workqueue" layer loads, concurrent launches would abort the process;
    the kernel serialises them there (a real subprocess forced onto that layer)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import numba, numpy as np, llic_imaging\n"
        "img = (np.arange(160 * 150) % 997).reshape(160, 150).astype(np.uint16)\n"
        "data = llic_imaging.encode(img, tile=64, numthreads=2)\n"
        "with ThreadPoolExecutor(3) as pool:\n"
        "    out = list(pool.map(lambda _: llic_imaging.decode(data, numthreads=2), range(6)))\n"
        "assert all(np.array_equal(o, img) for o in out)\n"
        "print(numba.threading_layer())\n"
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "workqueue"
