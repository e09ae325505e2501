from __future__ import annotations

import gzip
import itertools
import zlib

import nibabel as nib
import numpy as np
import pytest

from _formats_data import data_params, path_of
from llic_imaging import formats
from llic_imaging.errors import FormatError

RNG = np.random.default_rng(5)


def _nifti(path, values, *, endian="<", slope=None, extension=False):
    header = nib.Nifti1Header(endianness=endian)
    img = nib.Nifti1Image(values, np.diag([0.9, 0.9, 3.0, 1.0]), header)
    img.header.set_data_dtype(values.dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, -1024)
    if extension:
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"keep these bytes"))
    nib.save(img, path)
    return path


CASES = {
    "int16-3d": (RNG.integers(-1000, 3000, (12, 10, 5)).astype(np.int16), {}),
    "uint8-scaled": (RNG.integers(0, 255, (12, 10, 5)).astype(np.uint8), {"slope": 6.48}),
    "uint16-big-endian": (RNG.integers(0, 65535, (12, 10, 5)).astype(np.uint16), {"endian": ">"}),
    "int16-4d-extension": (
        RNG.integers(0, 1200, (12, 10, 5, 3)).astype(np.int16),
        {"extension": True},
    ),
    "float32-integers": (RNG.integers(0, 2640, (12, 10, 5)).astype(np.float32), {}),
    "int32-small-values": (RNG.integers(-5, 5, (12, 10, 5)).astype(np.int32), {}),
    "2d": (RNG.integers(0, 255, (12, 10)).astype(np.uint8), {}),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", CASES)
def test_round_trip_is_byte_identical(tmp_path, case, suffix):
    values, kwargs = CASES[case]
    src = _nifti(tmp_path / f"a{suffix}", values, **kwargs)
    loaded = formats.load(src)
    assert (loaded.format, loaded.exact) == ("nifti", "bytes")
    assert loaded.array.dtype.name in ("uint8", "int16", "uint16")
    # (x, y, z, t) on disk -> (t * z, y, x) planes, values never rescaled
    expect = values.T.reshape(-1, values.shape[1], values.shape[0]) if values.ndim > 2 else values.T
    np.testing.assert_array_equal(loaded.array, expect)
    formats.save(tmp_path / f"b{suffix}", loaded.array, loaded.metadata)
    assert (tmp_path / f"b{suffix}").read_bytes() == src.read_bytes()


def test_gzip_member_header_is_kept(tmp_path):
    _nifti(tmp_path / "a.nii", CASES["int16-3d"][0])
    raw = (tmp_path / "a.nii").read_bytes()
    with gzip.GzipFile(tmp_path / "named.nii.gz", "wb", compresslevel=9, mtime=1234567) as fh:
        fh.write(raw)  # FNAME and MTIME set in the member header
    loaded = formats.load(tmp_path / "named.nii.gz")
    assert loaded.exact == "bytes"
    formats.save(tmp_path / "out.nii.gz", loaded.array, loaded.metadata)
    assert (tmp_path / "out.nii.gz").read_bytes() == (tmp_path / "named.nii.gz").read_bytes()


def _members(raw: bytes, cuts: list[int], **kwargs) -> bytes:
    """Concatenated gzip members of ``raw`` cut at ``cuts`` (what ``cat a.gz b.gz`` gives)."""
    edges = [0, *cuts, len(raw)]
    return b"".join(gzip.compress(raw[a:b], **kwargs) for a, b in itertools.pairwise(edges))


@pytest.mark.parametrize(
    "cuts", [[100], [1000], [352, 2000, 2500]], ids=["in-header", "in-voxels", "four-members"]
)
def test_multi_member_gzip_round_trip_is_byte_identical(tmp_path, cuts):
    raw = _nifti(tmp_path / "a.nii", CASES["int16-4d-extension"][0], extension=True).read_bytes()
    src = tmp_path / "multi.nii.gz"
    members = _members(raw, cuts, compresslevel=9, mtime=7)
    assert gzip.decompress(members) == raw
    src.write_bytes(members + b"\0" * 5)  # zero padding after the last member is kept too
    assert nib.load(src).shape == CASES["int16-4d-extension"][0].shape
    loaded = formats.load(src)
    assert loaded.exact == "bytes"
    np.testing.assert_array_equal(loaded.array, formats.load(tmp_path / "a.nii").array)
    formats.save(tmp_path / "out.nii.gz", loaded.array, loaded.metadata)
    assert (tmp_path / "out.nii.gz").read_bytes() == src.read_bytes()


def test_multi_member_gzip_with_unreproducible_member_keeps_payload(tmp_path):
    raw = _nifti(tmp_path / "a.nii", CASES["int16-3d"][0]).read_bytes()
    c = zlib.compressobj(6, zlib.DEFLATED, 31, 8, zlib.Z_HUFFMAN_ONLY)  # a setting never tried
    src = tmp_path / "multi.nii.gz"
    first = gzip.compress(raw[:100], mtime=0)
    src.write_bytes(first + c.compress(raw[100:]) + c.flush())
    loaded = formats.load(src)
    assert loaded.exact == "pixels+metadata"
    formats.save(tmp_path / "out.nii.gz", loaded.array, loaded.metadata)
    out = (tmp_path / "out.nii.gz").read_bytes()
    assert gzip.decompress(out) == raw
    assert out.startswith(first)  # the reproducible member comes back byte for byte
    assert out[len(first) : len(first) + 10] == src.read_bytes()[len(first) : len(first) + 10]
    # only the deflate settings differ, and they are not content (what ``llic verify`` checks)
    assert formats.load(tmp_path / "out.nii.gz").metadata != loaded.metadata
    assert (
        formats.metadata_differences(
            formats.load(tmp_path / "out.nii.gz").metadata, loaded.metadata
        )
        == []
    )


def test_multi_member_gzip_truncated_in_a_later_member(tmp_path):
    raw = _nifti(tmp_path / "a.nii", CASES["int16-3d"][0]).read_bytes()
    data = _members(raw, [1000])
    (tmp_path / "t.nii.gz").write_bytes(data[:-20])
    with pytest.raises(FormatError, match="gzip stream is truncated"):
        formats.load(tmp_path / "t.nii.gz")


def test_unreproducible_gzip_keeps_payload(tmp_path):
    _nifti(tmp_path / "a.nii", CASES["int16-3d"][0])
    raw = (tmp_path / "a.nii").read_bytes()
    c = zlib.compressobj(6, zlib.DEFLATED, 31, 8, zlib.Z_FILTERED)  # a setting we never try
    (tmp_path / "odd.nii.gz").write_bytes(c.compress(raw) + c.flush())
    loaded = formats.load(tmp_path / "odd.nii.gz")
    formats.save(tmp_path / "out.nii.gz", loaded.array, loaded.metadata)
    assert gzip.decompress((tmp_path / "out.nii.gz").read_bytes()) == raw
    assert (tmp_path / "out.nii.gz").read_bytes()[:10] == (tmp_path / "odd.nii.gz").read_bytes()[
        :10
    ]


def test_compresslevel_override(tmp_path):
    src = _nifti(tmp_path / "a.nii.gz", CASES["int16-3d"][0])
    loaded = formats.load(src)
    formats.save(tmp_path / "b.nii.gz", loaded.array, loaded.metadata, compresslevel=9)
    assert gzip.decompress((tmp_path / "b.nii.gz").read_bytes()) == gzip.decompress(
        src.read_bytes()
    )


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.full((4, 4, 2), 0.5, np.float32), "non-integer"),
        (np.full((4, 4, 2), np.nan, np.float32), "non-integer"),
        (np.full((4, 4, 2), -0.0, np.float32), "-0.0"),
        (np.full((4, 4, 2), 70000, np.int32), "do not fit 16 bits"),
    ],
    ids=["fraction", "nan", "negative-zero", "int32-range"],
)
def test_refuses_values_it_cannot_code_exactly(tmp_path, values, match):
    src = _nifti(tmp_path / "a.nii", values)
    with pytest.raises(FormatError, match=match):
        formats.load(src)


def test_truncated_files(tmp_path):
    data = _nifti(tmp_path / "a.nii", CASES["int16-3d"][0]).read_bytes()
    (tmp_path / "t.nii").write_bytes(data[:-10])
    with pytest.raises(FormatError, match="truncated"):
        formats.load(tmp_path / "t.nii")
    gz = gzip.compress(data)
    (tmp_path / "t.nii.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(FormatError, match="truncated"):
        formats.load(tmp_path / "t.nii.gz")


def test_planes_are_the_first_volume(tmp_path):
    src = _nifti(tmp_path / "a.nii", CASES["int16-4d-extension"][0])
    named = formats.planes(src)
    assert [n for n, _ in named] == [f"z{k}" for k in range(5)]
    np.testing.assert_array_equal(named[2][1], CASES["int16-4d-extension"][0][:, :, 2, 0].T)


@pytest.mark.parametrize("row", data_params("medical/", suffix=".nii.gz"))
def test_real_files_restore_the_decompressed_bytes(tmp_path, row):
    path = path_of(row)
    loaded = formats.load(path)
    shape = [int(s) for s in row["shape"].split("x")]
    assert loaded.array.shape == (int(np.prod(shape[2:])), shape[1], shape[0])
    assert (int(loaded.array.min()), int(loaded.array.max())) == (
        int(float(row["min"])),
        int(float(row["max"])),
    )
    formats.save(tmp_path / "out.nii.gz", loaded.array, loaded.metadata)
    out = (tmp_path / "out.nii.gz").read_bytes()
    assert gzip.decompress(out) == gzip.decompress(path.read_bytes())
    assert (out == path.read_bytes()) == (loaded.exact == "bytes")
