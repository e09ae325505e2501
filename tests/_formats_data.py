"""Shared real-data helpers for tests: the data folder, its manifest, params, GeoTIFF comparison.

At ``tests/`` (on ``sys.path`` through ``tests/conftest.py``) so every test folder can import it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(
    os.environ.get("LLIC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def manifest() -> list[dict[str, str]]:
    """Rows of ``MANIFEST.tsv``; empty when the shared data folder is absent."""
    path = DATA / "MANIFEST.tsv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def data_params(*prefixes: str, suffix: str | tuple[str, ...] = "") -> list:
    """One pytest param per manifest file under ``prefixes`` whose name ends in ``suffix``
    (any case; a tuple for several) (id = file name)."""
    rows = [
        r
        for r in manifest()
        if r["file"].startswith(prefixes) and r["file"].lower().endswith(suffix)
    ]
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no shared data under {DATA}"))]
    return [pytest.param(r, id=Path(r["file"]).name, marks=pytest.mark.data) for r in rows]


def path_of(row: dict[str, str]) -> Path:
    """The path of a manifest row's file, skipping the test when it is missing."""
    p = DATA / row["file"]
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def geotiff_fields(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Every field ``formats.geotiff.describe`` reads, all bands, and the dataset mask."""
    import rasterio

    from llic_imaging.formats.geotiff import describe

    with rasterio.open(path) as src:
        return describe(src), src.read(), src.dataset_mask()


def assert_same_geotiff(a: Path, b: Path, *, ignore: tuple[str, ...] = ()) -> None:
    """Assert ``b`` has the pixels, mask and every described field of ``a`` (but ``ignore``)."""
    (fa, pa, ma), (fb, pb, mb) = geotiff_fields(a), geotiff_fields(b)
    np.testing.assert_array_equal(pb, pa)
    np.testing.assert_array_equal(mb, ma)
    for key in fa:
        if key not in ignore:
            assert fb[key] == fa[key], key
