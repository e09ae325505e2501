"""GeoTIFF adapter (rasterio): bands as stored integers with georeferencing kept alongside."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.planes import SUPPORTED_DTYPES

__all__ = ["planes"]


def _open(path: str) -> Any:
    rasterio = import_optional("rasterio", "geo")
    try:
        return rasterio.open(path)
    except Exception as exc:  # RasterioIOError covers missing, unreadable and corrupt files
        msg = f"{path}: not a readable GeoTIFF: {exc}"
        raise FormatError(msg) from exc


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Bands ``b<i>`` (0-based), skipping alpha bands, which carry a mask rather than an image."""
    rasterio = import_optional("rasterio", "geo")
    p = os.fspath(path)
    out = []
    with _open(p) as src:
        for i, (dtype, interp) in enumerate(zip(src.dtypes, src.colorinterp, strict=True)):
            if interp == rasterio.enums.ColorInterp.alpha:
                continue
            if dtype not in SUPPORTED_DTYPES:
                msg = (
                    f"{p}: band {i + 1} is {dtype}; only {', '.join(SUPPORTED_DTYPES)} can be coded"
                )
                raise FormatError(msg)
            out.append((f"b{i}", src.read(i + 1)))
    return out
