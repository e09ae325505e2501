"""``llic-train``: --help, a 2-step run on a tiny config (real train split), resume, export."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_data import make_sampler
from click.testing import CliRunner

import llic_imaging
from llic_imaging import corpus
from llic_imaging.model import zoo
from llic_imaging.train import cli
from llic_imaging.train.data import CropSampler
from llic_imaging.train.loop import TrainConfig


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def _checkpoint_step(out: Path) -> int:
    return torch.load(out / "checkpoint.pt", weights_only=False)["step"]


@pytest.mark.skipif(shutil.which("llic-train") is None, reason="llic-train is not on PATH")
def test_help_of_the_installed_command() -> None:
    r = subprocess.run(["llic-train", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for option in ("--config", "--out", "--max-steps", "--fresh", "--export", "--weights-dir"):
        assert option in r.stdout


def test_run_resume_fresh_and_export_to_a_folder(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On synthetic planes (no corpus): --max-steps, resume, --fresh, --export --weights-dir."""
    cfg = TrainConfig.from_toml(tiny_config)
    monkeypatch.setattr(
        CropSampler, "from_corpus", classmethod(lambda cls, *a, **k: make_sampler(cfg))
    )
    out, weights = tmp_path / "run", tmp_path / "weights"
    base = ["--config", str(tiny_config), "--out", str(out), "--threads", "1"]
    runner = CliRunner()

    r = runner.invoke(cli.main, [*base, "--max-steps", "2"])
    assert r.exit_code == 0, r.output
    assert (_checkpoint_step(out), _steps(out)) == (2, [1, 2])

    r = runner.invoke(cli.main, [*base, "--max-steps", "3"])  # resumes at step 2
    assert r.exit_code == 0, r.output
    assert (_checkpoint_step(out), _steps(out)) == (5, [1, 2, 3, 4, 5])

    r = runner.invoke(cli.main, [*base, "--max-steps", "1", "--fresh"])
    assert r.exit_code == 0, r.output
    assert (_checkpoint_step(out), _steps(out)) == (1, [1])

    r = runner.invoke(
        cli.main, [*base, "--max-steps", "1", "--export", "--weights-dir", str(weights)]
    )
    assert r.exit_code == 0, r.output
    assert "exported" in r.output
    entry = json.loads((weights / "MODELS.json").read_text())[cfg.name]
    assert entry["training_config"] == str(tiny_config)  # not a shipped recipe: its own path
    assert entry["split"] == "splits/train.txt"
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(weights))
    img = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 3
    assert np.array_equal(llic_imaging.decode(llic_imaging.encode(img, model=cfg.name)), img)


def test_a_two_stage_recipe_trains_its_first_stage_first(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config whose init model is not installed but ships beside it trains that stage first,
    resumably, exports it to candidates/ beside --out and starts from it (as the default model's
    recipe does)."""
    stage1 = tmp_path / "tiny-stage1.toml"
    stage1.write_text(tiny_config.read_text().replace("tiny-test-v0", "tiny-stage1"))
    stage2 = tmp_path / "tiny-test-v1.toml"
    text = tiny_config.read_text().replace('name = "tiny-test-v0"', 'name = "tiny-test-v1"')
    stage2.write_text(text.replace("steps = 12", 'init = "tiny-stage1"\nsteps = 2'))
    cfg = TrainConfig.from_toml(stage1)
    monkeypatch.setattr(
        CropSampler, "from_corpus", classmethod(lambda cls, *a, **k: make_sampler(cfg))
    )
    monkeypatch.delenv(zoo.MODEL_PATH_ENV, raising=False)  # restored after the test
    runs, weights = tmp_path / "runs", tmp_path / "weights"
    base = ["--config", str(stage2), "--out", str(runs / "final"), "--threads", "1"]
    runner = CliRunner()

    r = runner.invoke(cli.main, [*base, "--max-steps", "5"])
    assert r.exit_code == 0, r.output
    assert "tiny-stage1 stopped at step 5 of 12" in r.output
    assert not (runs / "final").exists()

    r = runner.invoke(cli.main, [*base, "--export", "--weights-dir", str(weights)])
    assert r.exit_code == 0, r.output
    assert _steps(runs / "tiny-stage1") == list(range(1, 13))  # resumed at step 5
    assert _steps(runs / "final") == [1, 2]
    assert "tiny-stage1" in json.loads((runs / "candidates" / "MODELS.json").read_text())
    entry = json.loads((weights / "MODELS.json").read_text())["tiny-test-v1"]
    assert entry["training_config"] == str(stage2)
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(weights))
    img = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 3
    assert np.array_equal(llic_imaging.decode(llic_imaging.encode(img, model="tiny-test-v1")), img)


def test_the_default_config_is_the_default_models_recipe() -> None:
    registry = json.loads(
        (Path(llic_imaging.__file__).parent / "weights" / "MODELS.json").read_text()
    )
    assert cli.DEFAULT_CONFIG.exists()
    assert cli._config_record(cli.DEFAULT_CONFIG) == registry[zoo.DEFAULT_MODEL]["training_config"]


@pytest.mark.data
def test_two_steps_on_the_train_split(
    shared_data: Path, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real path: the train split of ../shared/data, 2 steps; no validation file is read."""
    monkeypatch.setenv("LLIC_DATA", str(shared_data))
    read: list[str] = []
    real = corpus.read_planes

    def recording(file: corpus.CorpusFile, **kwargs: object) -> list[corpus.Plane]:
        read.append(file.relpath)
        return real(file, **kwargs)

    monkeypatch.setattr(corpus, "read_planes", recording)
    out = tmp_path / "run"
    args = ["--config", str(tiny_config), "--out", str(out), "--max-steps", "2", "--threads", "1"]
    r = CliRunner().invoke(cli.main, args)
    assert r.exit_code == 0, r.output
    assert "trained tiny-test-v0" in r.output
    assert _checkpoint_step(out) == 2
    assert _steps(out) == [1, 2]
    assert all(
        np.isfinite(json.loads(x)["bps"]) for x in (out / "log.jsonl").read_text().splitlines()
    )
    assert read
    assert set(read) <= set(corpus.split_paths("train"))
    assert not set(read) & set(corpus.split_paths("validation"))
