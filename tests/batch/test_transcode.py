"""``--transcode``: compressed instances are coded by llic only when their original fragments are
rebuilt byte for byte from the decoded pixels (and the stream is smaller); the others are kept
verbatim with the reason. The adapter tests need no codec; the archive coded one 32x32 instance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _archive_data import bundled, copy_bundled, sha256, tree_digests, write_dicom

from llic_imaging import batch, formats
from llic_imaging.errors import FormatError
from llic_imaging.formats import dicom as dicom_format

THREADS = 1


def _rebuilt(source: Path, tmp_path: Path) -> bytes:
    loaded = dicom_format.load_encapsulated(source)
    formats.save(tmp_path / "rebuilt.dcm", loaded.array, loaded.metadata)
    return (tmp_path / "rebuilt.dcm").read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_rle.dcm",  # pydicom's RLE encoder made it
        "SC_rgb_rle_16bit_2frame.dcm",  # two frames, one fragment each
        "MR_small_jpeg_ls_lossless.dcm",  # CharLS, signed 16 bit, LSE preset marker
        "JPEGLSNearLossless_16.dcm",  # near-lossless: the decoded values re-encode exactly
        "SC_rgb_jpeg_gdcm.dcm",  # lossless JPEG from libjpeg, RGB, odd length padded
    ],
)
def test_rebuildable_sources_restore_byte_for_byte(name: str, tmp_path: Path) -> None:
    source = bundled(name)
    assert _rebuilt(source, tmp_path) == source.read_bytes()
    loaded = dicom_format.load_encapsulated(source)
    stack = np.stack([plane for _, plane in formats.planes(source)])
    assert np.array_equal(loaded.array.reshape(stack.shape), stack)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_small_RLE.dcm", "RLE Lossless fragments byte for byte: pydicom 3"),
        ("SC_rgb_jls_lossy_line.dcm", "(Near-Lossless) Image Compression fragments byte for"),
        ("JPEG2000.dcm", "no encoder here rebuilds JPEG 2000 Image Compression fragments"),
        ("CT_small.dcm", "Pixel Data is not encapsulated"),
    ],
)
def test_other_sources_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(FormatError, match=re.escape(reason)):
        dicom_format.load_encapsulated(bundled(name))


def test_fragmented_frame_and_colour_jpeg_ls(tmp_path: Path) -> None:
    """A frame split over three fragments, and pixel-interleaved colour JPEG-LS (ILV 2)."""
    ds = pydicom.dcmread(bundled("SC_rgb_rle.dcm"))
    (frame,) = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = pydicom.encaps.encapsulate([frame], fragments_per_frame=3)
    ds.save_as(tmp_path / "fragmented.dcm")
    ds.decompress(generate_instance_uid=False)
    ds.compress(pydicom.uid.JPEGLSLossless, generate_instance_uid=False)
    ds.save_as(tmp_path / "jls.dcm")
    for path in (tmp_path / "fragmented.dcm", tmp_path / "jls.dcm"):
        assert _rebuilt(path, tmp_path) == path.read_bytes()


def test_a_different_encoder_at_restore_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = dicom_format.load_encapsulated(bundled("SC_rgb_rle.dcm"))
    real = dicom_format._encode_frame
    monkeypatch.setattr(dicom_format, "_encode_frame", lambda *a: real(*a) + b"\0\0")
    with pytest.raises(FormatError, match="transcoded with pydicom 3.* restore it with that"):
        formats.save(tmp_path / "x.dcm", loaded.array, loaded.metadata)
    assert not (tmp_path / "x.dcm").exists()


def _near_lossless_noise(path: Path) -> None:
    """Noise coded near-lossless (JPEG-LS, NEAR 16): the file is smaller than any lossless
    coding of its decoded values, so the llic stream is not smaller than the file."""
    write_dicom(path, shape=(64, 64))
    ds = pydicom.dcmread(path)
    noise = np.random.default_rng(1).normal(1000, 60, (64, 64))
    ds.PixelData = noise.astype(np.uint16).tobytes()
    ds.compress(pydicom.uid.JPEGLSNearLossless, generate_instance_uid=False, jls_error=16)
    ds.save_as(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """One study archived without, then with, then again with ``--transcode``."""
    root = tmp_path_factory.mktemp("transcode")
    study = root / "study"
    study.mkdir()
    write_dicom(study / "noisy_rle.dcm", shape=(32, 32), rle=True, seed=4)
    copy_bundled("MR_small_RLE.dcm", study / "gdcm_rle")
    copy_bundled("JPEG2000.dcm", study / "j2k.dcm")
    _near_lossless_noise(study / "noisy_jls.dcm")
    archive = root / "archive"
    plain = batch.compress_tree(study, archive, numthreads=THREADS)
    transcoded = batch.compress_tree(study, archive, numthreads=THREADS, transcode=True)
    again = batch.compress_tree(study, archive, numthreads=THREADS, transcode=True)
    return study, archive, plain, transcoded, again


def test_without_transcode_nothing_changes(runs) -> None:
    _, _, plain, _, _ = runs
    assert {f.status for f in plain.files} == {"kept-compressed"}
    assert {f.reason for f in plain.files} == {None}


def test_transcode_codes_what_it_can_rebuild_and_says_why_not(runs) -> None:
    study, archive, _, transcoded, _ = runs
    assert transcoded.exit_code == 0, transcoded.failures
    results = {f.path: f for f in transcoded.files}
    assert {p: f.status for p, f in results.items()} == {
        "noisy_rle.dcm": "ok",
        "gdcm_rle": "kept-compressed",
        "j2k.dcm": "kept-compressed",
        "noisy_jls.dcm": "kept-compressed",
    }
    coded = results["noisy_rle.dcm"]
    assert coded.archived == "noisy_rle.dcm.llic"
    assert coded.archived_bytes < coded.original_bytes
    assert coded.reason is None
    assert results["gdcm_rle"].reason == (
        "--transcode: cannot rebuild the original RLE Lossless fragments byte for byte: "
        f"pydicom {pydicom.__version__} encodes frame 0 differently; kept verbatim"
    )
    assert results["j2k.dcm"].reason.startswith("--transcode: no encoder here rebuilds JPEG 2000")
    assert "is not smaller than the file; kept verbatim" in results["noisy_jls.dcm"].reason
    for f in transcoded.files:
        assert f.archived_bytes <= f.original_bytes
    entries = {e["path"]: e for e in json.loads((archive / "manifest.json").read_text())["files"]}
    assert entries["noisy_rle.dcm"]["transfer_syntax"] == pydicom.uid.RLELossless
    assert entries["gdcm_rle"]["reason"] == results["gdcm_rle"].reason
    assert not (archive / "noisy_rle.dcm.keep").exists(), "the verbatim copy was left behind"


def test_transcoded_archive_restores_and_verifies(runs, tmp_path: Path) -> None:
    study, archive, _, _, again = runs
    assert {f.status for f in again.files} == {"skipped"}
    report = batch.restore_tree(archive, tmp_path / "out", numthreads=THREADS)
    assert report.exit_code == 0, report.failures
    assert tree_digests(tmp_path / "out") == tree_digests(study)
    assert batch.verify_tree(archive, against=study, numthreads=THREADS).exit_code == 0
    assert sha256(tmp_path / "out" / "noisy_rle.dcm") == sha256(study / "noisy_rle.dcm")
