"""The pinned float path of training: set before torch loads, overridable, and a tiny training
run under it gives the weights recorded here on whatever CPU runs the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llic_imaging.train import floatpath

HERE = Path(__file__).resolve().parent

# SHA-256 (first 16 hex digits) of the tiny config's weights after 12 steps on the synthetic
# planes, pinned path, one thread: recorded on a 2-core AMD EPYC (session 9). A CPU kind that
# trains other weights under the pins fails here: the pins no longer make training reproducible.
# (The run tells oneMKL's paths apart: with MKL_CBWR=AUTO the same machine gives 81ba940f52408bad.)
TINY_RUN_SHA = "628f4c9f8a6fb6e8"
TINY_RUN_TORCH = "2.13.0+cpu"  # the build that recorded it (oneMKL's kernels come with it)

_TINY_RUN = """
import hashlib, sys, tempfile
from pathlib import Path
from llic_imaging.train import floatpath
print(floatpath.pin())
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from _train_data import TINY_TOML, make_sampler
from llic_imaging.train.loop import TrainConfig, train
with tempfile.TemporaryDirectory() as d:
    (Path(d) / "tiny.toml").write_text(TINY_TOML)
    cfg = TrainConfig.from_toml(Path(d) / "tiny.toml")
    net = train(cfg, Path(d) / "run", sampler=make_sampler(cfg))
state = b"".join(v.detach().numpy().tobytes() for v in net.state_dict().values())
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(state).hexdigest()[:16])
"""


def _python(code: str, *args: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in floatpath.PINS}
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return r.stdout.split()


def test_pin_sets_both_paths_before_torch_loads() -> None:
    code = (
        "from llic_imaging.train import floatpath; print(floatpath.pin());"
        "import os, torch; print(os.environ['MKL_CBWR'], torch.backends.cpu.get_cpu_capability())"
    )
    out = _python(code)
    assert out == ["MKL_CBWR=COMPATIBLE", "ATEN_CPU_CAPABILITY=avx2", "COMPATIBLE", "AVX2"]


def test_an_override_in_the_environment_wins_and_is_reported() -> None:
    code = "from llic_imaging.train import floatpath; import os; print(floatpath.pin(), os.environ['MKL_CBWR'])"
    assert _python(code, MKL_CBWR="AUTO") == ["native", "AUTO"]


def test_pin_after_torch_loaded_reports_native_and_leaves_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch  # noqa: F401  (loaded, as in any in-process caller)

    for key in floatpath.PINS:
        monkeypatch.delenv(key, raising=False)
    assert floatpath.pin() == "native"
    assert not any(key in os.environ for key in floatpath.PINS)


def test_a_tiny_run_on_the_pinned_path_gives_the_recorded_weights() -> None:
    import torch

    if torch.__version__ != TINY_RUN_TORCH:
        pytest.skip(f"hash recorded with torch {TINY_RUN_TORCH}, this is {torch.__version__}")
    pinned, capability, sha = (_python(_TINY_RUN, str(HERE))[i] for i in (0, -2, -1))
    assert pinned.startswith("MKL_CBWR=COMPATIBLE")
    assert capability == "AVX2"
    assert sha == TINY_RUN_SHA
