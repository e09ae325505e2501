"""Fixtures of the training tests: the tiny config written into ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _train_data import TINY_TOML

from llic_imaging.train.loop import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: the steps are tiny and the CI machine's 2 cores are shared."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture
def tiny_cfg(tiny_config: Path) -> TrainConfig:
    return TrainConfig.from_toml(tiny_config)
