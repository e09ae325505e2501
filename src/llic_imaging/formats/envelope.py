"""The metadata envelope: a JSON layout plus verbatim non-pixel byte blobs, zlib-compressed.

Every adapter's ``Loaded.metadata`` is one envelope, so the container stores a single opaque blob
and ``save`` finds the format, the pixel layout and the file skeleton it needs in one place.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError

__all__ = ["MAGIC", "Loaded", "atomic_path", "pack", "read_bytes", "unpack", "write_atomic"]

MAGIC = b"LLFM"
VERSION = 1
_HEAD = struct.Struct("<4sB")


@dataclass(frozen=True)
class Loaded:
    """Stored integers of a file plus everything needed to rebuild the file from them.

    ``array`` holds stored values (never rescaled), uint8/int8/uint16/int16, (H, W) or (N, H, W).
    ``metadata`` is an envelope (see :func:`pack`) that is opaque to the codec. ``exact`` is
    ``"bytes"`` when :func:`llic_imaging.formats.save` rebuilds the file byte for byte and
    ``"pixels+metadata"`` when it rebuilds the same pixels and metadata in new bytes (for example
    a TIFF whose LZW segments are re-encoded).
    """

    array: np.ndarray
    metadata: bytes
    format: str
    exact: str


def pack(fmt: str, info: dict[str, Any], blobs: dict[str, bytes] | None = None) -> bytes:
    """Serialise ``info`` (JSON-able) and named byte ``blobs`` into one compressed envelope."""
    blobs = blobs or {}
    doc = {"format": fmt, "info": info, "blobs": [[k, len(v)] for k, v in blobs.items()]}
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    body = b"".join([struct.pack("<I", len(text)), text, *blobs.values()])
    return _HEAD.pack(MAGIC, VERSION) + zlib.compress(body, 9)


def unpack(metadata: bytes) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """Return ``(format, info, blobs)`` from an envelope made by :func:`pack`.

    Raises
    ------
    FormatError
        If the bytes are not an envelope or are corrupt, so that ``save`` never writes garbage.
    """
    data = bytes(metadata)
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        msg = "metadata is not a llic_imaging.formats envelope (bad magic); was it made by formats.load?"
        raise FormatError(msg)
    version = data[4]
    if version != VERSION:
        msg = f"metadata envelope version {version} is not supported (expected {VERSION})"
        raise FormatError(msg)
    try:
        body = zlib.decompress(data[_HEAD.size :])
        (n,) = struct.unpack_from("<I", body)
        doc = json.loads(body[4 : 4 + n])
        pos = 4 + n
        blobs = {}
        for name, size in doc["blobs"]:
            blobs[name] = body[pos : pos + size]
            pos += size
        fmt, info = str(doc["format"]), doc["info"]
    except (zlib.error, struct.error, ValueError, KeyError, TypeError) as exc:
        msg = f"metadata envelope is corrupt: {exc}"
        raise FormatError(msg) from exc
    if pos != len(body):
        msg = f"metadata envelope is corrupt: {len(body) - pos} unexpected trailing bytes"
        raise FormatError(msg)
    return fmt, info, blobs


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, turning OS errors into :class:`FormatError` with the path in the message."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        msg = f"{os.fspath(path)}: cannot read: {exc.strerror or exc}"
        raise FormatError(msg) from exc


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds.

    The temporary name keeps the original suffixes because rasterio and SimpleITK choose their
    driver from the extension. A crash leaves the old file (or nothing), never half a file.
    """
    dst = Path(path)
    suffix = "".join(dst.suffixes) if dst.suffixes else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=f".tmp{suffix}", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dst)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
