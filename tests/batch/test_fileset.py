"""A study with a DICOMDIR (written by ``pydicom.fileset.FileSet``): the DICOMDIR is copied, files
it references are DICOM whatever their name, and missing or unreferenced instances are warnings,
never failures. No codec time: the instances are RLE (kept-compressed).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from _archive_data import tree_digests, write_dicom
from pydicom.fileset import FileSet

from llic_imaging import batch

SERIES = "PT000000/ST000000/SE000000"


@pytest.fixture
def fileset_study(tmp_path: Path) -> Path:
    """A file-set of three instances, one of them missing and one without the DICM preamble,
    plus an instance and a text file the DICOMDIR does not list."""
    fs = FileSet()
    for i in range(3):
        ds = pydicom.dcmread(write_dicom(tmp_path / f"{i}.dcm", rle=True, seed=i))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1", "1.2.826.0.1.3"
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        fs.add(ds)
    study = tmp_path / "study"
    fs.write(study)
    (study / SERIES / "IM000002").unlink()
    bare = study / SERIES / "IM000001"
    bare.write_bytes(bare.read_bytes()[132:])  # no preamble, no DICM, no suffix
    (study / "extra").mkdir()
    write_dicom(study / "extra" / "stray.dcm", rle=True, seed=9)
    (study / "README.TXT").write_text("viewer instructions\n")
    return study


def test_dicomdir_references_are_checked_and_kept(fileset_study: Path, tmp_path: Path) -> None:
    report = batch.compress_tree(fileset_study, tmp_path / "archive")
    assert report.exit_code == 0, report.failures
    assert {f.path: f.status for f in report.files} == {
        "DICOMDIR": "copied",
        "README.TXT": "copied",
        f"{SERIES}/IM000000": "kept-compressed",
        f"{SERIES}/IM000001": "kept-compressed",  # DICOM only because the DICOMDIR says so
        "extra/stray.dcm": "kept-compressed",
    }
    assert [(w.path, w.message) for w in report.warnings] == [
        (f"{SERIES}/IM000002", "referenced by DICOMDIR but not in the study"),
        ("extra/stray.dcm", "DICOM instance not referenced by any DICOMDIR"),
    ]
    assert report.to_dict()["warnings"][0] == {
        "path": f"{SERIES}/IM000002",
        "message": "referenced by DICOMDIR but not in the study",
    }
    info = batch.archive_info(tmp_path / "archive")
    assert info["transfer_syntaxes"]["RLE Lossless"] == 3  # the bare file is described too
    assert batch.restore_tree(tmp_path / "archive", tmp_path / "out").exit_code == 0
    assert tree_digests(tmp_path / "out") == tree_digests(fileset_study)


def test_a_dicomdir_in_a_sub_folder_and_lower_case_names(
    fileset_study: Path, tmp_path: Path
) -> None:
    """References are relative to the DICOMDIR's folder and matched regardless of case."""
    study = tmp_path / "export"
    (study / "cd1").mkdir(parents=True)
    fileset_study.rename(study / "cd1" / "media")
    series = study / "cd1" / "media" / SERIES
    (series / "IM000000").rename(series / "im000000")
    report = batch.compress_tree(study, tmp_path / "archive")
    assert [(w.path, w.message) for w in report.warnings] == [
        (f"cd1/media/{SERIES}/IM000002", "referenced by cd1/media/DICOMDIR but not in the study"),
        ("cd1/media/extra/stray.dcm", "DICOM instance not referenced by any DICOMDIR"),
    ]


def test_an_unreadable_dicomdir_is_a_warning(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    (study / "DICOMDIR").write_bytes(b"not a directory\n")
    report = batch.compress_tree(study, tmp_path / "archive")
    assert report.exit_code == 0
    assert [f.status for f in report.files] == ["copied"]
    [warning] = report.warnings
    assert warning.path == "DICOMDIR"
    assert warning.message.startswith("cannot read the DICOMDIR's directory records")


def test_without_the_dicomdir_a_bare_file_is_not_dicom(fileset_study: Path, tmp_path: Path):
    (fileset_study / "DICOMDIR").unlink()
    report = batch.compress_tree(fileset_study, tmp_path / "archive")
    assert {f.path: f.status for f in report.files}[f"{SERIES}/IM000001"] == "copied"
    assert report.warnings == []
