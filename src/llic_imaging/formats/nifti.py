"""NIfTI adapter (nibabel): stored voxels without scl_slope/scl_inter; integer-valued floats
become int16/uint16, other floats are refused.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional

__all__ = ["integer_dtype", "planes", "sniff"]

_MAGIC1 = (b"n+1\x00", b"ni1\x00")
_MAGIC2 = (b"n+2\x00", b"ni2\x00")


def sniff(head: bytes) -> bool:
    """True if ``head`` (already gunzipped) is a NIfTI-1 or NIfTI-2 header."""
    size = head[:4]
    if size in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):  # 348, either byte order
        return head[344:348] in _MAGIC1
    if size in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c"):  # 540
        return head[4:8] in _MAGIC2
    return False


def integer_dtype(values: np.ndarray, path: str) -> np.dtype:
    """The smallest codable dtype that holds ``values`` exactly (int16 preferred over uint16).

    Float volumes that only hold integers (scanner software often writes float32) are coded
    exactly this way; anything with a fraction, NaN or an out-of-range value is refused.
    """
    if values.dtype.name in ("uint8", "int8", "uint16", "int16"):
        return values.dtype.newbyteorder("=")
    if values.dtype.kind == "f" and not (
        np.all(np.isfinite(values)) and np.array_equal(values, np.rint(values))
    ):
        msg = f"{path}: {values.dtype} voxels hold non-integer values; they cannot be coded losslessly as integers"
        raise FormatError(msg)
    if values.dtype.kind not in "fiu":
        msg = f"{path}: voxel type {values.dtype} is not supported"
        raise FormatError(msg)
    lo, hi = (values.min(), values.max()) if values.size else (0, 0)
    for name in ("int16", "uint16"):
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return np.dtype(name)
    msg = f"{path}: voxel values {lo}..{hi} do not fit 16 bits"
    raise FormatError(msg)


def _image(path: str) -> Any:
    nib = import_optional("nibabel", "nifti")
    try:
        return nib.load(path)
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror or exc}"
        raise FormatError(msg) from exc
    except Exception as exc:  # nibabel raises ImageFileError, ValueError, EOFError
        msg = f"{path}: not a readable NIfTI file: {exc}"
        raise FormatError(msg) from exc


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Every slice ``z<k>`` along the third axis of the first volume, as (Y, X) stored values."""
    p = os.fspath(path)
    img = _image(p)
    proxy = img.dataobj
    index = (slice(None),) * min(3, len(proxy.shape)) + (0,) * max(0, len(proxy.shape) - 3)
    try:
        vol = np.asanyarray(proxy.get_unscaled())[index]
    except Exception as exc:
        msg = f"{p}: voxel data cannot be read: {exc}"
        raise FormatError(msg) from exc
    vol = vol.reshape(*vol.shape[:2], -1)
    vol = vol.astype(integer_dtype(vol, p))
    return [(f"z{k}", np.ascontiguousarray(vol[:, :, k].T)) for k in range(vol.shape[2])]
