from __future__ import annotations

import struct
import zlib

import imagecodecs
import numpy as np
import pytest

from llic_imaging import formats
from llic_imaging.errors import FormatError


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _chunk_types(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 8])
        pos += 12 + n
    return out


CASES = {
    "gray8": ((37, 41), np.uint8),
    "gray16": ((37, 41), np.uint16),
    "gray-alpha8": ((37, 41, 2), np.uint8),
    "rgb8": ((37, 41, 3), np.uint8),
    "rgb16": ((37, 41, 3), np.uint16),
    "rgba8": ((37, 41, 4), np.uint8),
}


@pytest.mark.parametrize("case", CASES)
def test_round_trip_pixels_and_chunks(tmp_path, case):
    shape, dtype = CASES[case]
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    src = tmp_path / "a.png"
    src.write_bytes(imagecodecs.png_encode(pixels))
    loaded = formats.load(src)
    expect = pixels if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    np.testing.assert_array_equal(loaded.array, expect)
    formats.save(tmp_path / "b.png", loaded.array, loaded.metadata)
    out = (tmp_path / "b.png").read_bytes()
    np.testing.assert_array_equal(imagecodecs.png_decode(out), pixels)
    assert [t for t in _chunk_types(out) if t != b"IDAT"] == [
        t for t in _chunk_types(src.read_bytes()) if t != b"IDAT"
    ]
    # A file written by our own writer is proven byte-identical.
    again = formats.load(tmp_path / "b.png")
    assert again.exact == "bytes"
    formats.save(tmp_path / "c.png", again.array, again.metadata)
    assert (tmp_path / "c.png").read_bytes() == out


def test_ancillary_chunks_verbatim(tmp_path):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    data = imagecodecs.png_encode(pixels)
    text = _chunk(b"tEXt", b"Comment\x00keep me")
    src = tmp_path / "a.png"
    src.write_bytes(data[:33] + text + data[33:])
    loaded = formats.load(src)
    formats.save(tmp_path / "b.png", loaded.array, loaded.metadata)
    assert text in (tmp_path / "b.png").read_bytes()


def test_planes_skip_alpha(tmp_path):
    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(np.zeros((8, 9, 4), np.uint8)))
    assert [n for n, _ in formats.planes(tmp_path / "a.png")] == ["c0", "c1", "c2"]


def test_refuses_palette(tmp_path):
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0))
    plte = _chunk(b"PLTE", bytes(range(12)))
    idat = _chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00" * 4))
    (tmp_path / "p.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + ihdr + plte + idat + _chunk(b"IEND", b"")
    )
    with pytest.raises(FormatError, match="colour type 3"):
        formats.load(tmp_path / "p.png")


def test_truncated_png(tmp_path):
    data = imagecodecs.png_encode(np.zeros((32, 32), np.uint8))
    (tmp_path / "t.png").write_bytes(data[:40])
    with pytest.raises(FormatError):
        formats.load(tmp_path / "t.png")
