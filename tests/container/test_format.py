"""Tests for the .llic container: round trips, the pinned v1 to v3 layouts, limits, fuzzing."""

from __future__ import annotations

import ast
import hashlib
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llic_imaging.container as container_pkg
from llic_imaging.container import (
    MAGIC,
    VERSION,
    ChunkEntry,
    ChunkKey,
    Container,
    check,
    read,
    write,
)
from llic_imaging.container.spec import (
    CRC,
    HEADER_ZDICT,
    HEADER_ZDICT_V3,
    INDEX_DTYPE,
    PRELUDE,
    PRELUDE_V2,
)
from llic_imaging.errors import ChecksumError, LlicError, StreamError, UnsupportedVersionError

SHA = hashlib.sha256(b"array").digest()
DIGEST = SHA[:16]  # what v3 keeps of it

# Written once by this library's v1 writer; a stream is forever, so never regenerate it.
GOLDEN_V1 = bytes.fromhex(
    "894c4c49430d0a1a0a01000021000000020000000100000000000000c900000000000000000102030405060708"
    "090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f793afd7e7b226474797065223a2275696e7438222c22"
    "7368617065223a5b322c322c335d7d1f1523c700000000000000000000000002000000030000000000000000000000"
    "02000000000000006922de360100000000000000000000000200000003000000020000000000000001000000000000"
    "00000000ffc6f27a766d68f201e10001ff"
)
# The same content written by the v2 writer (zlib 1.2.13 deflated its header). Never regenerate.
GOLDEN_V2 = bytes.fromhex(
    "894c4c49430d0a1a0a02000000000e020168000102030405060708090a0b0c0d0e0f101112131415161718191a1b"
    "1c1d1e1f9043d4cd43d56181a4c148c748c738b61600ac5e13f10000000203026922de36010000020301000000ff"
    "d729f7306d68f201e10001ff"
)
# The same content written by the v3 writer (zlib 1.2.13 deflated its header). Never regenerate.
GOLDEN_V3 = bytes.fromhex(
    "894c4c49430d0a1a0a03000000000e020150000102030405060708090a0b0c0d0e0f8030868d4395b2409231d231"
    "d2318ead05000000000203026922de36010000020301000000ff6d4fbfef580001ff"
)
GOLDEN_ZLIB = "1.2.13"


def realistic(seed: int = 0) -> tuple[dict, list[tuple[ChunkKey, bytes]], bytes, bytes]:
    """Header, chunks, metadata and stream of a small two-plane container with random payloads."""
    rng = np.random.default_rng(seed)
    header = {
        "shape": [2, 64, 48],
        "dtype": "uint16",
        "bits_stored": 12,
        "model": "hpac-small-v1",
        "model_sha256": "ab" * 32,
        "tile": [32, 48],
    }
    chunks = [
        (
            ChunkKey(p, y, 0, 32, 48),
            rng.integers(0, 256, int(rng.integers(1, 120)), np.uint8).tobytes(),
        )
        for p in range(2)
        for y in (0, 32)
    ]
    metadata = rng.integers(0, 256, 57, np.uint8).tobytes()
    return header, chunks, metadata, write(header, chunks, metadata=metadata, array_sha256=SHA)


def leb128(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


def sections(stream: bytes) -> dict[str, int]:
    """Start offsets of a v2 or v3 stream's header, index, metadata and payload sections,
    decoded from the prelude as docs/container.md says (independently of the reader)."""
    pos, values = PRELUDE_V2.size, []
    _, version, _, widths = PRELUDE_V2.unpack_from(stream)
    for _ in range(4):
        value, shift = 0, 0
        while True:
            byte = stream[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        values.append(value)
    header_len, n_chunks, metadata_len, _ = values
    record = sum(1 << ((widths >> 2 * i) & 3) for i in range(6)) + 4
    crc = CRC.size if version == 2 else 0  # v3: one crc32 after the metadata
    out = {"header": pos + (32 if version == 2 else 16) + CRC.size}
    out["index"] = out["header"] + header_len + crc
    out["metadata"] = out["index"] + n_chunks * record + crc
    out["payload"] = out["metadata"] + metadata_len + CRC.size
    return out


def deflate(header: bytes, version: int = 3) -> bytes:
    packer = zlib.compressobj(
        9, zlib.DEFLATED, -15, zdict=HEADER_ZDICT if version == 2 else HEADER_ZDICT_V3
    )
    return packer.compress(header) + packer.flush()


def assemble(fields: dict, header: bytes, index: bytes, metadata: bytes, payload: bytes) -> bytes:
    """Build a v1 stream by hand with valid crc32s, to forge streams the writer would refuse."""
    prelude = {
        "magic": MAGIC,
        "version": 1,
        "flags": 0,
        "header_len": len(header),
        "n_chunks": len(index) // INDEX_DTYPE.itemsize,
        "metadata_len": len(metadata),
        "total_len": PRELUDE.size + len(header) + len(index) + len(metadata) + 16 + len(payload),
        "sha": SHA,
    }
    prelude.update(fields)
    parts = [PRELUDE.pack(*prelude.values()), header, index, metadata]
    return b"".join(p + CRC.pack(zlib.crc32(p)) for p in parts) + payload


def assemble_v2(
    fields: dict,
    header: bytes,
    rows: list[tuple[int, ...]],
    metadata: bytes,
    payload: bytes,
    *,
    widths: int = 0,
    version: int = 3,
) -> bytes:
    """Build a v2 or v3 stream by hand with valid crc32s: ``header`` is stored as given (deflate
    it first for a valid one), ``rows`` are (plane, y, x, h, w, length, crc32) with 1-byte fields
    unless ``widths`` says otherwise; ``fields`` override prelude values (varints may be raw
    bytes)."""
    dtype = np.dtype(
        [(f"f{i}", f"<u{1 << ((widths >> 2 * i) & 3)}") for i in range(6)] + [("crc", "<u4")]
    )
    index = np.array(rows, dtype=dtype).tobytes() if rows else b""
    varints = {"header_len": len(header), "n_chunks": len(rows), "metadata_len": len(metadata)}
    varints |= {k: v for k, v in fields.items() if k in varints}
    head = PRELUDE_V2.pack(MAGIC, version, fields.get("flags", 0), widths)
    coded = b"".join(v if isinstance(v, bytes) else leb128(v) for v in varints.values())
    sha = fields.get("sha", SHA)[: 32 if version == 2 else 16]
    parts = [header, index, metadata] if version == 2 else [header + index + metadata]
    size = len(head) + len(coded) + len(sha) + sum(len(p) + 4 for p in parts) + 4 + len(payload)
    total = fields.get("total_len", size + len(leb128(size + 1)))
    prelude = head + coded + (total if isinstance(total, bytes) else leb128(total)) + sha
    return b"".join(p + CRC.pack(zlib.crc32(p)) for p in [prelude, *parts]) + payload


def index_of(*rows: tuple[int, ...]) -> bytes:
    return np.array(list(rows), dtype=INDEX_DTYPE).tobytes()


# -- round trips ---------------------------------------------------------------------------------


def test_round_trip() -> None:
    header, chunks, metadata, stream = realistic()
    c = read(stream)
    assert isinstance(c, Container)
    assert c.version == VERSION
    assert c.header == header
    assert c.metadata == metadata
    assert c.array_sha256 == DIGEST
    assert c.nbytes == len(stream)
    assert [e.key for e in c.chunks] == [k for k, _ in chunks]
    assert [c.payload(i) for i in range(len(chunks))] == [p for _, p in chunks]
    assert all(isinstance(e, ChunkEntry) and isinstance(e, ChunkKey) for e in c.chunks)


def test_empty_metadata_and_no_chunks() -> None:
    stream = write({}, [], array_sha256=SHA)
    c = read(stream)
    assert (c.header, c.chunks, c.metadata, c.select(), c.select(0)) == ({}, (), b"", [], [])
    assert len(stream) == sections(stream)["payload"] == 46


def test_write_accepts_bytes_like() -> None:
    chunks = [
        (ChunkKey(0, 0, 0, 1, 1), np.arange(3, dtype="<u2")),
        (ChunkKey(0, 0, 1, 1, 1), bytearray(b"ab")),
    ]
    stream = write({}, chunks, metadata=memoryview(b"meta"), array_sha256=bytearray(SHA))
    c = read(stream)
    assert (c.payload(0), c.payload(1), c.metadata) == (b"\0\0\1\0\2\0", b"ab", b"meta")


def test_empty_payload_chunk() -> None:
    c = read(write({"a": 1}, [(ChunkKey(0, 0, 0, 1, 1), b"")], array_sha256=SHA))
    assert c.payload(0) == b""


def test_many_chunks_and_select() -> None:
    keys = [
        ChunkKey(p, y, x, 8, 8)
        for p in range(5)
        for y in range(0, 160, 8)
        for x in range(0, 320, 8)
    ]
    chunks = [(k, k.plane.to_bytes(1, "little") * (k.x % 7)) for k in keys]
    c = read(write({"n": len(keys)}, chunks, array_sha256=SHA))
    assert len(c.chunks) == len(keys) == 4000
    assert c.select() == list(range(len(keys)))
    assert c.select(3) == [i for i, k in enumerate(keys) if k.plane == 3]
    assert c.select(9) == []
    assert all(c.payload(i) == chunks[i][1] for i in c.select(3))


def test_select_keeps_stored_order() -> None:
    order = [ChunkKey(1, 0, 0, 2, 2), ChunkKey(0, 0, 0, 2, 2), ChunkKey(1, 2, 0, 2, 2)]
    c = read(write({}, [(k, b"x") for k in order], array_sha256=SHA))
    assert c.select(1) == [0, 2]
    assert c.select(0) == [1]


@pytest.mark.parametrize("kind", [bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)])
def test_read_accepts_bytes_like(kind) -> None:
    header, chunks, metadata, stream = realistic()
    c = read(kind(stream))
    assert c == read(stream)
    assert c.payload(1) == chunks[1][1]


def test_header_is_canonical_json() -> None:
    a = write({"b": 1, "a": [1, 2], "é": "ü"}, [], array_sha256=SHA)
    b = write({"é": "ü", "a": (1, 2), "b": 1}, [], array_sha256=SHA)
    assert a == b
    assert deflate('{"a":[1,2],"b":1,"é":"ü"}'.encode()) in a


# -- the pinned v1 layout ------------------------------------------------------------------------


def test_golden_v1_stream_reads() -> None:
    c = read(GOLDEN_V1)
    assert c.header == {"dtype": "uint8", "shape": [2, 2, 3]}
    assert c.chunks == (
        ChunkEntry(0, 0, 0, 2, 3, offset=0, length=2, crc32=zlib.crc32(b"\x00\x01")),
        ChunkEntry(1, 0, 0, 2, 3, offset=2, length=1, crc32=zlib.crc32(b"\xff")),
    )
    assert (c.payload(0), c.payload(1), c.metadata) == (b"\x00\x01", b"\xff", b"m")
    assert c.array_sha256 == bytes(range(32))


def test_golden_v2_and_v3_streams_read_like_v1() -> None:
    v1, v2, v3 = read(GOLDEN_V1), read(GOLDEN_V2), read(GOLDEN_V3)
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    for c in (v2, v3):
        assert (c.header, c.chunks, c.metadata) == (v1.header, v1.chunks, v1.metadata)
        assert (c.payload(0), c.payload(1)) == (b"\x00\x01", b"\xff")
    assert v2.array_sha256 == v1.array_sha256 == bytes(range(32))
    assert v3.array_sha256 == bytes(range(16))
    assert len(GOLDEN_V3) == 80 < len(GOLDEN_V2) == 104 < len(GOLDEN_V1) == 201


def test_writer_reproduces_golden_and_hand_assembly() -> None:
    chunks = [(ChunkKey(0, 0, 0, 2, 3), b"\x00\x01"), (ChunkKey(1, 0, 0, 2, 3), b"\xff")]
    header = {"dtype": "uint8", "shape": [2, 2, 3]}
    stream = write(header, chunks, metadata=b"m", array_sha256=bytes(range(32)))
    assert stream[: len(MAGIC)] == MAGIC
    assert stream[9:11] == VERSION.to_bytes(2, "little") == b"\x03\x00"
    assert read(stream) == read(GOLDEN_V3)
    if zlib.ZLIB_RUNTIME_VERSION != GOLDEN_ZLIB:
        pytest.skip(
            f"deflate output of zlib {zlib.ZLIB_RUNTIME_VERSION} may differ from {GOLDEN_ZLIB}"
        )
    assert stream == GOLDEN_V3
    # The v3 layout by hand: head, varints (header 14, 2 chunks, metadata 1, total 80), the
    # first 16 bytes of the sha256, crc; then header, index and metadata under one crc32.
    header_z = deflate(b'{"dtype":"uint8","shape":[2,2,3]}')
    assert len(header_z) == 14
    rows = [(0, 0, 0, 2, 3, 2, zlib.crc32(b"\x00\x01")), (1, 0, 0, 2, 3, 1, zlib.crc32(b"\xff"))]
    sha = {"sha": bytes(range(32))}
    assert assemble_v2(sha, header_z, rows, b"m", b"\x00\x01\xff") == stream
    # The v2 layout: the whole sha256, v2's dictionary, a crc32 after each section.
    header_z = deflate(b'{"dtype":"uint8","shape":[2,2,3]}', version=2)
    by_hand = assemble_v2(sha, header_z, rows, b"m", b"\x00\x01\xff", version=2)
    if zlib.ZLIB_RUNTIME_VERSION == GOLDEN_ZLIB:
        assert by_hand == GOLDEN_V2


def test_v1_writer_layout_still_reads() -> None:
    by_hand = assemble(
        {"sha": bytes(range(32))},
        b'{"dtype":"uint8","shape":[2,2,3]}',
        index_of(
            (0, 0, 0, 2, 3, 0, 2, zlib.crc32(b"\x00\x01")),
            (1, 0, 0, 2, 3, 2, 1, zlib.crc32(b"\xff")),
        ),
        b"m",
        b"\x00\x01\xff",
    )
    assert by_hand == GOLDEN_V1


def test_container_imports_only_errors() -> None:
    for path in Path(container_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("llic_imaging"):
                    assert name == "llic_imaging.errors" or name.startswith(
                        "llic_imaging.container"
                    ), (path, name)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\x89LLI", b"GIF89a" + bytes(100), b"\x89PNG\r\n\x1a\n" + bytes(80)]
)
def test_not_llic(data: bytes) -> None:
    with pytest.raises(StreamError):
        read(data)


def test_wrong_magic_message() -> None:
    with pytest.raises(StreamError, match="not an LLIC stream"):
        read(b"PK\x03\x04" + bytes(100))


def test_version_too_new() -> None:
    stream = assemble({"version": 7}, b"{}", b"", b"", b"")
    with pytest.raises(
        UnsupportedVersionError,
        match=r"container version 7 is newer than this library \(3\); upgrade llic-imaging",
    ):
        read(stream)
    # A newer layout may be shorter than any known prelude; the version still decides the error.
    with pytest.raises(UnsupportedVersionError):
        read(stream[:12])


def test_version_zero() -> None:
    with pytest.raises(StreamError, match="version 0 is invalid"):
        read(assemble({"version": 0}, b"{}", b"", b"", b""))


def test_flags_set() -> None:
    with pytest.raises(StreamError, match="flags 0x04"):
        read(assemble({"flags": 4}, b"{}", b"", b"", b""))


def test_trailing_bytes() -> None:
    with pytest.raises(StreamError, match="trailing bytes"):
        read(realistic()[3] + b"\0")


def test_truncated_at_chunk_boundary() -> None:
    header, chunks, metadata, stream = realistic()
    with pytest.raises(StreamError, match="truncated"):
        read(stream[: -len(chunks[-1][1])])


@pytest.mark.parametrize(
    ("fields", "header", "match"),
    [
        ({"header_len": (1 << 20) + 1}, b"{}", "header length"),
        ({"n_chunks": (1 << 24) + 1}, b"{}", "chunk count"),
        ({"metadata_len": 1 << 40}, b"{}", "overrun"),
        ({"n_chunks": 3}, b"{}", "overrun"),
        ({}, b"[1, 2]", "must be a JSON object"),
        ({}, b'{"a": 1', "not valid JSON"),
        ({}, b'{"a": NaN}', "not valid JSON"),
        ({}, b"[" * 100_000, "not valid JSON"),
        ({}, b'{"a": "\xff"}', "not UTF-8"),
    ],
)
def test_forged_prelude_and_header(fields: dict, header: bytes, match: str) -> None:
    """Streams with valid crc32s but lengths or contents the spec forbids are StreamErrors."""
    with pytest.raises(StreamError, match=match):
        read(assemble(fields, header, b"", b"", b""))


@pytest.mark.parametrize(
    "row",
    [
        (0, 0, 0, 1, 1, 9, 2, 0),
        (0, 0, 0, 1, 1, 0, 11, 0),
        (0, 0, 0, 1, 1, 2**64 - 1, 2, 0),
        (0, 0, 0, 1, 1, 5, 2**64 - 2, 0),
    ],
)
def test_forged_chunk_out_of_range(row: tuple[int, ...]) -> None:
    with pytest.raises(StreamError, match="outside the payload section"):
        read(assemble({}, b"{}", index_of(row), b"", bytes(10)))


def _bomb() -> bytes:
    return deflate(b'{"a":"' + b"x" * (1 << 21) + b'"}')


@pytest.mark.parametrize(
    ("fields", "header", "match"),
    [
        ({"header_len": b"\x80" * 10 + b"\x00"}, deflate(b"{}"), "not a valid varint"),
        ({"n_chunks": b"\xff" * 9 + b"\x02"}, deflate(b"{}"), "not a valid varint"),
        ({"flags": 4}, deflate(b"{}"), "flags 0x04"),
        ({"total_len": 1 << 40}, deflate(b"{}"), "truncated"),
        ({"header_len": (1 << 20) + 1}, deflate(b"{}"), "header length"),
        ({"metadata_len": 1 << 40}, deflate(b"{}"), "overrun"),
        ({}, b"\xff\xff", "not valid deflate"),
        ({}, deflate(b"{}") + b"junk", "does not inflate"),
        ({}, deflate(b"{}")[:-1], "does not inflate"),
        ({}, _bomb(), "does not inflate"),
        ({}, deflate(b"[1]"), "must be a JSON object"),
    ],
)
def test_forged_v2_prelude_and_header(fields: dict, header: bytes, match: str) -> None:
    with pytest.raises(StreamError, match=match):
        read(assemble_v2(fields, header, [], b"", b""))


def test_forged_v2_widths() -> None:
    with pytest.raises(StreamError, match="undefined bits"):
        read(assemble_v2({}, deflate(b"{}"), [], b"", b"", widths=1 << 12))


@pytest.mark.parametrize(
    ("lengths", "payload"),
    [((2, 2), 3), ((2, 2), 5), ((0, 0), 1), ((2**64 - 1, 4), 3), ((1, 2**64 - 1), 0)],
)
def test_forged_v2_lengths_must_fill_the_payload(lengths: tuple[int, int], payload: int) -> None:
    rows = [(0, 0, 0, 1, 1, n, 0) for n in lengths]
    stream = assemble_v2({}, deflate(b"{}"), rows, b"", bytes(payload), widths=3 << 10)
    with pytest.raises(StreamError, match="do not add up"):
        read(stream)


def test_v2_prelude_truncation() -> None:
    stream = write({}, [], array_sha256=SHA)
    for cut in range(12, sections(stream)["header"]):
        with pytest.raises(StreamError, match="truncated"):
            read(stream[:cut])


def test_wide_index_fields_round_trip() -> None:
    keys = [ChunkKey(2**32 - 1, 70_000, 255, 256, 1), ChunkKey(0, 0, 2**16, 1, 2**31)]
    c = read(write({}, [(k, b"ab") for k in keys], array_sha256=SHA))
    assert [e.key for e in c.chunks] == keys
    assert [(e.offset, e.length) for e in c.chunks] == [(0, 2), (2, 2)]


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("section", ["prelude", "header", "index", "metadata"])
def test_checksum_error_names_segment(version: int, section: str) -> None:
    """v2 names the section whose crc32 failed; v3 has one crc32 for header, index and metadata."""
    rows = [(0, 0, 0, 1, 1, 1, zlib.crc32(b"a"))]
    stream = bytearray(
        assemble_v2({}, deflate(b'{"abc":1}', version), rows, b"xyz", b"a", version=version)
    )
    stream[20 if section == "prelude" else sections(bytes(stream))[section] + 1] ^= 0x10
    with pytest.raises(ChecksumError) as info:
        read(stream)
    expected = section if version == 2 or section == "prelude" else "sections"
    assert info.value.segment == expected
    assert info.value.expected != info.value.found
    assert info.value.expected.startswith("0x")


def test_payload_checksum() -> None:
    header, chunks, metadata, stream = realistic()
    bad = bytearray(stream)
    bad[-1] ^= 0x80
    c = read(bad)
    assert c.payload(0) == chunks[0][1]
    with pytest.raises(ChecksumError, match="chunk 3") as info:
        c.payload(3)
    assert info.value.segment == "chunk 3"
    assert info.value.expected == f"0x{zlib.crc32(chunks[3][1]):08x}"


def test_payload_index_out_of_range() -> None:
    c = read(realistic()[3])
    with pytest.raises(IndexError):
        c.payload(4)
    with pytest.raises(IndexError):
        c.payload(-1)


def test_read_rejects_non_buffer() -> None:
    with pytest.raises(TypeError):
        read("\x89LLIC")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        None,
        "\x89LLIC\r\n\x1a\n",
        42,
        [1, 2],
        object(),
        b"",
        b"garbage!!",
        MAGIC[:-1],
        np.zeros((3, 3), order="F")[:, ::2],
    ],
)
def test_check_false(data: object) -> None:
    assert check(data) is False


@pytest.mark.parametrize(
    "data", [MAGIC, realistic()[3], bytearray(MAGIC + b"xx"), memoryview(MAGIC)]
)
def test_check_true(data: object) -> None:
    assert check(data) is True


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"header": [1]}, TypeError),
        ({"header": {"a": float("nan")}}, ValueError),
        ({"header": {"a": object()}}, TypeError),
        ({"header": {"a": "x" * (1 << 20)}}, ValueError),
        ({"array_sha256": b"short"}, ValueError),
        ({"array_sha256": 32}, TypeError),
        ({"metadata": 5}, TypeError),
        ({"chunks": [(ChunkKey(0, 0, 0, 1, 1), 3)]}, TypeError),
        ({"chunks": [(ChunkKey(-1, 0, 0, 1, 1), b"")]}, ValueError),
        ({"chunks": [(ChunkKey(0, 2**32, 0, 1, 1), b"")]}, ValueError),
        ({"chunks": [(ChunkKey(0, 0.5, 0, 1, 1), b"")]}, TypeError),
        ({"chunks": [((0, 0, 0, 1, 1), b"")]}, TypeError),
    ],
)
def test_write_rejects_bad_arguments(kwargs: dict, exc: type[Exception]) -> None:
    args = {"header": {}, "chunks": [], "array_sha256": SHA} | kwargs
    with pytest.raises(exc):
        write(args.pop("header"), args.pop("chunks"), **args)


# -- fuzzing -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_fuzz_truncation() -> None:
    header, chunks, metadata, stream = realistic(1)
    start = sections(stream)["payload"]
    cuts = list(range(start)) + list(range(start, len(stream), 7)) + [len(stream) - 1]
    for cut in cuts:
        with pytest.raises(StreamError):
            read(stream[:cut])
    assert read(stream) == read(bytes(stream))


@pytest.mark.timeout(60)
def test_fuzz_byte_flips() -> None:
    """Every single-byte change is caught: by ``read`` before the payloads, by ``payload`` inside.

    Each position is flipped once, then 2000 more random (position, mask) pairs.
    """
    header, chunks, metadata, stream = realistic(2)
    reference = read(stream)
    start = sections(stream)["payload"]
    spans = [(start + e.offset, start + e.offset + e.length) for e in reference.chunks]
    rng = np.random.default_rng(1234)
    positions = np.concatenate([np.arange(len(stream)), rng.integers(0, len(stream), 2000)])
    for pos, mask in zip(positions, rng.integers(1, 256, positions.size), strict=True):
        bad = bytearray(stream)
        bad[pos] ^= int(mask)
        if pos < start:
            with pytest.raises(LlicError):
                read(bad)
            continue
        c = read(bad)
        assert c == reference
        for i, (lo, hi) in enumerate(spans):
            if lo <= pos < hi:
                with pytest.raises(ChecksumError):
                    c.payload(i)
            else:
                assert c.payload(i) == chunks[i][1]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
u32 = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(
    header=st.dictionaries(st.text(), json_values, max_size=6),
    chunks=st.lists(
        st.tuples(st.builds(ChunkKey, u32, u32, u32, u32, u32), st.binary(max_size=64)), max_size=8
    ),
    metadata=st.binary(max_size=64),
    sha=st.binary(min_size=32, max_size=32),
)
def test_hypothesis_round_trip(header: dict, chunks: list, metadata: bytes, sha: bytes) -> None:
    c = read(write(header, chunks, metadata=metadata, array_sha256=sha))
    assert c.header == header
    assert [e.key for e in c.chunks] == [k for k, _ in chunks]
    assert [c.payload(i) for i in range(len(chunks))] == [p for _, p in chunks]
    assert (c.metadata, c.array_sha256) == (metadata, sha[:16])


@settings(max_examples=200, deadline=None)
@given(
    tail=st.binary(max_size=200),
    prefix=st.sampled_from([b"", MAGIC, MAGIC + b"\x01\x00", MAGIC + b"\x02\x00\x00\x00\x00"]),
)
def test_hypothesis_garbage_raises_only_stream_errors(tail: bytes, prefix: bytes) -> None:
    with pytest.raises(StreamError):
        read(prefix + tail)


def test_json_header_limit_is_on_encoded_bytes() -> None:
    """Non-ASCII text is stored as UTF-8, so the 1 MiB limit counts encoded bytes."""
    text = "é" * ((1 << 19) - 4)  # {"t":"..."} is then exactly 1 MiB
    stream = write({"t": text}, [], array_sha256=SHA)
    assert read(stream).header == {"t": text}
    with pytest.raises(ValueError, match="limit"):
        write({"t": text + "é"}, [], array_sha256=SHA)
