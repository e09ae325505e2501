"""Tests for atomic writes and streaming hashes in ``llic_imaging._fileio``."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest

from llic_imaging import _fileio
from llic_imaging._fileio import atomic_path, sha256_file, write_atomic


def test_write_atomic_new_file(tmp_path) -> None:
    target = tmp_path / "a.llic"
    write_atomic(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert os.listdir(tmp_path) == ["a.llic"]


def test_write_atomic_replaces_and_keeps_mode(tmp_path) -> None:
    target = tmp_path / "a.llic"
    target.write_bytes(b"old contents, longer than the new ones")
    target.chmod(0o640)
    write_atomic(str(target), memoryview(b"new"))
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["a.llic"]


def test_write_atomic_new_file_honours_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o640


@pytest.mark.parametrize("fail", ["replace", "fsync"])
def test_write_atomic_failure_leaves_old_file(tmp_path, monkeypatch, fail: str) -> None:
    target = tmp_path / "a.llic"
    target.write_bytes(b"old")

    def boom(*args: object) -> None:
        msg = "disk on fire"
        raise OSError(msg)

    monkeypatch.setattr(_fileio.os, fail, boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.llic"]


def test_write_atomic_failure_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_fileio.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "a.llic", b"new")
    assert os.listdir(tmp_path) == []


def test_write_atomic_missing_directory(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "nope" / "a.llic", b"x")


def test_sha256_file(tmp_path) -> None:
    data = os.urandom(3 * 2**20 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


def test_write_atomic_takes_chunks(tmp_path) -> None:
    write_atomic(tmp_path / "a.bin", [b"ab", b"cd"])
    assert (tmp_path / "a.bin").read_bytes() == b"abcd"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_path_keeps_old_file_on_failure(tmp_path) -> None:
    dst = tmp_path / "keep.tif"
    dst.write_bytes(b"old")

    def fail() -> None:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail()
    assert dst.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]


def test_atomic_path_keeps_suffixes_and_gives_open_s_mode(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "scene.ome.tif") as tmp:
            assert tmp.name.endswith(".ome.tif")
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "scene.ome.tif").stat().st_mode) == 0o640


def test_write_atomic_mode_wins_over_old_file_and_umask(tmp_path) -> None:
    """``mode`` is the source's (llic compress/restore): a private scan gives a private output,
    whatever the umask or the mode of the file it replaces."""
    old_file = tmp_path / "old.llic"
    old_file.write_bytes(b"old")
    old_file.chmod(0o644)
    old = os.umask(0o077)
    try:
        write_atomic(old_file, b"new", mode=0o600)
        write_atomic(tmp_path / "new.llic", b"new", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE(old_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new.llic").stat().st_mode) == 0o640


def test_atomic_path_temporary_is_never_wider_than_mode(tmp_path) -> None:
    old = os.umask(0)
    try:
        with atomic_path(tmp_path / "scan.dcm", mode=0o400) as tmp:
            # the owner may write (writers reopen the file by name); nobody else may read
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "scan.dcm").stat().st_mode) == 0o400


def test_output_mode_reaches_nested_writers_and_ends_with_its_block(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        with _fileio.output_mode(0o600):
            write_atomic(tmp_path / "inside", b"x")
            write_atomic(tmp_path / "own", b"x", mode=0o640)  # an explicit mode still wins
        write_atomic(tmp_path / "after", b"x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"inside": 0o600, "own": 0o640, "after": 0o644}


def test_errors_name_the_output_not_the_temporary(tmp_path: Path) -> None:
    """A user should read ``out.bin: No space left on device``, not a hidden temporary name."""
    target = tmp_path / "missing" / "out.bin"
    with pytest.raises(FileNotFoundError) as missing, atomic_path(target):
        pass
    assert missing.value.filename == str(target)
    with pytest.raises(OSError, match="No space") as full, atomic_path(tmp_path / "out.bin"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert full.value.filename == str(tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []
