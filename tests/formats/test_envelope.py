from __future__ import annotations

import pytest

from llic_imaging.errors import FormatError
from llic_imaging.formats.envelope import atomic_path, pack, unpack, write_atomic


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


def test_write_atomic_leaves_no_temp_files(tmp_path):
    write_atomic(tmp_path / "a.bin", [b"ab", b"cd"])
    assert (tmp_path / "a.bin").read_bytes() == b"abcd"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    dst = tmp_path / "keep.tif"
    dst.write_bytes(b"old")

    def fail() -> None:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail()
    assert dst.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]
