"""The metadata envelope: a JSON layout plus verbatim non-pixel byte blobs, zlib-compressed.

Every adapter's ``Loaded.metadata`` is one envelope, so the container stores a single opaque blob
and ``save`` finds the format, the pixel layout and the file skeleton it needs in one place.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError, LlicError

__all__ = [
    "MAGIC",
    "Loaded",
    "pack",
    "read_bytes",
    "reading",
    "unpack",
]

MAGIC = b"LLFM"
VERSION = 1
_HEAD = struct.Struct("<4sB")
MAX_BODY = 1 << 30  # bytes an envelope may inflate to unless the caller knows better


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
    try:
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    except (TypeError, ValueError) as exc:  # a corrupt file's tag decoded to something odd
        msg = f"the file's {fmt} metadata cannot be stored: {exc}"
        raise FormatError(msg) from exc
    body = b"".join([struct.pack("<I", len(text)), text, *blobs.values()])
    return _HEAD.pack(MAGIC, VERSION) + zlib.compress(body, 9)


def unpack(
    metadata: bytes, *, limit: int = MAX_BODY
) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """Return ``(format, info, blobs)`` from an envelope made by :func:`pack`.

    ``limit``: the most bytes the envelope may inflate to (a forged one could inflate a few
    MB to gigabytes); ``formats.save`` allows the image's own size plus 64 MiB.

    Raises
    ------
    FormatError
        If the bytes are not an envelope, are corrupt or inflate past ``limit``, so that
        ``save`` never writes garbage.
    """
    data = bytes(metadata)
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        msg = "metadata is not a llic_imaging.formats envelope (bad magic); was it made by formats.load?"
        raise FormatError(msg)
    version = data[4]
    if version != VERSION:
        msg = f"metadata envelope version {version} is not supported (expected {VERSION})"
        raise FormatError(msg)
    inflate = zlib.decompressobj()
    try:
        body = inflate.decompress(data[_HEAD.size :], limit + 1)
    except zlib.error as exc:
        msg = f"metadata envelope is corrupt: {exc}"
        raise FormatError(msg) from exc
    if len(body) > limit:
        msg = f"metadata envelope inflates past {limit} bytes: refused"
        raise FormatError(msg)
    if not inflate.eof or inflate.unused_data:
        msg = "metadata envelope is corrupt: its compressed body is truncated or followed by other bytes"
        raise FormatError(msg)
    try:
        (n,) = struct.unpack_from("<I", body)
        doc = json.loads(body[4 : 4 + n])
        pos = 4 + n
        blobs = {}
        for name, size in doc["blobs"]:
            blobs[name] = body[pos : pos + size]
            pos += size
        fmt, info = str(doc["format"]), doc["info"]
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        msg = f"metadata envelope is corrupt: {exc}"
        raise FormatError(msg) from exc
    if pos != len(body):
        msg = f"metadata envelope is corrupt: {len(body) - pos} unexpected trailing bytes"
        raise FormatError(msg)
    return fmt, info, blobs


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, turning OS errors into :class:`FormatError` with the path in the message."""
    with reading(os.fspath(path), "file"):
        return Path(path).read_bytes()


@contextmanager
def reading(path: str, what: str) -> Iterator[None]:
    """Turn a reader library's failure anywhere in the block into a :class:`FormatError`
    naming the file: tifffile and rasterio parse lazily, so a corrupt file can fail while
    pages, tags or bands are read, not only when it is opened."""
    try:
        yield
    except LlicError:
        raise
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror or exc}"
        raise FormatError(msg) from exc
    except Exception as exc:  # the libraries' own errors on bad structure, and what follows
        msg = f"{path}: not a readable {what}: {exc}"
        raise FormatError(msg) from exc
