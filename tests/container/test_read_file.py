"""``read_file``: the same parser as ``read`` over a seekable file, reading payloads on demand."""

from __future__ import annotations

import io

import numpy as np
import pytest
from test_format import DIGEST, SHA, realistic, sections

from llic_imaging.container import ChunkKey, read, read_file, write
from llic_imaging.container.spec import PRELUDE_V2_MAX
from llic_imaging.errors import ChecksumError, LlicError, StreamError


class CountingFile(io.BytesIO):
    """A file that records the bytes each ``read`` returns."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def outcome(parse, data: bytes) -> tuple[str, str]:
    """``(error class, message)`` of parsing ``data``, or ``("ok", "")``."""
    try:
        parse(data)
    except LlicError as exc:
        return type(exc).__name__, str(exc)
    return "ok", ""


def from_file(data: bytes):
    return read_file(io.BytesIO(data))


def test_round_trip_matches_read() -> None:
    header, chunks, metadata, stream = realistic()
    c = from_file(stream)
    assert c == read(stream)
    assert (c.header, c.metadata, c.array_sha256, c.nbytes) == (
        header,
        metadata,
        DIGEST,
        len(stream),
    )
    assert [c.payload(i) for i in range(len(chunks))] == [p for _, p in chunks]


def test_reads_only_sections_and_asked_payloads() -> None:
    keys = [ChunkKey(0, y, x, 8, 8) for y in range(0, 80, 8) for x in range(0, 80, 8)]
    chunks = [(k, bytes([k.y, k.x]) * 500) for k in keys]
    stream = write({"n": len(keys)}, chunks, metadata=b"m" * 10, array_sha256=SHA)
    f = CountingFile(stream)
    c = read_file(f)
    # The prelude is fetched at its longest (PRELUDE_V2_MAX), so a few header bytes twice.
    start = sections(stream)["payload"]
    assert start <= f.bytes_read <= start + PRELUDE_V2_MAX
    before = f.bytes_read
    assert c.payload(57) == chunks[57][1]
    assert f.bytes_read == before + 1000
    assert f.bytes_read < len(stream) / 10


@pytest.mark.timeout(60)
def test_truncation_and_byte_flips_fail_as_with_read() -> None:
    """Every cut and every single-byte flip gives the same error (class and message) as ``read``."""
    header, chunks, metadata, stream = realistic(1)
    for cut in range(len(stream)):
        assert outcome(from_file, stream[:cut]) == outcome(read, stream[:cut]), cut
    rng = np.random.default_rng(7)
    for pos, mask in zip(range(len(stream)), rng.integers(1, 256, len(stream)), strict=True):
        bad = bytearray(stream)
        bad[pos] ^= int(mask)
        assert outcome(from_file, bytes(bad)) == outcome(read, bad), pos
        if pos >= sections(stream)["payload"]:
            c = from_file(bytes(bad))
            for i in range(len(chunks)):
                assert outcome(c.payload, i) == outcome(read(bad).payload, i)


def test_corrupt_payload_is_caught_when_read() -> None:
    header, chunks, metadata, stream = realistic()
    bad = bytearray(stream)
    bad[-1] ^= 1
    c = from_file(bytes(bad))
    assert c.payload(0) == chunks[0][1]
    with pytest.raises(ChecksumError) as err:
        c.payload(len(chunks) - 1)
    assert err.value.segment == f"chunk {len(chunks) - 1}"


def test_file_shrinking_after_open_is_a_stream_error() -> None:
    header, chunks, metadata, stream = realistic()
    f = io.BytesIO(stream)
    c = read_file(f)
    f.truncate(len(stream) - 1)
    assert c.payload(0) == chunks[0][1]
    with pytest.raises(StreamError, match="truncated"):
        c.payload(len(chunks) - 1)
