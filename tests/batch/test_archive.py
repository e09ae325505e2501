"""compress_tree -> restore_tree / verify_tree / archive_info on a small real study, byte for byte.

One module-scoped archive (CT_small and MR_small coded by llic, two compressed instances kept,
DICOMDIR and plain files copied) is shared by the tests: each codec pass costs seconds on CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _archive_data import copy_bundled, sha256, tree_digests

from llic_imaging import batch
from llic_imaging.model import zoo

# One torch thread: on two busy cores, two threads made a 128x128 decode 80x slower (0.5 s -> 40 s).
THREADS = 1
STATUSES = {
    "CT_small.dcm": "ok",
    "series1/MRNOEXT": "ok",
    "series1/rle.dcm": "kept-compressed",
    "series2/deeper/j2k.dcm": "kept-compressed",
    "DICOMDIR": "copied",
    "notes.txt": "copied",
    "manifest.json": "copied",  # a source file with the archive manifest's own name
}


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, batch.ArchiveReport]:
    root = tmp_path_factory.mktemp("archive")
    study = root / "study"
    copy_bundled("CT_small.dcm", study / "CT_small.dcm")
    copy_bundled("MR_small.dcm", study / "series1" / "MRNOEXT")
    copy_bundled("MR_small_RLE.dcm", study / "series1" / "rle.dcm")
    copy_bundled("JPEG2000.dcm", study / "series2" / "deeper" / "j2k.dcm")
    copy_bundled("dicomdirtests/DICOMDIR", study / "DICOMDIR")
    (study / "notes.txt").write_text("referral letter\n")
    (study / "manifest.json").write_text('{"not": "ours"}\n')
    report = batch.compress_tree(study, root / "archive", numthreads=THREADS)
    return study, root / "archive", report


def test_every_file_gets_its_status_and_one_archived_file(archived) -> None:
    study, archive, report = archived
    assert {f.path: f.status for f in report.files} == STATUSES
    assert report.exit_code == 0
    suffix = {"ok": ".llic", "kept-compressed": ".keep", "copied": ".keep"}
    expected = {f"{rel}{suffix[status]}" for rel, status in STATUSES.items()}
    assert set(tree_digests(archive)) == expected | {"manifest.json"}
    assert report.summary()["total"]["files"] == len(STATUSES)


def test_the_dicomdir_is_checked_against_the_study(archived) -> None:
    """pydicom's test DICOMDIR lists 31 files this study lacks and none of its instances."""
    _, _, report = archived
    messages = {w.path: w.message for w in report.warnings}
    missing = {p for p, m in messages.items() if m == "referenced by DICOMDIR but not in the study"}
    assert len(missing) == 31
    assert "77654033/CR1/6154" in missing
    assert {p for p in messages if p not in missing} == {
        rel for rel, status in STATUSES.items() if status in ("ok", "kept-compressed")
    }


def test_manifest_records_what_the_issue_asks(archived) -> None:
    study, archive, _ = archived
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["kind"] == "llic-dicom-archive"
    assert manifest["version"] == 1
    assert manifest["source"] == str(study.resolve())
    entries = {e["path"]: e for e in manifest["files"]}
    assert set(entries) == set(STATUSES)
    for rel, e in entries.items():
        original = study / rel
        assert e["size"] == original.stat().st_size
        assert e["sha256"] == sha256(original)
        assert e["status"] == STATUSES[rel]
        assert e["archived_size"] == (archive / e["archived"]).stat().st_size
        assert e["archived_sha256"] == sha256(archive / e["archived"])
        assert e["error"] is None
    for rel in ("CT_small.dcm", "series1/MRNOEXT", "series1/rle.dcm"):
        ds = pydicom.dcmread(study / rel, stop_before_pixels=True)
        assert entries[rel]["sop_instance_uid"] == ds.SOPInstanceUID
        assert entries[rel]["transfer_syntax"] == ds.file_meta.TransferSyntaxUID
    assert entries["CT_small.dcm"]["model"] == zoo.DEFAULT_MODEL
    assert entries["series1/rle.dcm"]["transfer_syntax"] == "1.2.840.10008.1.2.5"
    assert entries["notes.txt"]["sop_instance_uid"] is None


def test_restore_is_byte_identical(archived, tmp_path: Path) -> None:
    study, archive, _ = archived
    report = batch.restore_tree(archive, tmp_path / "out", numthreads=THREADS)
    assert report.exit_code == 0, report.failures
    assert tree_digests(tmp_path / "out") == tree_digests(study)
    # identical files already there are left alone
    again = batch.restore_tree(archive, tmp_path / "out", numthreads=THREADS)
    assert {f.status for f in again.files} == {"skipped"}


def test_verify_against_the_study(archived) -> None:
    study, archive, _ = archived
    stray = archive / "series1" / "stray.txt"
    stray.write_text("not archived by llic-dicom")
    try:
        report = batch.verify_tree(archive, against=study, numthreads=THREADS)
    finally:
        stray.unlink()
    assert report.exit_code == 0, report.failures
    statuses = {f.path: f.status for f in report.files}
    assert statuses == {**STATUSES, "series1/stray.txt": "unlisted"}


def test_rerun_skips_everything_and_duplicates_nothing(archived) -> None:
    study, archive, _ = archived
    before = tree_digests(archive)
    entries = json.loads((archive / "manifest.json").read_text())["files"]
    report = batch.compress_tree(study, archive, numthreads=THREADS)
    assert {f.status for f in report.files} == {"skipped"}
    assert report.exit_code == 0
    after = tree_digests(archive)
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    assert json.loads((archive / "manifest.json").read_text())["files"] == entries


def test_info_summarises_from_the_manifest(archived) -> None:
    study, archive, report = archived
    info = batch.archive_info(archive)
    assert info["files"] == len(STATUSES)
    assert info["instances"] == 5  # four images and the DICOMDIR
    assert info["summary"]["ok"]["files"] == 2
    assert info["summary"]["total"]["original_bytes"] == sum(
        (study / rel).stat().st_size for rel in STATUSES
    )
    assert info["models"] == {zoo.DEFAULT_MODEL: 2}
    assert info["transfer_syntaxes"]["RLE Lossless"] == 1
    assert info["failed"] == []
    assert info["summary"] == report.summary() | {"total": info["summary"]["total"]}


def test_export_explicit_keeps_uid_and_pixels(archived, tmp_path: Path) -> None:
    study, archive, _ = archived
    report = batch.restore_tree(
        archive, tmp_path / "viewer", transfer_syntax="explicit", numthreads=THREADS
    )
    results = {f.path: f for f in report.files}
    for rel in ("CT_small.dcm", "series1/MRNOEXT", "series1/rle.dcm"):
        assert results[rel].error is None
        original = pydicom.dcmread(study / rel)
        exported = pydicom.dcmread(tmp_path / "viewer" / rel)
        assert exported.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert exported.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(exported.pixel_array, original.pixel_array)
    assert (tmp_path / "viewer" / "notes.txt").read_bytes() == (study / "notes.txt").read_bytes()
    j2k = results["series2/deeper/j2k.dcm"]  # pydicom decodes JPEG 2000 only with extra plugins
    if j2k.status == "failed":
        assert j2k.error.startswith("cannot export to Explicit VR Little Endian")
        assert report.exit_code == 1


def test_adapted_instances_restore_byte_for_byte(tmp_path: Path) -> None:
    """``adapt``: an instance whose adapter pays is archived with it (codec format 4) and the
    archive restores and verifies like any other."""
    from _archive_data import write_dicom

    import llic_imaging
    from _adapt_data import period_three

    study = tmp_path / "study"
    study.mkdir()
    path = write_dicom(study / "pattern.dcm", shape=(128, 128))
    ds = pydicom.dcmread(path)
    ds.PixelData = period_three().tobytes()
    ds.save_as(path)
    report = batch.compress_tree(study, tmp_path / "archive", numthreads=1, adapt=30)
    assert report.exit_code == 0, report.failures
    stream = (tmp_path / "archive" / "pattern.dcm.llic").read_bytes()
    assert llic_imaging.info(stream).adapted
    assert batch.verify_tree(tmp_path / "archive", against=study).exit_code == 0
    assert batch.restore_tree(tmp_path / "archive", tmp_path / "out").exit_code == 0
    assert tree_digests(tmp_path / "out") == tree_digests(study)


def test_a_deflated_instance_is_kept_verbatim(tmp_path: Path) -> None:
    """Deflated Explicit VR: the whole dataset is zlib-compressed, so like compressed Pixel Data
    it is kept as it is (also with ``transcode``), never a failure that leaves a study half done."""
    from _archive_data import write_dicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    study = tmp_path / "study"
    study.mkdir()
    path = write_dicom(study / "deflated.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    for transcode in (False, True):
        archive = tmp_path / f"archive-{transcode}"
        report = batch.compress_tree(study, archive, numthreads=THREADS, transcode=transcode)
        assert report.exit_code == 0, report.failures
        [entry] = json.loads((archive / "manifest.json").read_text())["files"]
        assert entry["status"] == "kept-compressed"
        assert entry["archived"] == "deflated.dcm.keep"
        assert batch.restore_tree(archive, tmp_path / f"out-{transcode}").exit_code == 0
        assert tree_digests(tmp_path / f"out-{transcode}") == tree_digests(study)
