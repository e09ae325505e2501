"""Byte layout of the .llic container, v1 to v3: constants, field structs, limits, index records.

Pure constants (and one dtype builder) that mirror ``docs/container.md``; change both together and
bump ``VERSION``. Writers write ``VERSION``; readers read every version from 1 up to it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CRC",
    "FLAGS",
    "DIGEST_BYTES",
    "HEADER_ZDICT",
    "HEADER_ZDICT_V3",
    "INDEX_DTYPE",
    "INDEX_FIELDS",
    "MAGIC",
    "MAX_CHUNKS",
    "MAX_HEADER_BYTES",
    "MAX_VARINT_BYTES",
    "PRELUDE",
    "PRELUDE_V2",
    "PRELUDE_V2_MAX",
    "SHA_BYTES",
    "VERSION",
    "VERSION_FIELD",
    "VERSION_OFFSET",
    "ChunkEntry",
    "ChunkKey",
    "index_dtype",
]

#: PNG-style signature: the high bit catches 7-bit transports, CR LF / LF catch newline
#: translation, and ^Z stops ``type`` on Windows.
MAGIC = b"\x89LLIC\r\n\x1a\n"

#: Container layout version written by this library; readers accept 1..VERSION.
VERSION = 3

#: No flags are defined in v1 to v3 (one u8); a reader rejects any set bit rather than guess.
FLAGS = 0

#: The writer takes the array's full sha256; v1 and v2 store all of it.
SHA_BYTES = 32

#: Bytes of the array's sha256 each version stores. v3 keeps the first 16 (128 bits): the
#: digest guards against decoder faults and wrong weights, not against an attacker (who could
#: write any digest), and 2**-128 is as unreachable as 2**-256 for that; the 16 bytes are 0.5 %
#: of an 8-bit CT slice's stream.
DIGEST_BYTES = {1: SHA_BYTES, 2: SHA_BYTES, 3: 16}

#: v1 fixed prelude: magic (9), version u16, flags u8, header_len u32, n_chunks u32,
#: metadata_len u64, total_len u64, array_sha256 (32): 68 bytes.
PRELUDE = struct.Struct("<9sHBIIQQ32s")

#: v2 and v3 prelude head: magic (9), version u16, flags u8, index field widths u16. Four LEB128
#: varints follow (header_len, n_chunks, metadata_len, total_len), then the array digest
#: (``DIGEST_BYTES``) and the prelude crc32. v2 exists to make small images cheap: a one-tile
#: plane's container costs 171 bytes instead of v1's 349, which is 0.02 bps on a 256 x 256
#: slice; v3 takes another ~30 bytes off (digest, one crc32 for the sections, dictionary).
PRELUDE_V2 = struct.Struct("<9sHBH")

#: A u64 takes at most 10 LEB128 bytes; longer runs of continuation bits are corrupt.
MAX_VARINT_BYTES = 10

#: Upper bound of the v2/v3 prelude with its crc32: what a reader fetches before parsing it.
PRELUDE_V2_MAX = PRELUDE_V2.size + 4 * MAX_VARINT_BYTES + SHA_BYTES + 4

#: Magic and the u16 version keep these offsets in every future version, so that an old reader
#: can always tell "too new" from "corrupt".
VERSION_FIELD = struct.Struct("<H")
VERSION_OFFSET = len(MAGIC)

#: Trailer of each section (v1, v2: prelude, header, index, metadata; v3: prelude, then the
#: header, index and metadata together): crc32 of the section's bytes.
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

#: v2 index record fields before the crc32, in stored order. Each field takes 1, 2, 4 or 8 bytes,
#: the same for every record of a stream: 2 bits per field in the prelude's widths (field i in
#: bits 2i..2i+1, width 2**code bytes; bits 12-15 zero). Offsets are not stored: payloads are
#: back to back, so a chunk starts where the previous one ends.
INDEX_FIELDS = ("plane", "y", "x", "h", "w", "length")

#: v2 stores the header JSON as raw deflate (RFC 1951) primed with this dictionary. Frozen: it
#: is part of the v2 format (a header without these strings still works, it just compresses
#: less). It holds what every codec header has, so a typical header costs ~80 bytes, most of
#: them the model's sha256.
HEADER_ZDICT = (
    b'{"codec":"hpac","context":1,"format":1,"level":1,"model":"hpac-small-v3-b2",'
    b'"model_sha256":"","patch":32,"spec":{"dtype":"uint16","shape":[1,512,512]},"tile":256}'
)

#: v3's dictionary, frozen with v3. Deflate finds the longest match nearest the end of the
#: dictionary cheapest, so it ends with the header prefixes the codec writes most (sorted keys:
#: codec, context, format, level, model, model_sha256, patch, ...). A one-plane 8-bit header
#: deflates to ~37 bytes instead of ~51 with v2's.
HEADER_ZDICT_V3 = (
    b'"model":"hpac-lite-v2","plane_sha256":["'
    b'{"codec":"hpac","context":4,"format":3,"level":1,"model":"hpac-small-v5-med8","model_sha256":"'
    b'","patch":128,"spec":{"dtype":"int16","shape":[1,512,512]},"tile":256}'
    b'{"codec":"hpac","format":3,"level":1,"model":"hpac-small-v5","model_sha256":"'
    b'","patch":64,"spec":{"dtype":"uint16","shape":['
)

#: The header is small codec configuration; the cap keeps a forged length from forcing a
#: large allocation or a slow JSON parse.
MAX_HEADER_BYTES = 1 << 20


def index_dtype(widths: int) -> np.dtype:
    """The packed v2 index record for a prelude ``widths`` value (validated by the caller)."""
    return np.dtype(
        [(name, f"<u{1 << ((widths >> 2 * i) & 3)}") for i, name in enumerate(INDEX_FIELDS)]
        + [("crc32", "<u4")]
    )


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
