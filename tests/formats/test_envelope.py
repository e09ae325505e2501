from __future__ import annotations

import pytest

from llic_imaging.errors import FormatError
from llic_imaging.formats.envelope import pack, unpack


def test_pack_unpack_round_trip():
    blobs = {"head": b"\x00" * 300 + b"DICM", "tail": b"", "x": bytes(range(256))}
    fmt, info, out = unpack(pack("dicom", {"a": [1, 2], "b": "c"}, blobs))
    assert fmt == "dicom"
    assert info == {"a": [1, 2], "b": "c"}
    assert out == blobs


@pytest.mark.parametrize(
    "data",
    [b"", b"LLF", b"XXXX\x01abc", b"LLFM\x09" + b"x" * 10, b"LLFM\x01not zlib"],
    ids=["empty", "short", "magic", "version", "zlib"],
)
def test_unpack_rejects_garbage(data):
    with pytest.raises(FormatError, match="envelope"):
        unpack(data)


def test_unpack_rejects_truncated_body():
    meta = pack("npy", {}, {"head": b"abc" * 100})
    with pytest.raises(FormatError, match="corrupt"):
        unpack(meta[:-3])


def test_unpack_refuses_an_envelope_that_inflates_past_its_limit():
    meta = pack("npy", {}, {"head": bytes(100_000)})
    assert unpack(meta, limit=100_100)[2]["head"] == bytes(100_000)
    with pytest.raises(FormatError, match="inflates past 50000 bytes"):
        unpack(meta, limit=50_000)


def test_pack_refuses_what_json_cannot_hold():
    with pytest.raises(FormatError, match="cannot be stored"):
        pack("tiff", {"tag": b"raw bytes"})
