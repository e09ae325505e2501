"""Parse and validate a .llic stream (v1 to v3): every length before any allocation, every
section's crc32.

One parser serves a buffer (``read``) and a seekable file (``read_file``): it sees the stream only
through ``read_at(offset, length)``. Chunk payloads are not read here; ``Container.payload``
reads and checks each one when it is asked for.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NoReturn

import numpy as np

from llic_imaging.container.spec import (
    CRC,
    DIGEST_BYTES,
    FLAGS,
    HEADER_ZDICT,
    HEADER_ZDICT_V3,
    INDEX_DTYPE,
    INDEX_FIELDS,
    MAGIC,
    MAX_CHUNKS,
    MAX_HEADER_BYTES,
    MAX_VARINT_BYTES,
    PRELUDE,
    PRELUDE_V2,
    PRELUDE_V2_MAX,
    VERSION,
    VERSION_FIELD,
    VERSION_OFFSET,
    ChunkEntry,
    index_dtype,
)
from llic_imaging.errors import ChecksumError, StreamError, UnsupportedVersionError

__all__ = ["Container", "check", "read", "read_file"]

#: ``read_at(offset, length)``: exactly ``length`` bytes of the stream from ``offset``, which the
#: parser has already checked to lie inside the stream.
ReadAt = Callable[[int, int], bytes | memoryview]


@dataclass(frozen=True)
class Container:
    """A validated .llic stream: header, chunk index, metadata and lazy access to payloads.

    Equality compares the parsed content, not the payload bytes. Payloads are read from the
    source on demand: a view of the buffer given to ``read`` (not a copy, so a memory-mapped file
    is never loaded whole; do not modify that buffer while the container is in use), or the file
    given to ``read_file`` (keep it open).
    """

    version: int
    header: dict[str, Any]
    chunks: tuple[ChunkEntry, ...]
    metadata: bytes
    array_sha256: bytes
    nbytes: int
    _read_at: ReadAt = field(repr=False, compare=False)
    _payload_start: int = field(repr=False, compare=False)

    def payload(self, i: int) -> bytes:
        """Return the bytes of chunk ``i`` after checking them against the index crc32.

        Checking here rather than in ``read`` lets a caller decode one plane of a large stack
        without reading, or paying for, the others.

        Raises
        ------
        ChecksumError
            The chunk's bytes do not match its crc32; ``segment`` is ``"chunk i"``.
        """
        if not 0 <= i < len(self.chunks):
            msg = f"chunk index {i} out of range for {len(self.chunks)} chunks"
            raise IndexError(msg)
        entry = self.chunks[i]
        start = self._payload_start + entry.offset
        data = bytes(self._read_at(start, entry.length))
        found = zlib.crc32(data)
        if found != entry.crc32:
            msg = (
                f"chunk {i} at offset {start} ({entry.length} bytes): crc32 0x{found:08x} != "
                f"index 0x{entry.crc32:08x}; stream is corrupt"
            )
            raise ChecksumError(
                msg, segment=f"chunk {i}", expected=f"0x{entry.crc32:08x}", found=f"0x{found:08x}"
            )
        return data

    def select(self, plane: int | None = None) -> list[int]:
        """Return the indices of the chunks of ``plane`` (all chunks if None), in stored order.

        Stored order is the order the encoder wrote, which is the order the decoder must follow.
        """
        if plane is None:
            return list(range(len(self.chunks)))
        return [i for i, c in enumerate(self.chunks) if c.plane == plane]


def check(data: object) -> bool:
    """Return True if ``data`` starts with the .llic magic; never raises.

    Only the 8 magic bytes are looked at, so this is a cheap sniff for format dispatch, not a
    validation; use ``read`` for that. Anything that is not a bytes-like object gives False.
    """
    try:
        head = memoryview(data).cast("B")[: len(MAGIC)]  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        return False
    return head == MAGIC


def read(data: bytes | bytearray | memoryview) -> Container:
    """Parse and validate a .llic stream without touching chunk payloads.

    All section lengths live in the prelude and are checked against ``len(data)`` before
    any section is read, so a corrupt or hostile length can neither force a large allocation nor
    read past the end; the prelude's total length catches truncation even when the cut falls
    exactly between chunks.

    Parameters
    ----------
    data : bytes-like
        The whole stream; trailing bytes are an error.

    Returns
    -------
    Container

    Raises
    ------
    StreamError
        Wrong magic, truncation, trailing bytes, unknown flags, a length over the limits or
        outside the stream, or a header that is not a UTF-8 JSON object.
    UnsupportedVersionError
        The stream was written by a newer container version.
    ChecksumError
        The crc32 of the prelude or of the header, index or metadata section does not match.
    TypeError
        ``data`` is not a bytes-like object.
    """
    view = memoryview(data).cast("B")
    return _parse(len(view), lambda start, length: view[start : start + length])


def read_file(file: BinaryIO) -> Container:
    """Like ``read``, but from a seekable binary file: only the prelude, header, index and
    metadata are read now, and each payload when ``Container.payload`` asks for it.

    A window of a huge file therefore reads a few kilobytes plus its own chunks. The file's size
    stands in for ``len(data)``; the file must stay open (and unchanged) while the container is
    used. A file that shrinks between the checks and a later read raises ``StreamError``.
    Raises the same errors as ``read``, plus ``OSError`` from the file itself.
    """
    size = file.seek(0, os.SEEK_END)

    def read_at(start: int, length: int) -> bytes:
        file.seek(start)
        data = file.read(length)
        if len(data) != length:
            msg = (
                f"stream truncated: {length} bytes at offset {start} give only {len(data)}; "
                f"the file was {size} bytes when opened"
            )
            raise StreamError(msg)
        return data

    return _parse(size, read_at)


@dataclass(frozen=True)
class _Prelude:
    """The prelude's fields, whatever the version; ``end`` is where the header section starts."""

    flags: int
    header_len: int
    n_chunks: int
    metadata_len: int
    total_len: int
    sha: bytes
    end: int
    index: np.dtype


def _parse(size: int, read_at: ReadAt) -> Container:
    """Validate the stream of ``size`` bytes behind ``read_at`` in the order docs/container.md
    gives, reading each section only after every length has been checked against ``size``."""
    head = read_at(0, min(size, max(PRELUDE.size + CRC.size, PRELUDE_V2_MAX)))
    # A stream shorter than the magic but matching it so far is reported as truncated below.
    if bytes(head[: len(MAGIC)]) != MAGIC[:size]:
        msg = f"not an LLIC stream (magic {bytes(head[: len(MAGIC)])!r}, expected {MAGIC!r})"
        raise StreamError(msg)
    if size < VERSION_OFFSET + VERSION_FIELD.size:
        msg = f"stream truncated to {size} bytes, before its version field"
        raise StreamError(msg)
    version = VERSION_FIELD.unpack_from(head, VERSION_OFFSET)[0]
    _check_version(version)
    p = _prelude_v1(head, size) if version == 1 else _prelude_v2(head, size, version)
    if p.flags != FLAGS:
        msg = f"prelude flags 0x{p.flags:02x} set; container v{version} defines none"
        raise StreamError(msg)
    if p.total_len != size:
        what = "truncated" if size < p.total_len else "has trailing bytes"
        msg = f"stream {what}: prelude says {p.total_len} bytes, found {size}"
        raise StreamError(msg)
    if p.header_len > MAX_HEADER_BYTES:
        msg = f"header length {p.header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes"
        raise StreamError(msg)
    if p.n_chunks > MAX_CHUNKS:
        msg = f"chunk count {p.n_chunks} exceeds the limit of {MAX_CHUNKS}"
        raise StreamError(msg)
    pos = p.end
    index_len = p.n_chunks * p.index.itemsize
    n_crcs = 1 if version >= 3 else 3  # v3: one crc32 after header, index and metadata
    sections_len = p.header_len + index_len + p.metadata_len + n_crcs * CRC.size
    payload_start = pos + sections_len
    if payload_start > size:
        msg = (
            f"sections overrun the stream: header {p.header_len} + index {index_len} + metadata "
            f"{p.metadata_len} bytes end at offset {payload_start}, stream is {size} bytes"
        )
        raise StreamError(msg)

    if version >= 3:
        data = _section(read_at, pos, sections_len - CRC.size, "sections")
        parts = _split(data, p.header_len, index_len, p.metadata_len)
    else:
        parts = []
        for length, segment in ((p.header_len, "header"), (index_len, "index")):
            parts.append(_section(read_at, pos, length, segment))
            pos += length + CRC.size
        parts.append(_section(read_at, pos, p.metadata_len, "metadata"))
    header_data, index_data, metadata = parts
    start = p.end
    if version > 1:
        header_data = _inflate_header(header_data, start, version)
    header = _parse_header(header_data, start)
    index = np.frombuffer(index_data, p.index, p.n_chunks)
    chunks = _parse_index(index, payload_start, size - payload_start)
    return Container(version, header, chunks, bytes(metadata), p.sha, size, read_at, payload_start)


def _split(data: bytes | memoryview, *lengths: int) -> list[bytes | memoryview]:
    """Consecutive slices of ``data`` with the given lengths."""
    out, pos = [], 0
    for n in lengths:
        out.append(data[pos : pos + n])
        pos += n
    return out


def _prelude_v1(head: bytes | memoryview, size: int) -> _Prelude:
    """The fixed 68-byte v1 prelude, after its crc32."""
    if size < PRELUDE.size + CRC.size:
        msg = f"stream truncated to {size} bytes; the v1 prelude alone is {PRELUDE.size + CRC.size}"
        raise StreamError(msg)
    _checked(head[: PRELUDE.size + CRC.size], 0, "prelude")
    _, _, flags, header_len, n_chunks, metadata_len, total_len, sha = PRELUDE.unpack_from(head)
    end = PRELUDE.size + CRC.size
    return _Prelude(flags, header_len, n_chunks, metadata_len, total_len, sha, end, INDEX_DTYPE)


def _prelude_v2(head: bytes | memoryview, size: int, version: int) -> _Prelude:
    """The v2 or v3 prelude (fixed head, four varints, array digest), after its crc32."""
    truncated = f"stream truncated to {size} bytes, inside its v{version} prelude"
    if size < PRELUDE_V2.size:
        raise StreamError(truncated)
    _, _, flags, widths = PRELUDE_V2.unpack_from(head)
    pos = PRELUDE_V2.size
    values = []
    for name in ("header_len", "n_chunks", "metadata_len", "total_len"):
        value, pos = _varint(head, pos, name, truncated)
        values.append(value)
    digest = DIGEST_BYTES[version]
    end = pos + digest + CRC.size
    if len(head) < end:
        raise StreamError(truncated)
    _checked(head[:end], 0, "prelude")
    if widths >> 2 * len(INDEX_FIELDS):
        msg = f"prelude index widths 0x{widths:04x} use undefined bits"
        raise StreamError(msg)
    sha = bytes(head[pos : pos + digest])
    return _Prelude(flags, *values, sha, end, index_dtype(widths))


def _varint(data: bytes | memoryview, pos: int, name: str, truncated: str) -> tuple[int, int]:
    """Decode one unsigned LEB128 value at ``pos``; return it and the position after it."""
    value = 0
    for k in range(MAX_VARINT_BYTES):
        if pos + k >= len(data):
            raise StreamError(truncated)
        byte = data[pos + k]
        value |= (byte & 0x7F) << 7 * k
        if not byte & 0x80:
            if value >> 64:
                break
            return value, pos + k + 1
    msg = f"prelude field {name} at offset {pos} is not a valid varint; stream is corrupt"
    raise StreamError(msg)


def _inflate_header(data: bytes | memoryview, pos: int, version: int) -> bytes:
    """Inflate a v2 or v3 header; at most ``MAX_HEADER_BYTES`` come out, whatever the input
    claims."""
    unpack = zlib.decompressobj(-15, zdict=HEADER_ZDICT if version == 2 else HEADER_ZDICT_V3)
    try:
        out = unpack.decompress(bytes(data), MAX_HEADER_BYTES)
    except zlib.error as exc:
        msg = f"header at offset {pos} is not valid deflate data: {exc}"
        raise StreamError(msg) from exc
    if not unpack.eof or unpack.unconsumed_tail or unpack.unused_data:
        msg = (
            f"header at offset {pos} does not inflate to one complete stream of at most "
            f"{MAX_HEADER_BYTES} bytes"
        )
        raise StreamError(msg)
    return out


def _check_version(version: int) -> None:
    """Reject versions this library cannot parse, before their layout is assumed."""
    if version > VERSION:
        msg = (
            f"container version {version} is newer than this library ({VERSION}); "
            "upgrade llic-imaging"
        )
        raise UnsupportedVersionError(msg)
    if version < 1:
        msg = f"container version {version} is invalid; versions start at 1"
        raise StreamError(msg)


def _section(read_at: ReadAt, start: int, length: int, segment: str) -> bytes | memoryview:
    """Read the ``length`` bytes of a section at ``start`` and its crc32 trailer; check them."""
    return _checked(read_at(start, length + CRC.size), start, segment)


def _checked(data: bytes | memoryview, start: int, segment: str) -> bytes | memoryview:
    """Compare the crc32 trailer of ``data`` (read from offset ``start``); return the section."""
    body = data[: len(data) - CRC.size]
    (expected,) = CRC.unpack_from(data, len(body))
    found = zlib.crc32(body)
    if found != expected:
        msg = (
            f"{segment} at offset {start} ({len(body)} bytes): crc32 0x{found:08x} != stored "
            f"0x{expected:08x}; stream is corrupt"
        )
        raise ChecksumError(
            msg, segment=segment, expected=f"0x{expected:08x}", found=f"0x{found:08x}"
        )
    return body


def _reject_constant(name: str) -> NoReturn:
    """Refuse NaN/Infinity, which ``json`` accepts but JSON (and our writer) does not."""
    msg = f"{name} is not valid JSON"
    raise ValueError(msg)


def _parse_header(data: bytes | memoryview, pos: int) -> dict[str, Any]:
    """Decode the header JSON; any decoding failure is a StreamError naming the offset."""
    try:
        header = json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        msg = f"header at offset {pos} is not UTF-8: {exc.reason} at byte {exc.start}"
        raise StreamError(msg) from exc
    except (ValueError, RecursionError) as exc:
        msg = f"header at offset {pos} is not valid JSON: {exc}"
        raise StreamError(msg) from exc
    if not isinstance(header, dict):
        msg = f"header at offset {pos} must be a JSON object, found {type(header).__name__}"
        raise StreamError(msg)
    return header


def _parse_index(index: np.ndarray, payload_start: int, payload_len: int) -> tuple[ChunkEntry, ...]:
    """Entries of a decoded index; every chunk must lie inside the payload section.

    v1 records carry their offsets. v2 and v3 records do not: their chunks are back to back, so
    their lengths must add up to the payload section exactly.
    """
    limit = np.uint64(payload_len)
    if "offset" in index.dtype.names:
        offset = index["offset"]
    else:
        offset = _offsets(index["length"].astype(np.uint64), payload_start, payload_len)
    start = np.minimum(offset, limit)
    bad = np.flatnonzero((offset > limit) | (index["length"] > limit - start))
    if bad.size:
        i = int(bad[0])
        msg = (
            f"chunk {i}: offset {int(offset[i])} + length {int(index['length'][i])} "
            f"lies outside the payload section ({payload_len} bytes at offset {payload_start})"
        )
        raise StreamError(msg)
    keys = [index[name].tolist() for name in ("plane", "y", "x", "h", "w")]
    rows = zip(
        *keys, offset.tolist(), index["length"].tolist(), index["crc32"].tolist(), strict=True
    )
    return tuple(ChunkEntry(*row) for row in rows)


def _offsets(length: np.ndarray, payload_start: int, payload_len: int) -> np.ndarray:
    """v2/v3 offsets: running sums of the lengths, which must fill the payload section exactly."""
    end = np.cumsum(length, dtype=np.uint64)
    # A wrapped uint64 sum shows as a decrease (each length is below 2**64).
    wrapped = bool((end[1:] < end[:-1]).any()) or bool((length > payload_len).any())
    total = int(end[-1]) if len(end) else 0
    if wrapped or total != payload_len:
        msg = (
            f"chunk lengths do not add up to the payload section ({payload_len} bytes at offset "
            f"{payload_start}); stream is corrupt"
        )
        raise StreamError(msg)
    return end - length
