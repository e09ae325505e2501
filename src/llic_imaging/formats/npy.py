"""NumPy ``.npy`` adapter: the header bytes are kept verbatim, so restore is byte-identical."""

from __future__ import annotations

import ast
import math
import os
import struct
from typing import Any

import numpy as np

from llic_imaging._fileio import write_atomic
from llic_imaging.errors import FormatError
from llic_imaging.formats.envelope import Loaded, pack, read_bytes
from llic_imaging.planes import SUPPORTED_DTYPES

__all__ = ["load", "planes", "save", "sniff"]

MAGIC = b"\x93NUMPY"


def sniff(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts like a ``.npy`` file."""
    return head.startswith(MAGIC)


def _parse_header(data: bytes, path: str) -> tuple[int, np.dtype, tuple[int, ...], bool]:
    """Return ``(data_offset, dtype, shape, fortran_order)`` from the raw header."""
    if len(data) < 10 or not sniff(data):
        msg = f"{path}: not a .npy file (bad magic)"
        raise FormatError(msg)
    major = data[6]
    if major == 1:
        (hlen,), start = struct.unpack_from("<H", data, 8), 10
    elif major in (2, 3):
        if len(data) < 12:
            msg = f"{path}: .npy header is truncated"
            raise FormatError(msg)
        (hlen,), start = struct.unpack_from("<I", data, 8), 12
    else:
        msg = f"{path}: .npy format version {major} is not supported"
        raise FormatError(msg)
    end = start + hlen
    if len(data) < end:
        msg = f"{path}: .npy header is truncated ({len(data)} bytes, header ends at {end})"
        raise FormatError(msg)
    try:
        header = ast.literal_eval(data[start:end].decode("utf-8" if major == 3 else "latin1"))
        dtype = np.dtype(header["descr"])
        shape = tuple(int(s) for s in header["shape"])
        fortran = bool(header["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        msg = f"{path}: .npy header is malformed: {exc}"
        raise FormatError(msg) from exc
    return end, dtype, shape, fortran


def _check(dtype: np.dtype, shape: tuple[int, ...], path: str) -> None:
    if dtype.newbyteorder("=").name not in SUPPORTED_DTYPES:
        msg = (
            f"{path}: .npy dtype {dtype} cannot be coded losslessly; "
            f"expected one of {', '.join(SUPPORTED_DTYPES)}"
        )
        raise FormatError(msg)
    if len(shape) < 2 or min(shape) < 1:
        msg = f"{path}: .npy shape {shape} is not an image (need at least 2 non-empty axes)"
        raise FormatError(msg)


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read a ``.npy`` file; arrays with more than 3 axes are flattened to (N, H, W).

    The header (and any trailing bytes) travel verbatim in the envelope, so :func:`save` needs
    only the values to reproduce the file exactly, including byte order and Fortran order.
    """
    p = os.fspath(path)
    data = read_bytes(p)
    offset, dtype, shape, fortran = _parse_header(data, p)
    _check(dtype, shape, p)
    count = math.prod(shape)  # Python ints: a forged shape must not wrap around
    nbytes = count * dtype.itemsize
    if len(data) < offset + nbytes:
        msg = f"{p}: .npy data is truncated ({len(data) - offset} of {nbytes} bytes)"
        raise FormatError(msg)
    flat = np.frombuffer(data, dtype, count, offset)
    arr = flat.reshape(shape, order="F" if fortran else "C").astype(dtype.newbyteorder("="))
    if arr.ndim > 3:
        arr = arr.reshape(-1, *shape[-2:])
    blobs = {"head": data[:offset], "tail": data[offset + nbytes :]}
    return Loaded(arr, pack("npy", {}, blobs), "npy", "bytes")


def save(
    path: str | os.PathLike[str], array: np.ndarray, info: dict[str, Any], blobs: dict[str, bytes]
) -> None:
    """Write the values back under the original header bytes (``info`` is unused for .npy)."""
    head = blobs["head"]
    _, dtype, shape, fortran = _parse_header(head, "metadata")
    arr = np.asarray(array)
    if arr.size != math.prod(shape):
        msg = f"array has {arr.size} values but the .npy header expects shape {shape}"
        raise FormatError(msg)
    body = arr.reshape(shape).astype(dtype).tobytes(order="F" if fortran else "C")
    write_atomic(path, [head, body, blobs["tail"]])


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Planes ``p0..pN`` of the (N, H, W) view of the array."""
    arr = load(path).array
    stack = arr.reshape(-1, *arr.shape[-2:])
    return [(f"p{i}", stack[i]) for i in range(stack.shape[0])]
