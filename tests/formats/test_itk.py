from __future__ import annotations

import stat

import numpy as np
import pytest
import SimpleITK as sitk

from llic_imaging import formats
from llic_imaging._fileio import output_mode
from llic_imaging.errors import FormatError
from llic_imaging.formats import itk
from llic_imaging.formats.envelope import unpack

RNG = np.random.default_rng(7)


def _image(values: np.ndarray, *, vector: bool = False) -> sitk.Image:
    image = sitk.GetImageFromArray(values, isVector=vector)
    if image.GetDimension() == 3:
        image.SetSpacing((0.5, 0.6, 2.0))
        image.SetOrigin((1.0, -2.0, 3.5))
        image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    image.SetMetaData("Modality", "MET_MOD_CT")
    return image


def _same_image(a, b):
    ia, ib = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ib), sitk.GetArrayFromImage(ia))
    assert ib.GetSpacing() == ia.GetSpacing()
    assert ib.GetOrigin() == ia.GetOrigin()
    assert ib.GetDirection() == ia.GetDirection()


CASES = {
    "int16": RNG.integers(-1000, 3000, (4, 5, 6)).astype(np.int16),
    "uint8": RNG.integers(0, 255, (4, 5, 6)).astype(np.uint8),
    "uint16-2d": RNG.integers(0, 65535, (5, 6)).astype(np.uint16),
}


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
@pytest.mark.parametrize("case", CASES)
def test_uncompressed_round_trip_is_byte_identical(tmp_path, case, suffix):
    values = CASES[case]
    src = tmp_path / f"a{suffix}"
    sitk.WriteImage(_image(values), str(src), useCompression=False)
    assert formats.detect(src) == "itk"
    loaded = formats.load(src)
    assert loaded.exact == "bytes"
    np.testing.assert_array_equal(loaded.array, values)
    formats.save(tmp_path / f"b{suffix}", loaded.array, loaded.metadata)
    assert (tmp_path / f"b{suffix}").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_compressed_round_trip_keeps_pixels_and_geometry(tmp_path, suffix):
    src = tmp_path / f"a{suffix}"
    sitk.WriteImage(_image(CASES["int16"]), str(src), useCompression=True)
    loaded = formats.load(src)
    assert loaded.exact == "pixels+metadata"
    formats.save(tmp_path / f"b{suffix}", loaded.array, loaded.metadata)
    _same_image(src, tmp_path / f"b{suffix}")


def test_vector_image_planes(tmp_path):
    values = RNG.integers(0, 255, (2, 5, 6, 3)).astype(np.uint8)
    src = tmp_path / "rgb.mha"
    sitk.WriteImage(_image(values, vector=True), str(src))
    loaded = formats.load(src)
    assert loaded.array.shape == (6, 5, 6)
    np.testing.assert_array_equal(loaded.array[4], values[1, :, :, 1])  # plane = z * 3 + channel
    assert [n for n, _ in formats.planes(src)][:4] == ["z0/s0", "z0/s1", "z0/s2", "z1/s0"]
    formats.save(tmp_path / "out.mha", loaded.array, loaded.metadata)
    assert (tmp_path / "out.mha").read_bytes() == src.read_bytes()


def test_refuses_float_detached_and_truncated(tmp_path):
    sitk.WriteImage(
        _image(np.zeros((2, 3, 4), np.float32)), str(tmp_path / "f.mha"), useCompression=True
    )
    with pytest.raises(FormatError, match="float32"):
        formats.load(tmp_path / "f.mha")
    sitk.WriteImage(_image(CASES["uint8"]), str(tmp_path / "d.mhd"))
    with pytest.raises(FormatError, match="detached"):
        formats.load(tmp_path / "d.mhd")
    sitk.WriteImage(_image(CASES["int16"]), str(tmp_path / "t.mha"))
    data = (tmp_path / "t.mha").read_bytes()
    (tmp_path / "t.mha").write_bytes(data[:-7])
    with pytest.raises(FormatError, match="truncated"):
        formats.load(tmp_path / "t.mha")


@pytest.mark.parametrize(
    ("suffix", "data_file", "field"),
    [(".mhd", "b.zraw", "ElementDataFile = "), (".nhdr", "b.raw.gz", "data file: ")],
)
def test_detached_header_points_at_its_final_data_file(tmp_path, suffix, data_file, field):
    """SimpleITK names the data file after the header; the restored header must not name the
    atomic writer's temporary, and no temporary may be left behind."""
    src = tmp_path / "a.mha"
    sitk.WriteImage(_image(CASES["int16"]), str(src), useCompression=True)
    loaded = formats.load(src)
    out = tmp_path / f"b{suffix}"
    formats.save(out, loaded.array, loaded.metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mha", out.name, data_file]
    assert f"{field}{data_file}" in out.read_text(encoding="latin1").splitlines()
    _same_image(src, out)


DATA_FILES = {
    "b.mhd": ["b.raw", "b.zraw"],
    "b.x.MHD": ["b.x.raw", "b.x.zraw"],
    "b.nhdr": ["b.raw", "b.raw.gz"],
    "b.NHDR": ["b.raw", "b.raw.gz"],
    "b.mha": [],
    "b.nrrd": [],
}


def test_data_files_of_other_names_are_none(tmp_path):
    assert itk.data_files(tmp_path / "b.npy") == []
    assert itk.data_files("b") == []


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("name", DATA_FILES)
def test_data_files_names_every_file_a_save_writes(tmp_path, name, compressed):
    """``itk.data_files`` is what a restore checks before it may replace anything, so it must
    name every file besides the header that a save writes, whatever the extension's case."""
    assert [p.name for p in itk.data_files(tmp_path / name)] == DATA_FILES[name]
    src = tmp_path / "src" / "a.mha"
    src.parent.mkdir()
    sitk.WriteImage(_image(CASES["int16"]), str(src), useCompression=True)
    loaded = formats.load(src)
    formats.save(tmp_path / name, loaded.array, loaded.metadata, compression=compressed)
    written = {p.name for p in tmp_path.iterdir()} - {"src", name}
    assert len(written) == (1 if DATA_FILES[name] else 0)
    assert written <= set(DATA_FILES[name])


def test_upper_case_names_write_the_named_file(tmp_path):
    """SimpleITK itself writes ``X.MHA`` as ``X.mhd`` + ``X.zraw``; a save must still write
    exactly the file it was asked for (SimpleITK reads MetaImage only from lower-case names)."""
    src = tmp_path / "a.mha"
    sitk.WriteImage(_image(CASES["int16"]), str(src), useCompression=True)
    loaded = formats.load(src)
    formats.save(tmp_path / "X.MHA", loaded.array, loaded.metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.MHA", "a.mha"]
    (tmp_path / "X.MHA").rename(tmp_path / "x.mha")
    _same_image(src, tmp_path / "x.mha")


def test_extensions_keep_a_raw_header_readable(tmp_path):
    """A raw envelope restores its header verbatim; SimpleITK cannot read a MetaImage header
    from a ``.nrrd`` name or an NRRD header from a ``.mha`` one."""
    found = {}
    for name, compressed in (("m.mha", False), ("n.nrrd", False), ("c.mha", True)):
        sitk.WriteImage(_image(CASES["int16"]), str(tmp_path / name), useCompression=compressed)
        _, info, blobs = unpack(formats.load(tmp_path / name).metadata)
        found[name] = itk.extensions(info, blobs)
    assert found == {
        "m.mha": (".mha", ".mhd"),
        "n.nrrd": (".nrrd", ".nhdr"),
        "c.mha": (".mha", ".mhd", ".nrrd", ".nhdr"),
    }


def test_the_detached_data_file_gets_the_output_mode(tmp_path):
    src = tmp_path / "a.mha"
    sitk.WriteImage(_image(CASES["int16"]), str(src), useCompression=True)
    loaded = formats.load(src)
    with output_mode(0o600):
        formats.save(tmp_path / "b.mhd", loaded.array, loaded.metadata)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p != src}
    assert modes == {"b.mhd": 0o600, "b.zraw": 0o600}
