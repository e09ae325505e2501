"""Export trained master weights as an integer-ready safetensors file + registry entry.

The file stores the float master weights; quantisation (``model.quant``) is deterministic, so
the integer network is a pure function of this file, whose SHA-256 every stream records.
The default folder is the package's ``weights/`` (what ships); any other folder is a registry
of its own that ``$LLIC_MODEL_PATH`` makes visible to ``encode``/``decode`` (``model.zoo``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from safetensors.torch import save

from llic_imaging.errors import ModelError
from llic_imaging.model.hpac import HpacNet, require_exact

__all__ = ["export"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def export(
    net: HpacNet, name: str, record: dict[str, Any], *, weights_dir: Path = WEIGHTS_DIR
) -> Path:
    """Write ``<name>-<sha8>.safetensors`` into ``weights_dir`` and (re)write ``name``'s entry
    in its MODELS.json (both created if missing).

    A released file is never modified: exporting again under the same name replaces the
    registry entry and removes the previous file only if git does not track it; a name whose
    file is tracked (a released model) is refused with ``ValueError`` before anything is
    written (callers bump the version suffix for released models). A network whose integer sums
    can pass 2**24 (``hpac.require_exact``) is refused with ``ModelError``: no reader would
    load it.
    """
    require_exact(net, ModelError, f"model {name}")
    weights_dir = Path(weights_dir)
    reg_path = weights_dir / "MODELS.json"
    registry = json.loads(reg_path.read_text()) if reg_path.exists() else {}
    old = registry.get(name, {}).get("file")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    # one metadata key: safetensors keeps metadata in a hash map whose order changes from call
    # to call, so two keys made the file (and its SHA-256) differ for the same weights
    meta = json.dumps({"name": name, "config": net.config.to_dict()}, sort_keys=True)
    data = save(state, metadata={"llic": meta})
    digest = hashlib.sha256(data).hexdigest()
    path = weights_dir / f"{name}-{digest[:8]}.safetensors"
    replaces = old is not None and old != path.name and (weights_dir / old).exists()
    if replaces and _tracked(weights_dir / old):
        msg = f"{name} is a released model ({old} is tracked by git); export under a new name"
        raise ValueError(msg)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    registry[name] = {"file": path.name, "sha256": digest, "config": net.config.to_dict(), **record}
    reg_path.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")
    if replaces:
        (weights_dir / old).unlink()
    return path


def _tracked(path: Path) -> bool:
    """Whether git tracks ``path`` (True when git cannot tell: never delete what may be released)."""
    try:
        r = subprocess.run(
            ["git", "ls-files", "--error-unmatch", path.name],
            cwd=path.parent,
            capture_output=True,
            check=False,
            env={**os.environ, "LC_ALL": "C"},  # match git's untranslated messages
        )
    except OSError:
        return True
    untracked = (r.returncode == 1 and b"did not match" in r.stderr) or (
        r.returncode == 128 and b"not a git repository" in r.stderr
    )
    return not untracked
