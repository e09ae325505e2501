"""Resume, crash and safety semantics of the archive, on studies that need no codec time
(kept-compressed instances and plain files), plus the export path of ``batch.dicom``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _archive_data import bundled, sha256, tree_digests

from llic_imaging import batch
from llic_imaging.batch import dicom
from llic_imaging.batch.manifest import SCRATCH_MARKER, lock
from llic_imaging.errors import FormatError


def _entries(archive: Path) -> dict[str, dict]:
    return {e["path"]: e for e in json.loads((archive / "manifest.json").read_text())["files"]}


def test_light_study_round_trip(light_study: Path, tmp_path: Path) -> None:
    report = batch.compress_tree(light_study, tmp_path / "a")
    assert {f.path: f.status for f in report.files} == {
        "README.txt": "copied",
        "series/IM0001": "kept-compressed",
        "series/IM0002.dcm": "kept-compressed",
    }
    assert batch.restore_tree(tmp_path / "a", tmp_path / "out").exit_code == 0
    assert tree_digests(tmp_path / "out") == tree_digests(light_study)
    assert batch.verify_tree(tmp_path / "a", against=light_study).exit_code == 0


def test_no_resume_archives_again(light_study: Path, tmp_path: Path) -> None:
    batch.compress_tree(light_study, tmp_path / "a")
    report = batch.compress_tree(light_study, tmp_path / "a", resume=False)
    assert "skipped" not in {f.status for f in report.files}
    assert len(_entries(tmp_path / "a")) == 3


def test_changed_or_damaged_files_are_archived_again(light_study: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a"
    batch.compress_tree(light_study, archive)
    (light_study / "README.txt").write_text("second version\n")
    (archive / "series" / "IM0001.keep").write_bytes(b"bit rot")
    report = batch.compress_tree(light_study, archive)
    statuses = {f.path: f.status for f in report.files}
    assert statuses == {
        "README.txt": "copied",
        "series/IM0001": "kept-compressed",
        "series/IM0002.dcm": "skipped",
    }
    assert _entries(archive)["README.txt"]["sha256"] == sha256(light_study / "README.txt")
    assert sha256(archive / "series" / "IM0001.keep") == sha256(light_study / "series" / "IM0001")


def test_a_failed_attempt_keeps_the_earlier_copy(light_study: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a"
    batch.compress_tree(light_study, archive)
    good = (light_study / "README.txt").read_bytes()
    (light_study / "README.txt").write_bytes(b"")
    report = batch.compress_tree(light_study, archive)
    assert [f.error for f in report.failures] == ["file is empty"]
    entry = _entries(archive)["README.txt"]
    assert entry["status"] == "copied"
    assert entry["error"] == "last compress failed: file is empty"
    batch.restore_tree(archive, tmp_path / "out")
    assert (tmp_path / "out" / "README.txt").read_bytes() == good


def test_interrupted_run_keeps_the_finished_files(light_study: Path, tmp_path: Path) -> None:
    def stop_after_first(done: int, total: int, report: batch.FileReport) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch.compress_tree(light_study, tmp_path / "a", progress=stop_after_first)
    assert list(_entries(tmp_path / "a")) == ["README.txt"]
    report = batch.compress_tree(light_study, tmp_path / "a")
    assert [f.status for f in report.files] == ["skipped", "kept-compressed", "kept-compressed"]


def test_stale_temporaries_of_a_killed_run_are_removed(light_study: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a"
    batch.compress_tree(light_study, archive)
    (archive / ".llic-dicom-k1ll3d").mkdir()
    (archive / ".llic-dicom-k1ll3d" / SCRATCH_MARKER).touch()
    (archive / ".llic-dicom-k1ll3d" / "restored").write_bytes(b"x")
    (archive / "series" / ".IM0001.keep.0123456789abcdef.tmp").write_bytes(b"half")
    (archive / ".manifest.json.fedcba9876543210.tmp").write_bytes(b"{")
    batch.compress_tree(light_study, archive)
    assert set(tree_digests(archive)) == {
        "manifest.json",
        "README.txt.keep",
        "series/IM0001.keep",
        "series/IM0002.dcm.keep",
    }
    assert not (archive / ".llic-dicom-k1ll3d").exists()


def test_names_like_the_tools_own_temporaries_are_study_data(
    light_study: Path, tmp_path: Path
) -> None:
    """A study folder with the scratch prefix, and a file whose archived name looks like a
    temporary of another archived file, survive the next compress and restore (they were wiped,
    after ``delete_originals`` had deleted their sources)."""
    (light_study / ".llic-dicom-notes").mkdir()
    (light_study / ".llic-dicom-notes" / SCRATCH_MARKER).write_text("my notes\n")
    (light_study / ".README.txt.keep.0123456789abcdef.tmp").write_text("mine too\n")
    originals = tree_digests(light_study)
    archive, out = tmp_path / "a", tmp_path / "out"
    assert batch.compress_tree(light_study, archive, delete_originals=True).exit_code == 0
    assert not [p for p in light_study.rglob("*") if p.is_file()]
    archived = tree_digests(archive)
    assert batch.compress_tree(light_study, archive).exit_code == 0
    assert tree_digests(archive).keys() == archived.keys()
    assert batch.verify_tree(archive).exit_code == 0
    for _ in range(2):  # the second restore looks for the temporaries of a killed first one
        assert batch.restore_tree(archive, out).exit_code == 0
        assert tree_digests(out) == originals


@pytest.mark.parametrize("name", ["a\\b.txt", "..\\up.txt", "series\\IM0003"])
def test_backslash_names_are_archived_and_restored(
    light_study: Path, tmp_path: Path, name: str
) -> None:
    """On POSIX a backslash is part of a file name: the archive of such a file must load (it
    did not, after ``delete_originals`` had deleted the source)."""
    (light_study / name).write_text("a backslash in the name\n")
    originals = tree_digests(light_study)
    archive = tmp_path / "a"
    report = batch.compress_tree(light_study, archive, delete_originals=True)
    assert report.exit_code == 0, report.failures
    assert (archive / f"{name}.keep").is_file()
    assert batch.verify_tree(archive).exit_code == 0
    assert batch.restore_tree(archive, tmp_path / "out").exit_code == 0
    assert tree_digests(tmp_path / "out") == originals
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {name}


def test_archive_name_clashes_are_refused_before_writing(tmp_path: Path) -> None:
    """``X`` would be archived as ``X.keep`` (or ``X.llic``), which a study folder ``X.keep/``
    also needs, as a folder ``manifest.json/`` needs the manifest's name: both sides fail,
    naming each other, and nothing of them is written."""
    study, archive = tmp_path / "study", tmp_path / "a"
    for rel in ("X", "X.keep/Y", "X.llic.d/Z", "manifest.json/M", "fine.txt"):
        (study / rel).parent.mkdir(parents=True, exist_ok=True)
        (study / rel).write_text(f"{rel}\n")
    report = batch.compress_tree(study, archive)
    clash = "archive name clash: "
    assert {f.path: f.error for f in report.failures} == {
        "X": f"{clash}X.keep would be this file's archived file and the folder of X.keep/Y; "
        "rename one of them",
        "X.keep/Y": f"{clash}X.keep would be this file's folder and the archived file of X; "
        "rename one of them",
        "manifest.json/M": f"{clash}manifest.json would be this file's folder and the archive's "
        "manifest; rename one of them",
    }
    assert set(tree_digests(archive)) == {"manifest.json", "fine.txt.keep", "X.llic.d/Z.keep"}


def test_a_new_folder_cannot_take_the_name_of_an_archived_file(
    light_study: Path, tmp_path: Path
) -> None:
    """The clash check also knows the archived files of sources deleted since."""
    archive = tmp_path / "a"
    batch.compress_tree(light_study, archive, delete_originals=True)
    (light_study / "README.txt.keep").mkdir()
    (light_study / "README.txt.keep" / "later.txt").write_text("added after the first run\n")
    report = batch.compress_tree(light_study, archive)
    assert [(f.path, f.error) for f in report.failures] == [
        (
            "README.txt.keep/later.txt",
            "archive name clash: README.txt.keep would be this file's folder and the archived "
            "file of README.txt; rename one of them",
        )
    ]
    assert batch.restore_tree(archive, tmp_path / "out").exit_code == 1
    assert (tmp_path / "out" / "README.txt").read_text() == "acquired on the test scanner\n"


def test_a_second_writer_is_refused(light_study: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a"
    archive.mkdir()
    with lock(archive), pytest.raises(BlockingIOError, match="in use by another llic-dicom run"):
        batch.compress_tree(light_study, archive)


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b", ""])
def test_manifest_paths_cannot_leave_the_folder(
    light_study: Path, tmp_path: Path, path: str
) -> None:
    archive = tmp_path / "a"
    batch.compress_tree(light_study, archive)
    manifest = json.loads((archive / "manifest.json").read_text())
    manifest["files"][0]["path"] = path
    (archive / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="not a relative path inside the archive"):
        batch.restore_tree(archive, tmp_path / "out")


def test_folder_arguments_are_checked(light_study: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inside each other"):
        batch.compress_tree(light_study, light_study / "archive")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="not empty and not an llic-dicom archive"):
        batch.compress_tree(light_study, tmp_path / "busy")
    with pytest.raises(ValueError, match="no manifest.json"):
        batch.restore_tree(light_study, tmp_path / "out")
    with pytest.raises(ValueError, match="transfer syntax"):
        batch.restore_tree(light_study, tmp_path / "out", transfer_syntax="jpeg2000")
    assert not (light_study / "archive").exists()


def test_nothing_is_dropped_silently(light_study: Path, tmp_path: Path) -> None:
    (light_study / "linked").symlink_to(light_study / "series", target_is_directory=True)
    (light_study / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(light_study / "pipe")
    report = batch.compress_tree(light_study, tmp_path / "a")
    errors = {f.path: f.error for f in report.failures}
    assert errors == {
        "linked": "symbolic link to a folder; not followed",
        "dangling": "broken symbolic link",
        "pipe": "not a regular file",
    }


def test_restore_checks_before_it_writes_and_never_clobbers(
    light_study: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "a"
    batch.compress_tree(light_study, archive)
    (archive / "README.txt.keep").write_text("tampered\n")
    out = tmp_path / "out"
    (out / "series").mkdir(parents=True)
    (out / "series" / "IM0001").write_text("someone else's file\n")
    report = batch.restore_tree(archive, out)
    errors = {f.path: f.error for f in report.failures}
    assert "the manifest says" in errors["README.txt"]
    assert "exists and differs" in errors["series/IM0001"]
    assert not (out / "README.txt").exists()
    assert (out / "series" / "IM0001").read_text() == "someone else's file\n"
    again = batch.restore_tree(archive, out, overwrite=True)
    assert {f.path for f in again.failures} == {"README.txt"}
    assert sha256(out / "series" / "IM0001") == sha256(light_study / "series" / "IM0001")


def test_delete_originals_after_a_resumed_run(light_study: Path, tmp_path: Path) -> None:
    batch.compress_tree(light_study, tmp_path / "a")
    report = batch.compress_tree(light_study, tmp_path / "a", delete_originals=True)
    assert all(f.deleted for f in report.files)
    assert not [p for p in light_study.rglob("*") if p.is_file()]
    batch.restore_tree(tmp_path / "a", light_study)
    assert batch.verify_tree(tmp_path / "a", against=light_study).exit_code == 0


@pytest.mark.parametrize("syntax", sorted(dicom.EXPORT_SYNTAXES))
@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm"]
)
def test_export_keeps_uid_and_pixels(name: str, syntax: str) -> None:
    source = bundled(name)
    out = dicom.export(source.read_bytes(), syntax)
    original = pydicom.dcmread(source)
    exported = pydicom.dcmread(pydicom.filebase.DicomBytesIO(out))
    assert exported.file_meta.TransferSyntaxUID == dicom.EXPORT_SYNTAXES[syntax]
    assert exported.SOPInstanceUID == original.SOPInstanceUID
    assert exported.PatientName == original.PatientName
    assert np.array_equal(exported.pixel_array, original.pixel_array)


def test_export_names_what_pydicom_cannot_decode() -> None:
    from pydicom.pixels.decoders import JPEG2000Decoder

    if JPEG2000Decoder.is_available:
        pytest.skip("a JPEG 2000 decoder plugin is installed here")
    with pytest.raises(FormatError, match="cannot export to Explicit VR Little Endian: Unable"):
        dicom.export(bundled("JPEG2000.dcm").read_bytes(), "explicit")
