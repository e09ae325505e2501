"""Bad files in a study each fail alone with a one-line error; the batch goes on, exits 1, and
``delete_originals`` removes only what was proven restorable. A DICOM instance without Pixel Data
(SR) and a non-DICOM ``.dcm`` name are not bad files: the first is stored verbatim, the second
fails. A ``.llic`` made with other weights fails ``verify`` with the model named.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _archive_data import bundled, sha256, write_dicom

from llic_imaging import batch, container
from llic_imaging.model import zoo

ERRORS = {
    "truncated.dcm": "truncated",
    "wrong_length.dcm": "Pixel Data has 500 bytes",
    "garbage.dcm": "SOP class unknown is not an image",
    "empty.dcm": "file is empty",
    "secret.dcm": "Permission denied",
}


@pytest.fixture(scope="module")
def bad_study(tmp_path_factory: pytest.TempPathFactory):
    """Compress a study of bad files plus one good instance and a text file, deleting originals."""
    root = tmp_path_factory.mktemp("bad")
    study = root / "study"
    study.mkdir()
    write_dicom(study / "good.dcm", seed=1)
    (study / "truncated.dcm").write_bytes(bundled("CT_small.dcm").read_bytes()[:20000])
    write_dicom(study / "wrong_length.dcm", pixel_bytes=bytes(500))
    write_dicom(study / "report_sr.dcm", pixels=False)
    (study / "garbage.dcm").write_bytes(b"a text file with a DICOM name\n")
    (study / "empty.dcm").write_bytes(b"")
    write_dicom(study / "secret.dcm", seed=3)
    (study / "notes.txt").write_text("keep me\n")
    secret = study / "secret.dcm"
    secret.chmod(0)
    before = {p.name: sha256(p) for p in study.iterdir() if p != secret}
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:  # root reads a chmod 0 file: deny it here as well
        if self.name == secret.name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "read_bytes", read_bytes)
        report = batch.compress_tree(study, root / "archive", delete_originals=True, numthreads=1)
    secret.chmod(0o600)
    return study, root / "archive", report, before


def test_each_bad_file_fails_alone_with_one_line(bad_study) -> None:
    _, _, report, _ = bad_study
    results = {f.path: f for f in report.files}
    assert results["good.dcm"].status == "ok"
    assert results["notes.txt"].status == "copied"
    assert results["report_sr.dcm"].status == "stored"
    assert results["report_sr.dcm"].reason == "no pixel data (Basic Text SR Storage)"
    assert {f.path for f in report.failures} == set(ERRORS)
    for name, expected in ERRORS.items():
        error = results[name].error
        assert expected in error, error
        assert "\n" not in error
        assert not error.startswith("/"), "the path is the entry's, not part of the message"
    assert report.exit_code == 1


def test_failed_entries_are_in_the_manifest(bad_study) -> None:
    _, archive, _, _ = bad_study
    info = batch.archive_info(archive)
    assert {f["path"] for f in info["failed"]} == set(ERRORS)
    assert info["summary"]["failed"]["files"] == len(ERRORS)


def test_delete_originals_removes_only_verified_files(bad_study) -> None:
    study, _, report, before = bad_study
    left = {p.name for p in study.iterdir()}
    assert left == set(ERRORS)
    for name in left - {"secret.dcm"}:
        assert sha256(study / name) == before[name], "a failed original was modified"
    deleted = {f.path for f in report.files if f.deleted}
    assert deleted == {"good.dcm", "notes.txt", "report_sr.dcm"}


def test_restore_and_verify_report_the_missing_files(bad_study, tmp_path: Path) -> None:
    _, archive, _, before = bad_study
    report = batch.restore_tree(archive, tmp_path / "out", numthreads=1)
    assert {f.path for f in report.failures} == set(ERRORS)
    assert report.exit_code == 1
    restored = {p.name: sha256(p) for p in (tmp_path / "out").iterdir()}
    assert restored == {k: before[k] for k in ("good.dcm", "notes.txt", "report_sr.dcm")}


def test_verify_names_the_model_of_a_foreign_llic(bad_study, tmp_path: Path) -> None:
    _, archive, _, _ = bad_study
    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    stream = copy / "good.dcm.llic"
    c = container.read(stream.read_bytes())
    header = dict(c.header, model_sha256="0" * 64)
    chunks = [(e.key, c.payload(i)) for i, e in enumerate(c.chunks)]
    stream.write_bytes(
        container.write(header, chunks, metadata=c.metadata, array_sha256=c.array_sha256)
    )
    report = batch.verify_tree(copy, numthreads=1)
    results = {f.path: f for f in report.failures}
    assert set(results) == {"good.dcm", *ERRORS}
    assert f"stream was made with model {zoo.DEFAULT_MODEL}" in results["good.dcm"].error
    assert "not the one the manifest recorded" in results["good.dcm"].error
    assert [f.status for f in report.files if f.path == "notes.txt"] == ["copied"]
    assert [f.status for f in report.files if f.path == "report_sr.dcm"] == ["stored"]
