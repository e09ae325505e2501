"""PNG adapter: every chunk except IDAT is kept verbatim; IDAT is rebuilt from the pixels.

Restore is byte-identical when the original IDAT stream is what our writer produces (filter 0,
one zlib level we try); otherwise the pixels and all other chunks are identical.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from llic_imaging._fileio import write_atomic
from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, read_bytes

__all__ = ["load", "planes", "save", "sniff"]

MAGIC = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_LEVELS = (6, 9, 1)  # zlib levels tried when proving byte identity
# How the IDAT stream was cut and deflated: not content, so a restore may differ there.
ENCODING_FIELDS = frozenset({"sizes", "level"})


def sniff(head: bytes) -> bool:
    """True if ``head`` starts with the PNG signature."""
    return head.startswith(MAGIC)


def _chunks(data: bytes, path: str) -> list[tuple[bytes, int, int]]:
    """Return ``(type, start, end)`` for every chunk (start/end span the whole chunk)."""
    out, pos = [], len(MAGIC)
    while pos < len(data):
        if pos + 12 > len(data):
            msg = f"{path}: PNG chunk at offset {pos} is truncated"
            raise FormatError(msg)
        (size,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + size
        if end > len(data):
            msg = f"{path}: PNG chunk at offset {pos} is truncated ({size} bytes declared)"
            raise FormatError(msg)
        ctype = data[pos + 4 : pos + 8]
        out.append((ctype, pos, end))
        pos = end
        if ctype == b"IEND":
            break
    return out


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _raw_rows(array: np.ndarray, depth: int) -> bytes:
    """Filter-0 scanlines of an (H, W, C) array, samples big-endian as PNG requires."""
    h = array.shape[0]
    samples = array.astype(">u2" if depth == 16 else "u1").reshape(h, -1).view(np.uint8)
    return np.hstack([np.zeros((h, 1), np.uint8), samples]).tobytes()


def _split(stream: bytes, sizes: list[int]) -> list[bytes]:
    """Cut ``stream`` into IDAT bodies of the original sizes (the last one takes the rest)."""
    out, pos = [], 0
    for size in sizes[:-1]:
        if pos >= len(stream):
            break
        out.append(stream[pos : pos + size])
        pos += size
    out.append(stream[pos:])
    return out


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read an 8/16-bit gray, gray+alpha, RGB or RGBA PNG as (H, W) or (C, H, W) planes."""
    p = os.fspath(path)
    data = read_bytes(p)
    if not sniff(data):
        msg = f"{p}: not a PNG file (bad signature)"
        raise FormatError(msg)
    chunks = _chunks(data, p)
    idat = [c for c in chunks if c[0] == b"IDAT"]
    if not chunks or chunks[0][0] != b"IHDR" or not idat:
        msg = f"{p}: PNG has no IHDR or no IDAT chunk"
        raise FormatError(msg)
    width, height, depth, ctype, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if ctype not in _CHANNELS or depth not in (8, 16):
        msg = (
            f"{p}: PNG colour type {ctype} at {depth} bits is not supported "
            "(palette and 1/2/4-bit images need a palette-aware codec)"
        )
        raise FormatError(msg)
    codecs = import_optional("imagecodecs", "bench")
    try:
        pixels = codecs.png_decode(data)
    except Exception as exc:  # imagecodecs raises its own PngError
        msg = f"{p}: PNG pixel data cannot be decoded: {exc}"
        raise FormatError(msg) from exc
    pixels = pixels.reshape(height, width, _CHANNELS[ctype])
    head, tail = data[: idat[0][1]], data[idat[-1][2] :]
    stream = b"".join(data[s + 8 : e - 4] for _, s, e in idat)
    info: dict[str, Any] = {"sizes": [e - s - 12 for _, s, e in idat], "level": None}
    raw = _raw_rows(pixels, depth)
    if interlace == 0:
        info["level"] = next((lv for lv in _LEVELS if zlib.compress(raw, lv) == stream), None)
    array = pixels[..., 0] if pixels.shape[-1] == 1 else np.moveaxis(pixels, -1, 0)
    exact = "bytes" if info["level"] is not None else "pixels+metadata"
    return Loaded(
        np.ascontiguousarray(array), pack("png", info, {"head": head, "tail": tail}), "png", exact
    )


def save(
    path: str | os.PathLike[str],
    array: np.ndarray,
    info: dict[str, Any],
    blobs: dict[str, bytes],
    *,
    compresslevel: int | None = None,
) -> None:
    """Rebuild the PNG; ``compresslevel`` overrides the zlib level (the bytes then differ)."""
    head = bytearray(blobs["head"])
    depth, interlace = head[24], head[28]
    if interlace:
        # Our writer emits non-interlaced scanlines; say so in IHDR and fix its CRC.
        head[28] = 0
        head[29:33] = struct.pack(">I", zlib.crc32(bytes(head[12:29])))
    arr = np.asarray(array)
    pixels = arr[..., None] if arr.ndim == 2 else np.moveaxis(arr, 0, -1)
    level = compresslevel if compresslevel is not None else (info["level"] or 6)
    stream = zlib.compress(_raw_rows(pixels, depth), level)
    sizes = info["sizes"] if compresslevel is None else [len(stream)]
    idat = [_chunk(b"IDAT", body) for body in _split(stream, sizes)]
    write_atomic(path, [bytes(head), *idat, blobs["tail"]])


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Colour planes ``c0..``; the alpha plane is skipped (it says nothing about the image)."""
    arr = load(path).array
    if arr.ndim == 2:
        return [("c0", arr)]
    alpha = {2: 1, 4: 3}.get(arr.shape[0])  # gray+alpha, RGBA
    return [(f"c{i}", arr[i]) for i in range(arr.shape[0]) if i != alpha]
