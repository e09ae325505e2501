"""Serialise a header, chunks and metadata into one .llic v1 stream (see ``docs/container.md``)."""

from __future__ import annotations

import json
import operator
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from llic_imaging.container.spec import (
    CRC,
    FLAGS,
    INDEX_DTYPE,
    MAGIC,
    MAX_CHUNKS,
    MAX_HEADER_BYTES,
    PRELUDE,
    VERSION,
    ChunkKey,
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

    Every section gets its own crc32 and the prelude records every section length plus the total
    stream length, so a reader can validate the whole layout before it allocates anything and can
    detect truncation even when the last chunk happens to be intact.

    Parameters
    ----------
    header : dict
        Codec-owned, JSON-able configuration (shape, dtype, model id, ...). It is stored as
        compact UTF-8 JSON with sorted keys, so equal dicts give identical bytes; tuples come back
        as lists.
    chunks : sequence of (ChunkKey, bytes)
        Coded chunks in the order the decoder should meet them. Payloads are stored back to back
        in this order; the keys are stored verbatim and not interpreted.
    metadata : bytes, optional
        Opaque bytes (format adapters' envelope), stored verbatim.
    array_sha256 : bytes
        The 32-byte sha256 of the original array, kept for end-to-end verification after decode.

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
        A size is over the v1 limits, a key field is outside u32, a header float is NaN or
        infinite, or ``array_sha256`` is not 32 bytes.
    """
    if not isinstance(header, dict):
        msg = f"header must be a dict, got {type(header).__name__}"
        raise TypeError(msg)
    header_bytes = json.dumps(
        header, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    if len(header_bytes) > MAX_HEADER_BYTES:
        msg = f"header is {len(header_bytes)} bytes of JSON; the v1 limit is {MAX_HEADER_BYTES}"
        raise ValueError(msg)
    if len(chunks) > MAX_CHUNKS:
        msg = f"{len(chunks)} chunks; the v1 limit is {MAX_CHUNKS}; use larger tiles"
        raise ValueError(msg)
    # memoryview, not bytes(): bytes(32) would silently turn an int into 32 zero bytes.
    sha = memoryview(array_sha256).tobytes()
    if len(sha) != 32:
        msg = f"array_sha256 must be 32 bytes, got {len(sha)}"
        raise ValueError(msg)
    metadata = memoryview(metadata).cast("B")

    index = np.zeros(len(chunks), dtype=INDEX_DTYPE)
    payloads = []
    offset = 0
    for i, (key, payload) in enumerate(chunks):
        if not isinstance(key, ChunkKey):
            msg = f"chunk {i}: key must be a ChunkKey, got {type(key).__name__}"
            raise TypeError(msg)
        fields = tuple(operator.index(v) for v in (key.plane, key.y, key.x, key.h, key.w))
        if not all(0 <= v <= _U32_MAX for v in fields):
            msg = f"chunk {i}: key fields must lie in 0..2**32-1, got {key}"
            raise ValueError(msg)
        data = memoryview(payload).cast("B")
        index[i] = (*fields, offset, len(data), zlib.crc32(data))
        payloads.append(data)
        offset += len(data)

    index_bytes = index.tobytes()
    body_len = PRELUDE.size + len(header_bytes) + len(index_bytes) + len(metadata) + 4 * CRC.size
    prelude = PRELUDE.pack(
        MAGIC,
        VERSION,
        FLAGS,
        len(header_bytes),
        len(chunks),
        len(metadata),
        body_len + offset,
        sha,
    )
    sections = (prelude, header_bytes, index_bytes, metadata)
    return b"".join([part for s in sections for part in (s, CRC.pack(zlib.crc32(s)))] + payloads)
