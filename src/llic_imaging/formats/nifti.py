"""NIfTI adapter: header and extensions kept verbatim and voxels in on-disk order, so the .nii
(or the decompressed .nii.gz) restores byte for byte; integer-valued floats are coded as ints.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import numpy as np

from llic_imaging._fileio import write_atomic
from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, read_bytes, unpack

__all__ = ["integer_dtype", "load", "planes", "save", "sniff"]

_MAGIC1 = (b"n+1\x00", b"ni1\x00")
_MAGIC2 = (b"n+2\x00", b"ni2\x00")
_CHUNK = 1 << 18  # input bytes per step when checking a zlib setting
# The gzip members' deflate settings: not content, so a restore may differ there.
ENCODING_FIELDS = frozenset({"gzip", "gzip_settings"})


def sniff(head: bytes) -> bool:
    """True if ``head`` (already gunzipped) is a NIfTI-1 or NIfTI-2 header."""
    size = head[:4]
    if size in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):  # 348, either byte order
        return head[344:348] in _MAGIC1
    if size in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c"):  # 540
        return head[4:8] in _MAGIC2
    return False


def integer_dtype(values: np.ndarray, path: str) -> np.dtype:
    """The codable dtype that holds ``values`` exactly (int16 preferred over uint16).

    Float volumes that only hold integers (scanner software often writes float32) are coded
    exactly this way; a fraction, NaN, -0.0 or an out-of-range value is refused.
    """
    if values.dtype.newbyteorder("=").name in ("uint8", "int8", "uint16", "int16"):
        return values.dtype.newbyteorder("=")
    if values.dtype.kind not in "fiu":
        msg = f"{path}: voxel type {values.dtype} is not supported"
        raise FormatError(msg)
    if values.dtype.kind == "f" and not (
        np.all(np.isfinite(values))
        and np.array_equal(values, np.rint(values))
        and not np.any(np.signbit(values) & (values == 0))
    ):
        msg = (
            f"{path}: {values.dtype} voxels hold non-integer values (or -0.0); "
            "they cannot be coded losslessly as integers"
        )
        raise FormatError(msg)
    lo, hi = values.min(), values.max()
    for name in ("int16", "uint16"):
        limits = np.iinfo(name)
        if limits.min <= lo and hi <= limits.max:
            return np.dtype(name)
    msg = f"{path}: voxel values {lo}..{hi} do not fit 16 bits"
    raise FormatError(msg)


def _gzip_members(data: bytes, path: str) -> tuple[list[tuple[bytes, bytes, bytes]], bytes]:
    """Return ``([(member header, deflate stream, payload), ...], bytes after the last member)``.

    A .nii.gz may hold several gzip members (``cat a.gz b.gz``, bgzip blocks); like ``gzip``,
    the payloads joined are the file. Each member is kept apart so it can be rebuilt as it was.
    """
    members, pos = [], 0
    while True:
        head, stream, payload, pos = _gzip_member(data, pos, path)
        members.append((head, stream, payload))
        if data[pos : pos + 2] != b"\x1f\x8b":
            return members, data[pos:]


def _gzip_member(data: bytes, start: int, path: str) -> tuple[bytes, bytes, bytes, int]:
    """Return ``(header, deflate stream, payload, end offset)`` of the member at ``start``."""
    view, pos = memoryview(data), start + 10
    try:
        flags = data[start + 3]
        if flags & 4:  # FEXTRA
            pos += 2 + struct.unpack_from("<H", data, pos)[0]
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                pos = data.index(b"\x00", pos) + 1
        pos += 2 if flags & 2 else 0  # FHCRC
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        # Chunk by chunk, so that the rest of the file is not copied into unused_data per member.
        chunks, fed = [], pos
        while not inflater.eof and fed < len(data):
            chunks.append(inflater.decompress(view[fed : fed + _CHUNK]))
            fed += _CHUNK
        payload = b"".join(chunks)
    except (IndexError, ValueError, struct.error, zlib.error) as exc:
        msg = f"{path}: gzip stream is corrupt: {exc}"
        raise FormatError(msg) from exc
    stream_end = min(fed, len(data)) - len(inflater.unused_data)
    if not inflater.eof or stream_end + 8 > len(data):
        msg = f"{path}: gzip stream is truncated"
        raise FormatError(msg)
    crc, size = struct.unpack_from("<II", data, stream_end)
    if crc != zlib.crc32(payload) or size != len(payload) & 0xFFFFFFFF:
        msg = f"{path}: gzip CRC or size does not match the data"
        raise FormatError(msg)
    return data[start:pos], data[pos:stream_end], payload, stream_end + 8


def _deflate(payload: bytes, level: int, mem_level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, mem_level)
    return c.compress(payload) + c.flush()


def _reproduces(payload: bytes, stream: bytes, level: int, mem_level: int) -> bool:
    """Compress ``payload`` chunk by chunk, giving up at the first byte that differs."""
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, mem_level)
    pos = 0
    for start in range(0, len(payload), _CHUNK):
        out = c.compress(payload[start : start + _CHUNK])
        if stream[pos : pos + len(out)] != out:
            return False
        pos += len(out)
    return stream[pos:] == c.flush()


def _find_setting(payload: bytes, stream: bytes, xfl: int) -> list[int] | None:
    """The zlib ``[level, memLevel]`` that reproduces ``stream`` exactly, if any.

    Most tools (nibabel, Python's gzip, dcm2niix with zlib) use zlib with memLevel 8, so trying
    each level usually finds the writer; a wrong setting is usually ruled out in the first chunk.
    """
    hint = {2: [9], 4: [1]}.get(xfl, [6])
    for level in [*hint, *(lv for lv in range(1, 10) if lv not in hint)]:
        for mem_level in (8, 9):
            if _reproduces(payload, stream, level, mem_level):
                return [level, mem_level]
    return None


def _header_image(raw: bytes, path: str) -> Any:
    nib = import_optional("nibabel", "nifti")
    if not sniff(raw):
        msg = f"{path}: not a single-file NIfTI (.hdr/.img pairs are not supported)"
        raise FormatError(msg)
    if raw[344:348] == b"ni1\x00" or raw[4:8] == b"ni2\x00":
        msg = f"{path}: NIfTI header says the voxels are in a separate .img file; not supported"
        raise FormatError(msg)
    cls = nib.Nifti2Image if raw[4:8] == b"n+2\x00" else nib.Nifti1Image
    try:
        return (
            cls.from_stream(io.BytesIO(raw)) if hasattr(cls, "from_stream") else cls.from_bytes(raw)
        )
    except Exception as exc:  # nibabel raises HeaderDataError, ImageFileError, ValueError
        msg = f"{path}: NIfTI header is invalid: {exc}"
        raise FormatError(msg) from exc


def _gunzip(data: bytes, path: str) -> tuple[bytes, dict[str, Any], dict[str, bytes]]:
    """The .nii bytes of a .nii.gz, with what rebuilds the gzip wrapper: each member's header
    and zlib setting (``"unknown"`` when none reproduces its stream) and the bytes after them.

    The first member is ``gzip``/``gz_head``; later ones, if any, are ``gzip_members``
    (``[header length, payload length]``), ``gzip_settings`` and ``gz_heads`` (headers joined).
    """
    members, gz_tail = _gzip_members(data, path)
    settings = [_find_setting(pl, stream, head[8]) or "unknown" for head, stream, pl in members]
    info: dict[str, Any] = {"gzip": settings[0]}
    blobs = {"gz_head": members[0][0], "gz_tail": gz_tail}
    if len(members) > 1:
        info["gzip_members"] = [[len(head), len(pl)] for head, _, pl in members[1:]]
        info["gzip_settings"] = settings[1:]
        blobs["gz_heads"] = b"".join(head for head, _, _ in members[1:])
    return b"".join(pl for _, _, pl in members), info, blobs


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read all voxels as (H, W) or (N, H, W) with H = y, W = x (on-disk order, no scaling).

    4D and higher volumes are flattened slice by slice; the shape is recorded for restore.
    """
    p = os.fspath(path)
    data = read_bytes(p)
    raw, info, blobs = _gunzip(data, p) if data[:2] == b"\x1f\x8b" else (data, {"gzip": None}, {})
    proxy = _header_image(raw, p).dataobj
    dtype, shape, offset = (
        np.dtype(proxy.dtype),
        tuple(int(s) for s in proxy.shape),
        int(proxy.offset),
    )
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if len(shape) < 2 or 0 in shape:
        msg = f"{p}: NIfTI shape {shape} is not an image"
        raise FormatError(msg)
    if len(raw) < offset + nbytes:
        msg = f"{p}: voxel data is truncated ({max(0, len(raw) - offset)} of {nbytes} bytes)"
        raise FormatError(msg)
    values = np.frombuffer(raw, dtype, int(np.prod(shape)), offset).reshape(shape[::-1])
    values = values.reshape(-1, shape[1], shape[0]) if len(shape) > 2 else values
    target = integer_dtype(values, p)
    info.update(dtype=dtype.str, shape=list(shape), coded_as_integer=target.kind != dtype.kind)
    blobs.update(head=raw[:offset], tail=raw[offset + nbytes :])
    settings = [info["gzip"], *info.get("gzip_settings", [])]
    exact = "pixels+metadata" if "unknown" in settings else "bytes"
    array = np.ascontiguousarray(values, dtype=target)
    return Loaded(array, pack("nifti", info, blobs), "nifti", exact)


def save(
    path: str | os.PathLike[str],
    array: np.ndarray,
    info: dict[str, Any],
    blobs: dict[str, bytes],
    *,
    compresslevel: int | None = None,
) -> None:
    """Write header + voxels (+ gzip wrapper with the original member headers) atomically.

    ``compresslevel`` overrides the zlib level of a .nii.gz (the bytes then differ).
    """
    arr = np.asarray(array)
    if arr.size != int(np.prod(info["shape"])):
        msg = f"array has {arr.size} values; the NIfTI header expects shape {tuple(info['shape'])}"
        raise FormatError(msg)
    raw = blobs["head"] + arr.astype(info["dtype"]).tobytes() + blobs["tail"]
    if info["gzip"] is None:
        write_atomic(path, [raw])
        return
    parts, pos = [], 0
    for head, setting, size in _members(info, blobs, len(raw)):
        level, mem_level = setting if isinstance(setting, list) else (6, 8)
        if compresslevel is not None:
            level, mem_level = compresslevel, 8
        payload = raw[pos : pos + size]
        pos += size
        trailer = struct.pack("<II", zlib.crc32(payload), size & 0xFFFFFFFF)
        parts += [head, _deflate(payload, level, mem_level), trailer]
    write_atomic(path, [*parts, blobs["gz_tail"]])


def _members(
    info: dict[str, Any], blobs: dict[str, bytes], total: int
) -> list[tuple[bytes, Any, int]]:
    """``(header, zlib setting, payload length)`` of each gzip member, as :func:`_gunzip` kept them."""
    rest = info.get("gzip_members", [])
    first = total - sum(size for _, size in rest)
    if first < 0:
        msg = f"gzip member lengths add up to more than the {total} bytes of the .nii"
        raise FormatError(msg)
    out, pos = [(blobs["gz_head"], info["gzip"], first)], 0
    for (head_len, size), setting in zip(rest, info.get("gzip_settings", []), strict=True):
        out.append((blobs["gz_heads"][pos : pos + head_len], setting, size))
        pos += head_len
    return out


def extensions(info: dict[str, Any], blobs: dict[str, bytes]) -> tuple[str, ...]:
    """``.nii.gz`` for a gzipped source, else ``.nii``: nibabel trusts the name, not the bytes."""
    return (".nii.gz",) if info["gzip"] is not None else (".nii",)


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Every slice ``z<k>`` along the third axis of the first volume, as (y, x) stored values."""
    loaded = load(path)
    arr = loaded.array.reshape(-1, *loaded.array.shape[-2:])
    shape = unpack(loaded.metadata)[1]["shape"]
    depth = shape[2] if len(shape) > 2 else 1
    return [(f"z{k}", arr[k]) for k in range(depth)]
