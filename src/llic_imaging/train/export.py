"""Export trained master weights as the shipped integer-ready safetensors file + registry entry.

The file stores the float master weights; quantisation (``model.quant``) is deterministic, so
the integer network is a pure function of this file, whose SHA-256 every stream records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import save

from llic_imaging.model.hpac import HpacNet

__all__ = ["export"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def export(
    net: HpacNet, name: str, record: dict[str, Any], *, weights_dir: Path = WEIGHTS_DIR
) -> Path:
    """Write ``<name>-<sha8>.safetensors`` and (re)write ``name``'s entry in MODELS.json.

    A released file is never modified: exporting again under the same name replaces the
    registry entry and removes the previous file only if it was never committed (callers
    bump the version suffix for released models).
    """
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    data = save(state, metadata={"name": name, "config": json.dumps(net.config.to_dict())})
    digest = hashlib.sha256(data).hexdigest()
    path = weights_dir / f"{name}-{digest[:8]}.safetensors"
    path.write_bytes(data)
    reg_path = weights_dir / "MODELS.json"
    registry = json.loads(reg_path.read_text()) if reg_path.exists() else {}
    old = registry.get(name, {}).get("file")
    registry[name] = {"file": path.name, "sha256": digest, "config": net.config.to_dict(), **record}
    reg_path.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    if old and old != path.name and (weights_dir / old).exists():
        (weights_dir / old).unlink()
    return path
