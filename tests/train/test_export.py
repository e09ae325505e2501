"""Export a tiny trained model to a folder, then encode/decode with it through the public API.

The folder is made visible with ``$LLIC_MODEL_PATH`` (``model.zoo``); the shipped weights and
MODELS.json are never written (checked byte for byte).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_data import TINY_TOML, make_sampler

import llic_imaging
from llic_imaging.model import zoo
from llic_imaging.model.hpac import HpacNet, TileParams
from llic_imaging.model.runtime import deterministic
from llic_imaging.train.export import WEIGHTS_DIR, export
from llic_imaging.train.loop import TrainConfig, train

RECORD = {"training_config": "tests/train (tiny)", "steps": 6, "split": "synthetic"}


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture(scope="module", autouse=True)
def _shipped_weights_untouched() -> Iterator[None]:
    before = _tree_hashes(WEIGHTS_DIR)
    yield
    assert _tree_hashes(WEIGHTS_DIR) == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[HpacNet, TrainConfig]:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY_TOML)
    cfg = replace(TrainConfig.from_toml(path), steps=6)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train(cfg, tmp_path_factory.mktemp("run"), sampler=make_sampler(cfg))
    finally:
        torch.set_num_threads(saved)
    return net, cfg


def _image() -> np.ndarray:
    """Two 12-bit planes, 70 x 45: several tiles with tile=32, partial patches at the edges."""
    rng = np.random.default_rng(9)
    y, x = np.mgrid[0:70, 0:45]
    base = 2000 + 700 * np.sin(x / 7) * np.cos(y / 11)
    return np.clip(base + rng.normal(0, 30, (2, 70, 45)), 0, 4095).astype(np.uint16)


def test_export_then_encode_decode_is_bit_exact(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, cfg = trained
    folder = tmp_path / "weights"
    path = export(net, cfg.name, RECORD, weights_dir=folder)
    assert path.parent == folder
    assert path.name.startswith(f"{cfg.name}-")
    entry = json.loads((folder / "MODELS.json").read_text())[cfg.name]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["file"] == path.name
    assert entry["steps"] == 6

    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(folder))
    assert cfg.name in zoo.available()
    img = _image()
    stream = llic_imaging.encode(img, model=cfg.name, tile=32)
    info = llic_imaging.info(stream)
    assert info.model == cfg.name
    assert entry["sha256"].startswith(info.model_sha256)
    assert np.array_equal(llic_imaging.decode(stream), img)
    assert np.array_equal(llic_imaging.decode(stream, 1), img[1])
    # the model really is the exported one: the shipped model writes another stream
    assert llic_imaging.encode(img, tile=32) != stream

    monkeypatch.delenv(zoo.MODEL_PATH_ENV)
    with pytest.raises(llic_imaging.ModelError, match="not installed"):
        llic_imaging.decode(stream)


def test_loaded_model_predicts_exactly_what_was_trained(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export + load is the identity on the integer network the loop trained."""
    net, cfg = trained
    export(net, cfg.name, RECORD, weights_dir=tmp_path)
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(tmp_path))
    loaded, info = zoo.load(cfg.name)
    assert info.folder == str(tmp_path)
    batch = make_sampler(cfg, seed=99).batch(2)
    u = torch.from_numpy(batch.u.astype(np.float32))
    inside = torch.ones_like(u)
    tp = TileParams(
        *(torch.from_numpy(c.astype(np.float32)) for c in (batch.shift, batch.mid, batch.vmax))
    )
    with deterministic():
        a, b = net.dense(u, inside, tp), loaded.dense(u, inside, tp)
    assert torch.equal(a.mu16, b.mu16)
    assert torch.equal(a.scale, b.scale)


def test_shipped_names_are_never_shadowed(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, _ = trained
    # the shipped name, exported into a folder of ours (never into the package)
    export(net, zoo.DEFAULT_MODEL, RECORD, weights_dir=tmp_path)
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(tmp_path))
    info = zoo.model_info(zoo.DEFAULT_MODEL)
    assert info.folder is None
    assert (
        info.sha256
        == json.loads((WEIGHTS_DIR / "MODELS.json").read_text())[zoo.DEFAULT_MODEL]["sha256"]
    )


def test_damaged_exported_weights_are_refused(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, _ = trained
    path = export(net, "tiny-damaged-v0", RECORD, weights_dir=tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    monkeypatch.setenv(zoo.MODEL_PATH_ENV, str(tmp_path))
    with pytest.raises(llic_imaging.ModelError, match="sha256"):
        zoo.load("tiny-damaged-v0")
    path.unlink()
    with pytest.raises(llic_imaging.ModelError, match="cannot be read"):
        zoo.load("tiny-damaged-v0")


def _perturbed(net: HpacNet) -> HpacNet:
    other = HpacNet(net.config)
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        other.head.bias.add_(0.25)
    return other


def test_export_is_a_function_of_the_weights(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path
) -> None:
    """Same weights, same file, same SHA-256 (safetensors metadata order used to vary)."""
    net, cfg = trained
    digests = {
        hashlib.sha256(
            export(net, cfg.name, RECORD, weights_dir=tmp_path / str(i)).read_bytes()
        ).hexdigest()
        for i in range(6)
    }
    assert len(digests) == 1


def test_reexport_replaces_an_unreleased_file(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path
) -> None:
    net, cfg = trained
    first = export(net, cfg.name, RECORD, weights_dir=tmp_path)
    second = export(_perturbed(net), cfg.name, RECORD, weights_dir=tmp_path)
    assert first != second
    assert not first.exists()
    assert second.exists()
    assert json.loads((tmp_path / "MODELS.json").read_text())[cfg.name]["file"] == second.name


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_reexport_refuses_a_released_model(
    trained: tuple[HpacNet, TrainConfig], tmp_path: Path
) -> None:
    """A model whose file git tracks is released: exporting under its name again is refused."""
    net, cfg = trained
    first = export(net, cfg.name, RECORD, weights_dir=tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "release"], check=True)
    before = _tree_hashes(tmp_path)
    with pytest.raises(ValueError, match="released model"):
        export(_perturbed(net), cfg.name, RECORD, weights_dir=tmp_path)
    assert _tree_hashes(tmp_path) == before
    assert first.exists()
    export(net, cfg.name, RECORD, weights_dir=tmp_path)  # the same weights again: a no-op
    assert _tree_hashes(tmp_path) == before
