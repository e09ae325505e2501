from __future__ import annotations

import numpy as np
import pytest

from llic_imaging import formats
from llic_imaging.errors import FormatError


def _round_trip(src, dst):
    loaded = formats.load(src)
    formats.save(dst, loaded.array, loaded.metadata)
    return loaded


@pytest.mark.parametrize("dtype", ["u1", "i1", "<u2", ">u2", "<i2", ">i2"])
@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7), (2, 3, 5, 7)], ids=["2d", "3d", "4d"])
@pytest.mark.parametrize("fortran", [False, True], ids=["C", "F"])
def test_round_trip_is_byte_identical(tmp_path, dtype, shape, fortran):
    rng = np.random.default_rng(1)
    info = np.iinfo(np.dtype(dtype))
    a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    a = np.asfortranarray(a) if fortran else a
    src = tmp_path / "a.npy"
    np.save(src, a)
    loaded = _round_trip(src, tmp_path / "b.npy")
    assert loaded.format == "npy"
    assert loaded.exact == "bytes"
    assert loaded.array.dtype.isnative
    assert loaded.array.shape == (shape if len(shape) < 4 else (6, 5, 7))
    assert (tmp_path / "b.npy").read_bytes() == src.read_bytes()
    np.testing.assert_array_equal(loaded.array.reshape(shape), a)


def test_trailing_bytes_are_kept(tmp_path):
    src = tmp_path / "a.npy"
    np.save(src, np.arange(12, dtype=np.uint8).reshape(3, 4))
    with open(src, "ab") as fh:
        fh.write(b"junk")
    _round_trip(src, tmp_path / "b.npy")
    assert (tmp_path / "b.npy").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("dtype", ["f4", "f8", "i4", "u4", "bool", "O"])
def test_refuses_uncodable_dtypes(tmp_path, dtype):
    src = tmp_path / "a.npy"
    np.save(src, np.zeros((4, 4), dtype=dtype), allow_pickle=True)
    with pytest.raises(FormatError, match="cannot be coded"):
        formats.load(src)


def test_refuses_1d_and_truncated(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(5, dtype=np.uint8))
    with pytest.raises(FormatError, match="not an image"):
        formats.load(tmp_path / "v.npy")
    np.save(tmp_path / "t.npy", np.zeros((64, 64), np.uint16))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-100])
    with pytest.raises(FormatError, match="truncated"):
        formats.load(tmp_path / "t.npy")


def test_planes_names(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 5), np.int16))
    assert [n for n, _ in formats.planes(tmp_path / "a.npy")] == ["p0", "p1", "p2"]


@pytest.mark.parametrize("shape", ["(-4, -4)", "(4294967296, 4294967296)", "(1e400, 4)"])
def test_refuses_forged_shapes(tmp_path, shape):
    header = f"{{'descr': '<u2', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(64)
    (tmp_path / "f.npy").write_bytes(data)
    with pytest.raises(FormatError):
        formats.load(tmp_path / "f.npy")
