"""Installed models: names, weight files and their SHA-256.

``weights/MODELS.json`` (read via importlib.resources) maps a model name to its safetensors file,
hash, architecture config and training record. A stream stores the name and the full hash;
:func:`load` refuses a mismatch.

Models exported elsewhere (``llic-train --export --weights-dir DIR``, ``train.export.export``)
are found through ``$LLIC_MODEL_PATH``: folders separated by ``os.pathsep``, each holding a
``MODELS.json`` and the files it names. The shipped registry is searched first and a name it
holds is never shadowed; among the folders, the first that names a model wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from llic_imaging.errors import ModelError

__all__ = [
    "AUTO",
    "DEFAULT_MODEL",
    "MODEL_PATH_ENV",
    "ModelInfo",
    "auto_candidates",
    "available",
    "load",
    "model_info",
]

# The model encode uses unless told otherwise; docs/MODEL_CARD.md says why this one.
DEFAULT_MODEL = "hpac-small-v5"
AUTO = "auto"  # the automatic choice (also what model=None means): see auto_candidates
MODEL_PATH_ENV = "LLIC_MODEL_PATH"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    file: str
    sha256: str
    config: dict[str, Any]
    folder: str | None = None  # None: shipped in the package; else a $LLIC_MODEL_PATH folder


def _weights_dir() -> resources.abc.Traversable:
    return resources.files("llic_imaging.weights")


@cache
def _shipped() -> dict[str, dict[str, Any]]:
    ref = _weights_dir().joinpath("MODELS.json")
    if not ref.is_file():
        return {}
    return json.loads(ref.read_text(encoding="utf-8"))


def _registry() -> dict[str, tuple[dict[str, Any], str | None]]:
    """``{name: (entry, folder)}``: shipped models, then those of ``$LLIC_MODEL_PATH``.

    The folders are read on every call (not cached): an export may add to them at any time.
    """
    reg: dict[str, tuple[dict[str, Any], str | None]] = {
        name: (entry, None) for name, entry in _shipped().items()
    }
    for folder in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep):
        path = Path(folder).expanduser() / "MODELS.json" if folder else None
        if path is None or not path.is_file():
            continue
        for name, entry in json.loads(path.read_text(encoding="utf-8")).items():
            reg.setdefault(name, (entry, str(path.parent)))
    return reg


def available() -> list[str]:
    """Names of the installed models (shipped and on ``$LLIC_MODEL_PATH``)."""
    return sorted(_registry())


def auto_candidates(bits: int) -> list[str]:
    """Models the automatic choice weighs for data stored with ``bits`` bits per sample: the
    default model, then installed fine-tunes whose registry entry names that domain
    (``"domain": "8-bit"`` or ``"16-bit"``). With one candidate nothing is probed."""
    domain = "8-bit" if bits <= 8 else "16-bit"
    reg = _registry()
    return [DEFAULT_MODEL] + sorted(
        n for n, (entry, _) in reg.items() if entry.get("domain") == domain and n != DEFAULT_MODEL
    )


def model_info(name: str | None = None) -> ModelInfo:
    """Registry entry of ``name`` (default model if None). Raises ModelError if unknown."""
    name = name or DEFAULT_MODEL
    reg = _registry()
    if name not in reg:
        msg = f"model {name!r} is not installed (installed: {', '.join(sorted(reg)) or 'none'})"
        raise ModelError(msg)
    entry, folder = reg[name]
    return ModelInfo(name, entry["file"], entry["sha256"], entry["config"], folder)


def load(name: str | None = None, device: str = "cpu") -> tuple[Any, ModelInfo]:
    """Load an installed model (cached per process) after checking its weights hash and that
    its integer sums are exact in float32 (``hpac.require_exact``; ModelError otherwise)."""
    info = model_info(name)
    net = _load(info.folder, info.file, info.sha256, json.dumps(info.config), device)
    return net, info


@cache
def _load(folder: str | None, file: str, sha256: str, config: str, device: str) -> Any:
    from safetensors.torch import load as load_tensors

    from llic_imaging.model.hpac import HpacConfig, HpacNet, require_exact

    ref = _weights_dir().joinpath(file) if folder is None else Path(folder) / file
    try:
        data = ref.read_bytes()
    except OSError as exc:
        msg = f"weights file {file} of the model registry cannot be read: {exc}"
        raise ModelError(msg) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        where = "reinstall llic-imaging" if folder is None else f"re-export it into {folder}"
        msg = f"weights file {file} has sha256 {digest[:16]}..., registry says {sha256[:16]}...; {where}"
        raise ModelError(msg)
    net = HpacNet(HpacConfig.from_dict(json.loads(config)))
    net.load_state_dict(load_tensors(data))
    require_exact(net, ModelError, f"weights file {file}")
    net.eval().requires_grad_(False)
    return net.to(device)
