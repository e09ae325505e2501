"""Shipped models: names, weight files and their SHA-256 (read via importlib.resources).

``weights/MODELS.json`` maps a model name to its safetensors file, hash, architecture config and
training record. A stream stores the name and the full hash; :func:`load` refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from llic_imaging.errors import ModelError

__all__ = ["DEFAULT_MODEL", "ModelInfo", "available", "load", "model_info"]

DEFAULT_MODEL = "hpac-small-v1"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    file: str
    sha256: str
    config: dict[str, Any]


def _weights_dir() -> resources.abc.Traversable:
    return resources.files("llic_imaging.weights")


@cache
def _registry() -> dict[str, dict[str, Any]]:
    ref = _weights_dir().joinpath("MODELS.json")
    if not ref.is_file():
        return {}
    return json.loads(ref.read_text(encoding="utf-8"))


def available() -> list[str]:
    """Names of the installed models."""
    return sorted(_registry())


def model_info(name: str | None = None) -> ModelInfo:
    """Registry entry of ``name`` (default model if None). Raises ModelError if unknown."""
    name = name or DEFAULT_MODEL
    entry = _registry().get(name)
    if entry is None:
        msg = f"model {name!r} is not installed (installed: {', '.join(available()) or 'none'})"
        raise ModelError(msg)
    return ModelInfo(name, entry["file"], entry["sha256"], entry["config"])


@cache
def load(name: str | None = None, device: str = "cpu") -> tuple[Any, ModelInfo]:
    """Load a shipped model (cached per process) after checking its weights hash."""
    from safetensors.torch import load as load_tensors

    from llic_imaging.model.hpac import HpacConfig, HpacNet

    info = model_info(name)
    data = _weights_dir().joinpath(info.file).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256:
        msg = f"weights file {info.file} has sha256 {digest[:16]}..., registry says {info.sha256[:16]}...; reinstall llic-imaging"
        raise ModelError(msg)
    net = HpacNet(HpacConfig.from_dict(info.config))
    net.load_state_dict(load_tensors(data))
    net.eval().requires_grad_(False)
    return net.to(device), info
