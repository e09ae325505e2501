"""``import llic_imaging`` must load numpy only: heavy and optional libraries load on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "constriction", "pydicom", "rasterio", "napari", "nibabel", "SimpleITK", "qtpy")


@pytest.mark.parametrize(
    "statement",
    ["import llic_imaging", "import llic_imaging.errors", "from llic_imaging import LlicError"],
)
def test_import_loads_no_heavy_module(statement: str) -> None:
    code = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
