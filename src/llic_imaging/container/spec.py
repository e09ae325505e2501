"""Byte layout of the .llic container, v1: constants, field structs, limits and index records.

Pure constants that mirror ``docs/container.md``; change both together and bump ``VERSION``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CRC",
    "FLAGS",
    "INDEX_DTYPE",
    "MAGIC",
    "MAX_CHUNKS",
    "MAX_HEADER_BYTES",
    "PRELUDE",
    "VERSION",
    "VERSION_FIELD",
    "VERSION_OFFSET",
    "ChunkEntry",
    "ChunkKey",
]

#: PNG-style signature: the high bit catches 7-bit transports, CR LF / LF catch newline
#: translation, and ^Z stops ``type`` on Windows.
MAGIC = b"\x89LLIC\r\n\x1a\n"

#: Container layout version written by this library; readers accept 1..VERSION.
VERSION = 1

#: No flags are defined in v1 (one u8); a reader rejects any set bit rather than guess its meaning.
FLAGS = 0

#: Fixed prelude: magic (9), version u16, flags u8, header_len u32, n_chunks u32, metadata_len u64,
#: total_len u64, array_sha256 (32): 68 bytes, every field after the version 4-byte aligned.
PRELUDE = struct.Struct("<9sHBIIQQ32s")

#: Magic and the u16 version keep these offsets in every future version, so that an old reader
#: can always tell "too new" from "corrupt".
VERSION_FIELD = struct.Struct("<H")
VERSION_OFFSET = len(MAGIC)

#: Trailer of each section (prelude, header, index, metadata): crc32 of the section's bytes.
CRC = struct.Struct("<I")

#: One index record, 40 bytes, packed little-endian; offsets are relative to the payload section.
INDEX_DTYPE = np.dtype(
    [
        ("plane", "<u4"),
        ("y", "<u4"),
        ("x", "<u4"),
        ("h", "<u4"),
        ("w", "<u4"),
        ("offset", "<u8"),
        ("length", "<u8"),
        ("crc32", "<u4"),
    ]
)

#: The header is small codec configuration; the cap keeps a forged length from forcing a
#: large allocation or a slow JSON parse.
MAX_HEADER_BYTES = 1 << 20

#: 16.7 M chunks is far beyond any tiling of a 2**32 x 2**32 stack we expect, and bounds the
#: index at 640 MiB before it is even compared against the stream length.
MAX_CHUNKS = 1 << 24


@dataclass(frozen=True)
class ChunkKey:
    """Where a chunk's pixels sit: plane index of an (N, H, W) stack, tile origin and size.

    The container stores these numbers as u32 and never interprets them; the codec checks
    them against the shape in its header.
    """

    plane: int
    y: int
    x: int
    h: int
    w: int


@dataclass(frozen=True)
class ChunkEntry(ChunkKey):
    """A chunk's key plus where its bytes are: ``offset``/``length`` within the payload section.

    ``crc32`` covers the chunk's bytes alone so that one plane can be decoded and verified
    without reading the others.
    """

    offset: int
    length: int
    crc32: int

    @property
    def key(self) -> ChunkKey:
        """The position part of the entry, comparable with the keys given to ``write``."""
        return ChunkKey(self.plane, self.y, self.x, self.h, self.w)
