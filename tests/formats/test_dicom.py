from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from _formats_data import data_params, manifest, path_of
from llic_imaging import formats
from llic_imaging.errors import FormatError, LlicError


def _dicom(
    path,
    words: np.ndarray,
    *,
    spp=1,
    planar=0,
    frames=1,
    signed=False,
    bits_stored=None,
    syntax=ExplicitVRLittleEndian,
    pixel_bytes: bytes | None = None,
    sop=CTImageStorage,
):
    """Write a minimal image file whose Pixel Data is exactly ``words`` in file order."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Formats"
    ds.Rows, ds.Columns = words.shape[-3:-1] if spp > 1 and planar == 0 else words.shape[-2:]
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = "RGB" if spp == 3 else "MONOCHROME2"
    if spp > 1:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
    bits = words.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = (
        pixel_bytes
        if pixel_bytes is not None
        else words.astype(words.dtype.newbyteorder(order)).tobytes()
    )
    ds.save_as(path, enforce_file_format=True)
    return path


RNG = np.random.default_rng(4)

SYNTHETIC = {
    "u16-bits12-junk-high-bits": (
        {"words": RNG.integers(0, 65535, (20, 30), dtype=np.uint16), "bits_stored": 12},
        (20, 30),
    ),
    "i16-signed-bits13": (
        {
            "words": RNG.integers(-4096, 4095, (20, 30)).astype(np.int16),
            "signed": True,
            "bits_stored": 13,
        },
        (20, 30),
    ),
    "i16-signed-implicit": (
        {
            "words": RNG.integers(-32768, 32767, (20, 30)).astype(np.int16),
            "signed": True,
            "syntax": ImplicitVRLittleEndian,
        },
        (20, 30),
    ),
    "u16-big-endian": (
        {"words": RNG.integers(0, 65535, (20, 30), dtype=np.uint16), "syntax": ExplicitVRBigEndian},
        (20, 30),
    ),
    "u8-odd-length-padded": ({"words": RNG.integers(0, 255, (7, 9), dtype=np.uint8)}, (7, 9)),
    "u8-multiframe": (
        {"words": RNG.integers(0, 255, (4, 10, 12), dtype=np.uint8), "frames": 4},
        (4, 10, 12),
    ),
    "rgb-planar0-2frames": (
        {
            "words": RNG.integers(0, 255, (2, 10, 12, 3), dtype=np.uint8),
            "spp": 3,
            "planar": 0,
            "frames": 2,
        },
        (6, 10, 12),
    ),
    "rgb-planar1": (
        {"words": RNG.integers(0, 255, (3, 10, 12), dtype=np.uint8), "spp": 3, "planar": 1},
        (3, 10, 12),
    ),
}


@pytest.mark.parametrize("case", SYNTHETIC)
def test_synthetic_round_trip_is_byte_identical(tmp_path, case):
    kwargs, shape = SYNTHETIC[case]
    src = _dicom(tmp_path / "a.dcm", **kwargs)
    loaded = formats.load(src)
    assert (loaded.format, loaded.exact, loaded.array.shape) == ("dicom", "bytes", shape)
    assert loaded.array.dtype == kwargs["words"].dtype.newbyteorder("=")
    words = kwargs["words"]
    if kwargs.get("spp", 1) == 3 and kwargs.get("planar") == 0:
        words = np.moveaxis(words, -1, 1).reshape(shape)  # (frames, samples) -> planes
    np.testing.assert_array_equal(loaded.array, words.reshape(shape))
    formats.save(tmp_path / "b.dcm", loaded.array, loaded.metadata)
    assert (tmp_path / "b.dcm").read_bytes() == src.read_bytes()


def test_high_bits_are_kept_not_masked(tmp_path):
    words = np.full((4, 4), 0xF00F, np.uint16)  # junk above BitsStored=12
    loaded = formats.load(_dicom(tmp_path / "a.dcm", words=words, bits_stored=12))
    assert int(loaded.array.max()) == 0xF00F


def test_restore_after_array_round_trip_through_a_copy(tmp_path):
    src = _dicom(
        tmp_path / "a.dcm", words=RNG.integers(0, 4095, (16, 16), dtype=np.uint16), bits_stored=12
    )
    loaded = formats.load(src)
    copy = np.array(loaded.array, dtype=np.int32).astype(np.uint16)  # what a codec hands back
    formats.save(tmp_path / "b.dcm", copy, loaded.metadata)
    assert dcmread(tmp_path / "b.dcm").SOPInstanceUID == dcmread(src).SOPInstanceUID
    assert (tmp_path / "b.dcm").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("row", data_params("medical/", suffix=".dcm"))
def test_real_files_round_trip(tmp_path, row):
    path = path_of(row)
    if (
        "Lossless" in row["transfer_syntax_or_compression"]
        or "JPEG" in row["transfer_syntax_or_compression"]
    ):
        with pytest.raises(formats.EncapsulatedPixelDataError, match="encapsulated") as info:
            formats.load(path)
        assert info.value.transfer_syntax.startswith("1.2.840.10008.1.2.4.")
        return
    loaded = formats.load(path)
    assert loaded.exact == "bytes"
    stack = loaded.array.reshape(-1, *loaded.array.shape[-2:])
    assert stack.shape == tuple(int(s) for s in row["shape"].split("x"))
    assert (int(stack.min()), int(stack.max())) == (int(row["min"]), int(row["max"]))
    formats.save(tmp_path / "out.dcm", loaded.array, loaded.metadata)
    assert (tmp_path / "out.dcm").read_bytes() == path.read_bytes()


# ---- bad input: every case is an LlicError with a message that says what is wrong ----


def test_truncated_file(tmp_path):
    data = _dicom(tmp_path / "a.dcm", words=np.zeros((64, 64), np.uint16)).read_bytes()
    (tmp_path / "t.dcm").write_bytes(data[: len(data) - 1000])
    with pytest.raises(FormatError, match="truncated"):
        formats.load(tmp_path / "t.dcm")


def test_truncated_in_header(tmp_path):
    data = _dicom(tmp_path / "a.dcm", words=np.zeros((64, 64), np.uint16)).read_bytes()
    (tmp_path / "t.dcm").write_bytes(data[:200])
    with pytest.raises(LlicError, match="t.dcm"):
        formats.load(tmp_path / "t.dcm")


def test_deflated_transfer_syntax_is_refused_as_such(tmp_path):
    """The dataset is zlib-compressed after the file meta: not a truncated file, but already
    compressed (llic-dicom keeps it verbatim); planes() still decodes it for benchmarks."""
    words = RNG.integers(0, 4095, (64, 64), dtype=np.uint16)
    src = _dicom(tmp_path / "a.dcm", words=words, syntax=DeflatedExplicitVRLittleEndian)
    np.testing.assert_array_equal(dcmread(src).pixel_array, words)  # a valid file
    with pytest.raises(formats.EncapsulatedPixelDataError, match=r"Deflated Explicit VR .* not"):
        formats.load(src)
    [(name, plane)] = formats.planes(src)
    assert name == "f0"
    np.testing.assert_array_equal(plane, words)


def test_wrong_pixel_length(tmp_path):
    src = _dicom(
        tmp_path / "a.dcm", words=np.zeros((64, 64), np.uint16), pixel_bytes=b"\x00" * 1000
    )
    with pytest.raises(FormatError, match="Pixel Data has 1000 bytes but .* need 8192"):
        formats.load(src)


def test_structured_report_without_pixel_data(tmp_path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(FormatError, match="no Pixel Data .*1.2.840.10008.5.1.4.1.1.88.11"):
        formats.load(tmp_path / "sr.dcm")


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_empty_and_garbage_files(tmp_path):
    (tmp_path / "e.dcm").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        formats.load(tmp_path / "e.dcm")
    (tmp_path / "g.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(FormatError, match="g.dcm"):
        formats.load(tmp_path / "g.dcm")


def test_unreadable_file(tmp_path, monkeypatch):
    src = _dicom(tmp_path / "a.dcm", words=np.zeros((4, 4), np.uint16))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", denied)
    monkeypatch.setattr("pathlib.Path.read_bytes", denied)
    with pytest.raises(FormatError, match="Permission denied"):
        formats.load(src)


def test_planes_decode_jpeg2000_signed():
    rows = [r for r in manifest() if r["transfer_syntax_or_compression"].startswith("JPEG 2000")]
    if not rows:
        pytest.skip("no JPEG 2000 DICOM in the shared data")
    ((name, plane),) = formats.planes(path_of(rows[0]))
    assert name == "f0"
    assert plane.dtype == np.int16
    assert (int(plane.min()), int(plane.max())) == (int(rows[0]["min"]), int(rows[0]["max"]))
