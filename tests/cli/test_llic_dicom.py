"""The ``llic-dicom`` console script: exit codes, tables, JSON, and a killed run that resumes.

Most tests use studies of already-compressed instances (kept verbatim, no codec time); the
fault test codes one small instance, the first in walking order, and keeps five.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from llic_imaging.batch.manifest import lock
from llic_imaging.cli.llic_dicom import main

KEPT = [
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "MR_small_jp2klossless.dcm",
]


# One torch thread: on two busy cores, two threads made a 128x128 decode 80x slower.
_ONE_THREAD = ["--threads", "1"]
_SCRIPT = "import sys; from llic_imaging.cli.llic_dicom import main; sys.exit(main())"


def _copy(name: str, dest: Path) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    return dest


def _digests(root: Path) -> dict[str, str]:
    """Every file below ``root``, hidden ones included, with its sha256."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    _copy("MR_small_RLE.dcm", root / "series" / "IM0001")
    _copy("SC_rgb_rle.dcm", root / "series" / "IM0002.dcm")
    (root / "notes.txt").write_text("consent on file\n")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [[], ["compress"], ["restore"], ["verify"], ["info"]])
def test_help_has_an_example(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = _run(capsys, *command, "--help")
    assert code == 0
    assert "Example" in out
    assert "llic-dicom " in out.split("Example")[1]


def test_compress_restore_verify_info(
    capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    code, text, err = _run(capsys, "compress", study, "-o", archive, "--adapt")
    assert (code, err) == (0, "")  # --adapt (library: tests/batch) changes no kept file
    assert "kept-compressed      2" in text
    assert "compress: 3 files in" in text
    assert "bytes in" in text
    code, text, _ = _run(capsys, "compress", study, "-o", archive, "--json", "-")
    report = json.loads(text)
    assert code == 0
    assert report["summary"]["skipped"]["files"] == 3
    assert report["failures"] == 0
    assert _run(capsys, "restore", archive, "-o", out)[0] == 0
    assert _digests(out) == _digests(study)
    code, text, _ = _run(capsys, "verify", archive, "--against", study)
    assert code == 0
    assert "verify: 3 files in" in text
    code, text, _ = _run(capsys, "info", archive)
    assert code == 0
    assert "RLE Lossless" in text
    code, text, _ = _run(capsys, "info", archive, "--json")
    assert json.loads(text)["files"] == 3


def test_json_report_to_a_file(capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path):
    code, text, _ = _run(
        capsys, "compress", study, "-o", tmp_path / "a", "--json", tmp_path / "r.json"
    )
    assert code == 0
    assert "total" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert [f["path"] for f in report["files"]] == [
        "notes.txt",
        "series/IM0001",
        "series/IM0002.dcm",
    ]


def test_a_bad_file_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path
) -> None:
    (study / "series" / "IM0003.dcm").write_bytes(b"")
    code, text, err = _run(capsys, "compress", study, "-o", tmp_path / "a")
    assert code == 1
    assert err.splitlines() == [f"{study / 'series' / 'IM0003.dcm'}: file is empty"]
    assert "1 failed" in text
    assert _run(capsys, "verify", tmp_path / "a")[0] == 1


def test_archive_name_clash_is_one_line_per_file_and_exit_1(
    capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path
) -> None:
    (study / "notes.txt.keep").mkdir()
    (study / "notes.txt.keep" / "old.txt").write_text("older notes\n")
    code, _, err = _run(capsys, "compress", study, "-o", tmp_path / "a")
    assert code == 1
    assert err.splitlines() == [
        f"{study / 'notes.txt'}: archive name clash: notes.txt.keep would be this file's "
        "archived file and the folder of notes.txt.keep/old.txt; rename one of them",
        f"{study / 'notes.txt.keep' / 'old.txt'}: archive name clash: notes.txt.keep would be "
        "this file's folder and the archived file of notes.txt; rename one of them",
    ]
    assert not (tmp_path / "a" / "notes.txt.keep").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path):
    assert _run(capsys, "compress", study)[0] == 2  # no -o
    assert _run(capsys, "compress", study, "-o", study / "archive")[0] == 2
    code, _, err = _run(capsys, "restore", study, "-o", tmp_path / "out")
    assert code == 2
    assert "not an llic-dicom archive" in err
    assert _run(capsys, "restore", study, "-o", tmp_path / "o", "--transfer-syntax", "j2k")[0] == 2
    assert _run(capsys, "verify", tmp_path / "missing")[0] == 2


def test_a_locked_archive_is_a_data_error(
    capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "a"
    archive.mkdir()
    with lock(archive):
        code, _, err = _run(capsys, "compress", study, "-o", archive)
    assert code == 1
    assert "in use by another llic-dicom run" in err


def test_restore_as_explicit_vr_for_viewers(
    capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path
) -> None:
    assert _run(capsys, "compress", study, "-o", tmp_path / "a")[0] == 0
    code, _, _ = _run(
        capsys, "restore", tmp_path / "a", "-o", tmp_path / "v", "--transfer-syntax", "explicit"
    )
    assert code == 0
    for rel in ("series/IM0001", "series/IM0002.dcm"):
        original, exported = pydicom.dcmread(study / rel), pydicom.dcmread(tmp_path / "v" / rel)
        assert exported.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert exported.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(exported.pixel_array, original.pixel_array)


def test_transcode_and_warnings(
    capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path
) -> None:
    """--transcode keeps what it cannot rebuild (with the reason in the JSON report); a DICOMDIR
    that lists a missing file is a warning on stderr, exit 0; an SR is stored verbatim."""
    _copy("dicomdirtests/DICOMDIR", study / "DICOMDIR")
    _copy("JPEG2000.dcm", study / "series" / "IM0003")
    sr = pydicom.dcmread(_copy("MR_small_RLE.dcm", study / "series" / "SR0001"))
    del sr.PixelData
    sr.SOPClassUID = pydicom.uid.BasicTextSRStorage
    sr.save_as(study / "series" / "SR0001")
    code, text, err = _run(
        capsys,
        "compress",
        study,
        "-o",
        tmp_path / "a",
        "--transcode",
        "--json",
        tmp_path / "r.json",
    )
    assert code == 0
    assert f"{study / '77654033' / 'CR1' / '6154'}: warning: referenced by DICOMDIR" in err
    assert "stored               1" in text
    assert "warnings" in text.splitlines()[-1]
    report = json.loads((tmp_path / "r.json").read_text())
    reasons = {f["path"]: f["reason"] for f in report["files"]}
    assert reasons["series/IM0003"].startswith("--transcode: no encoder here rebuilds JPEG 2000")
    assert reasons["series/SR0001"] == "no pixel data (Basic Text SR Storage)"
    assert len(report["warnings"]) == 31 + 4  # missing references; the four instances
    assert _run(capsys, "restore", tmp_path / "a", "-o", tmp_path / "out")[0] == 0
    assert _digests(tmp_path / "out") == _digests(study)


def test_delete_originals(capsys: pytest.CaptureFixture[str], study: Path, tmp_path: Path):
    (study / "empty.dcm").write_bytes(b"")
    code, _, _ = _run(capsys, "compress", study, "-o", tmp_path / "a", "--delete-originals")
    assert code == 1
    assert [p.name for p in study.rglob("*") if p.is_file()] == ["empty.dcm"]


def test_killed_compress_resumes_without_duplicates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study, archive = tmp_path / "study", tmp_path / "archive"
    _copy("CT_small.dcm", study / "a" / "CT_small.dcm")  # coded, first in walking order
    for i, name in enumerate(KEPT):
        _copy(name, study / "b" / f"IM{i:04d}")
    (study / "b" / "notes.txt").write_text("series notes\n")
    originals = _digests(study)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, "compress", str(study), "-o", str(archive), *_ONE_THREAD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(archive.rglob("*.llic")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no .llic appeared"
            time.sleep(0.02)
        still_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert still_running
    listed = json.loads((archive / "manifest.json").read_text())["files"]
    assert len(listed) < len(originals), "the killed run had already finished"

    code, _, err = _run(capsys, "compress", study, "-o", archive, *_ONE_THREAD)
    assert (code, err) == (0, "")
    assert _digests(study) == originals, "an original was modified"
    entries = json.loads((archive / "manifest.json").read_text())["files"]
    assert [e["path"] for e in entries] == sorted(originals)
    assert {e["path"]: e["status"] for e in entries} == {
        "a/CT_small.dcm": "ok",
        "b/notes.txt": "copied",
        **{f"b/IM{i:04d}": "kept-compressed" for i in range(len(KEPT))},
    }
    stored = _digests(archive)
    assert set(stored) == {"manifest.json"} | {e["archived"] for e in entries}, "leftovers"
    assert all(stored[e["archived"]] == e["archived_sha256"] for e in entries)


def _version(path: Path, value: int) -> Path:
    """Give the CT instance at ``path`` another first pixel: a new version of the same file."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    pixels[0, 0] = value
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)
    return path


@pytest.mark.skipif(sys.platform != "linux", reason="watches the run's reads with inotify")
def test_a_source_changing_during_compress_keeps_the_verified_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real run reads a source, which then changes before the run loads its pixels: the new
    stream fails verification, and the copy an earlier run verified stays, as the manifest
    says (it was overwritten, then deleted)."""
    study, archive = tmp_path / "study", tmp_path / "archive"
    source = _copy("CT_small.dcm", study / "CT_small.dcm")
    assert _run(capsys, "compress", study, "-o", archive, *_ONE_THREAD)[0] == 0
    first = source.read_bytes()
    _version(source, 1)  # archived again by the next run...
    later = _version(_copy("CT_small.dcm", tmp_path / "later.dcm"), 2)  # ...while it changes
    libc = ctypes.CDLL(None, use_errno=True)
    watch = libc.inotify_init()
    assert watch >= 0
    try:
        assert libc.inotify_add_watch(watch, bytes(source), 0x10) >= 0  # IN_CLOSE_NOWRITE
        proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, "compress", str(study), "-o", str(archive)]
            + _ONE_THREAD,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The run's first read of the source (walking only stats it) is the whole file; the
        # format adapter reads it again after pydicom has parsed its header.
        assert select.select([watch], [], [], 120)[0], "the run did not read the source"
        os.replace(later, source)
        _, err = proc.communicate(timeout=240)
    finally:
        os.close(watch)
    assert proc.returncode == 1
    assert err.startswith(f"{source}: verification failed: ")
    entry = json.loads((archive / "manifest.json").read_text())["files"][0]
    assert entry["sha256"] == hashlib.sha256(first).hexdigest()
    assert entry["error"].startswith("last compress failed: verification failed")
    assert _digests(archive) == {
        "manifest.json": _digests(archive)["manifest.json"],
        "CT_small.dcm.llic": entry["archived_sha256"],
    }
    assert _run(capsys, "verify", archive, *_ONE_THREAD)[0] == 0
    assert _run(capsys, "restore", archive, "-o", tmp_path / "out", *_ONE_THREAD)[0] == 0
    assert (tmp_path / "out" / "CT_small.dcm").read_bytes() == first


def test_a_bug_is_exit_3(
    capsys: pytest.CaptureFixture[str],
    study: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llic_imaging import batch

    def broken(*args: object, **kwargs: object) -> None:
        msg = "boom"
        raise RuntimeError(msg)

    monkeypatch.setattr(batch, "compress_tree", broken)
    code, _, err = _run(capsys, "compress", study, "-o", tmp_path / "a")
    assert code == 3
    assert err.strip() == (
        "llic-dicom: unexpected error, please report it: RuntimeError: boom "
        "(run with -v for the traceback)"
    )
