"""Shared real-data helpers for the format tests: the data folder, its manifest, and params."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get("LLIC_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)


def manifest() -> list[dict[str, str]]:
    """Rows of ``MANIFEST.tsv``; empty when the shared data folder is absent."""
    path = DATA / "MANIFEST.tsv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def data_params(*prefixes: str, suffix: str = "") -> list:
    """One pytest param per manifest file under ``prefixes`` ending in ``suffix`` (id = file name)."""
    rows = [r for r in manifest() if r["file"].startswith(prefixes) and r["file"].endswith(suffix)]
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no shared data under {DATA}"))]
    return [pytest.param(r, id=Path(r["file"]).name, marks=pytest.mark.data) for r in rows]


def path_of(row: dict[str, str]) -> Path:
    """The path of a manifest row's file, skipping the test when it is missing."""
    p = DATA / row["file"]
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p
