"""Serialise a header, chunks and metadata into one .llic v3 stream (see ``docs/container.md``)."""

from __future__ import annotations

import json
import operator
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from llic_imaging.container.spec import (
    CRC,
    DIGEST_BYTES,
    FLAGS,
    HEADER_ZDICT_V3,
    INDEX_FIELDS,
    MAGIC,
    MAX_CHUNKS,
    MAX_HEADER_BYTES,
    PRELUDE_V2,
    SHA_BYTES,
    VERSION,
    ChunkKey,
    index_dtype,
)

__all__ = ["write"]

_U32_MAX = 0xFFFFFFFF


def write(
    header: dict[str, Any],
    chunks: Sequence[tuple[ChunkKey, bytes | bytearray | memoryview]],
    *,
    metadata: bytes | bytearray | memoryview = b"",
    array_sha256: bytes,
) -> bytes:
    """Return a complete .llic stream holding ``header``, ``chunks`` and ``metadata``.

    The prelude, the header-index-metadata sections and every chunk get a crc32, and the prelude
    records every section length plus the total stream length, so a reader can validate the whole
    layout before it allocates anything and can detect truncation even when the last chunk
    happens to be intact.

    Parameters
    ----------
    header : dict
        Codec-owned, JSON-able configuration (shape, dtype, model id, ...). It is stored as
        compact UTF-8 JSON with sorted keys (so equal dicts give identical bytes; tuples come
        back as lists), deflated with the format's preset dictionary.
    chunks : sequence of (ChunkKey, bytes)
        Coded chunks in the order the decoder should meet them. Payloads are stored back to back
        in this order; the keys are stored verbatim and not interpreted.
    metadata : bytes, optional
        Opaque bytes (format adapters' envelope), stored verbatim.
    array_sha256 : bytes
        The 32-byte sha256 of the original array; its first 16 bytes are kept for end-to-end
        verification after decode (16 bytes are taken as they are: a re-written container's).

    Returns
    -------
    bytes
        The stream; ``read(write(...))`` gives back the same header, keys, payloads and metadata.

    Raises
    ------
    TypeError
        ``header`` is not a dict or holds a value JSON cannot represent, a key is not a
        ``ChunkKey`` of integers, or a payload, ``metadata`` or ``array_sha256`` is not bytes-like.
    ValueError
        A size is over the container's limits, a key field is outside u32, a header float is NaN or
        infinite, or ``array_sha256`` is neither 32 nor 16 bytes.
    """
    if not isinstance(header, dict):
        msg = f"header must be a dict, got {type(header).__name__}"
        raise TypeError(msg)
    header_bytes = json.dumps(
        header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    if len(header_bytes) > MAX_HEADER_BYTES:
        msg = f"header is {len(header_bytes)} bytes of JSON; the limit is {MAX_HEADER_BYTES}"
        raise ValueError(msg)
    if len(chunks) > MAX_CHUNKS:
        msg = f"{len(chunks)} chunks; the limit is {MAX_CHUNKS}; use larger tiles"
        raise ValueError(msg)
    # memoryview, not bytes(): bytes(32) would silently turn an int into 32 zero bytes.
    sha = memoryview(array_sha256).tobytes()
    if len(sha) not in (SHA_BYTES, DIGEST_BYTES[VERSION]):
        msg = f"array_sha256 must be {SHA_BYTES} bytes (or the {DIGEST_BYTES[VERSION]} a v{VERSION} container keeps), got {len(sha)}"
        raise ValueError(msg)
    metadata = memoryview(metadata).cast("B")

    rows = []
    payloads = []
    for i, (key, payload) in enumerate(chunks):
        if not isinstance(key, ChunkKey):
            msg = f"chunk {i}: key must be a ChunkKey, got {type(key).__name__}"
            raise TypeError(msg)
        fields = tuple(operator.index(v) for v in (key.plane, key.y, key.x, key.h, key.w))
        if not all(0 <= v <= _U32_MAX for v in fields):
            msg = f"chunk {i}: key fields must lie in 0..2**32-1, got {key}"
            raise ValueError(msg)
        data = memoryview(payload).cast("B")
        rows.append((*fields, len(data), zlib.crc32(data)))
        payloads.append(data)

    widths = _widths(rows)
    index_bytes = np.array(rows, dtype=index_dtype(widths)).tobytes() if rows else b""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=HEADER_ZDICT_V3)
    header_z = packer.compress(header_bytes) + packer.flush()
    head = PRELUDE_V2.pack(MAGIC, VERSION, FLAGS, widths)
    varints = b"".join(_varint(n) for n in (len(header_z), len(chunks), len(metadata)))
    digest = sha[: DIGEST_BYTES[VERSION]]
    sections = b"".join((header_z, index_bytes, metadata))
    body_len = len(head) + len(varints) + len(digest) + 2 * CRC.size + len(sections)
    body_len += sum(len(d) for d in payloads)
    total = body_len  # total_len counts its own varint, whose length depends on the total
    while body_len + len(_varint(total)) != total:
        total = body_len + len(_varint(total))
    prelude = head + varints + _varint(total) + digest
    parts = (prelude, CRC.pack(zlib.crc32(prelude)), sections, CRC.pack(zlib.crc32(sections)))
    return b"".join([*parts, *payloads])


def _widths(rows: list[tuple[int, ...]]) -> int:
    """The prelude's widths field: the smallest of 1, 2, 4, 8 bytes that holds each index field."""
    widths = 0
    for i in range(len(INDEX_FIELDS)):
        top = max((r[i] for r in rows), default=0)
        code = next(c for c in range(4) if top < 1 << (8 << c))
        widths |= code << 2 * i
    return widths


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low first, high bit set on every byte but the last."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
