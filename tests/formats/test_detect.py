from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest
import tifffile

from llic_imaging import formats
from llic_imaging.errors import FormatError, MissingDependencyError, UnknownFormatError
from llic_imaging.formats import import_optional
from llic_imaging.formats.envelope import pack


def test_detect_by_magic_ignores_extension(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    (tmp_path / "a.npy").rename(tmp_path / "array.bin")
    assert formats.detect(tmp_path / "array.bin") == "npy"
    tifffile.imwrite(tmp_path / "x.dat", np.zeros((4, 4), np.uint8))
    assert formats.detect(tmp_path / "x.dat") == "tiff"


def test_detect_dual_dicom_tiff_preamble(tmp_path):
    # A TIFF header in the 128-byte preamble must not hide the DICM marker.
    p = tmp_path / "dual"
    p.write_bytes(b"II*\x00" + b"\x00" * 124 + b"DICM" + b"\x00" * 64)
    assert formats.detect(p) == "dicom"


def test_detect_nifti_gz_and_itk_text(tmp_path):
    hdr = bytearray(352)
    hdr[0:4] = (348).to_bytes(4, "little")
    hdr[344:348] = b"n+1\x00"
    (tmp_path / "v.gz").write_bytes(gzip.compress(bytes(hdr)))
    assert formats.detect(tmp_path / "v.gz") == "nifti"
    (tmp_path / "a.raw").write_bytes(b"NRRD0004\ntype: short\n")
    assert formats.detect(tmp_path / "a.raw") == "itk"


def test_detect_falls_back_to_extension(tmp_path):
    (tmp_path / "raw.dcm").write_bytes(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")
    assert formats.detect(tmp_path / "raw.dcm") == "dicom"


def test_detect_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        formats.detect(tmp_path / "empty.png")
    (tmp_path / "x.bin").write_bytes(b"hello world")
    with pytest.raises(FormatError, match="unknown file format"):
        formats.detect(tmp_path / "x.bin")
    with pytest.raises(FormatError, match="cannot read"):
        formats.detect(tmp_path / "missing.png")
    with pytest.raises(FormatError, match="cannot read"):
        formats.load(tmp_path)


def test_unknown_format_is_told_apart_from_a_broken_image(tmp_path):
    """Folders hold READMEs (unknown: skipped by batches) and broken images (reported)."""
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "EMPTY").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "a.npy.llic").write_bytes(b"LLIC\0\0")
    with pytest.raises(FormatError, match="empty") as broken:
        formats.detect(tmp_path / "empty.dcm")
    assert not isinstance(broken.value, UnknownFormatError)
    for name in ("EMPTY", "notes.txt"):
        with pytest.raises(UnknownFormatError):
            formats.detect(tmp_path / name)
    with pytest.raises(UnknownFormatError, match="llic stream: use restore"):
        formats.detect(tmp_path / "a.npy.llic")


def test_unknown_format_name_and_mismatched_metadata(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    with pytest.raises(FormatError, match="unknown format"):
        formats.load(tmp_path / "a.npy", format="jpeg")
    loaded = formats.load(tmp_path / "a.npy")
    with pytest.raises(FormatError, match="not 'tiff'"):
        formats.save(tmp_path / "b.tif", loaded.array, loaded.metadata, format="tiff")


def test_import_optional_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "llic-imaging\[dicom\]"'):
        import_optional("pydicom", "dicom")


def test_importing_formats_is_light():
    import subprocess

    code = (
        "import sys, llic_imaging.formats as f; "
        "heavy = {'torch', 'pydicom', 'nibabel', 'rasterio', 'SimpleITK', 'tifffile', 'imagecodecs'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("info", "blobs"),
    [({}, {}), ({}, {"head": b"not a npy header", "tail": b""}), ([1, 2], {"head": b""})],
    ids=["no-blobs", "bad-head", "info-list"],
)
def test_save_refuses_a_forged_envelope_without_writing(tmp_path, info, blobs):
    with pytest.raises(FormatError):
        formats.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8), pack("npy", info, blobs))
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_an_envelope_that_inflates_far_past_the_image(tmp_path):
    """64 MiB plus the image's size: a few hundred kB of stream must not inflate to gigabytes."""
    bomb = pack("npy", {}, {"head": bytes(65 << 20), "tail": b""})
    assert len(bomb) < 100_000
    with pytest.raises(FormatError, match="inflates past"):
        formats.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8), bomb)
