"""Tests for atomic writes and streaming hashes in ``llic_imaging._fileio``."""

from __future__ import annotations

import hashlib
import os
import stat

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
