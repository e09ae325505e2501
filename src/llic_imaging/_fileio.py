"""Crash-safe file output and streaming file hashes, shared by the API, CLI and batch runs.

Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

__all__ = ["atomic_path", "file_id", "output_mode", "sha256_file", "write_atomic"]

_MODE: ContextVar[int | None] = ContextVar("llic_output_mode", default=None)


@contextmanager
def output_mode(mode: int | None) -> Iterator[None]:
    """Make every :func:`atomic_path` without its own ``mode`` in this block give its file ``mode``.

    ``llic restore`` knows the archive's permissions, but the files are written by a format
    adapter two calls below it (``formats.save`` -> the adapter -> ``atomic_path``, SimpleITK's
    detached data file included); a context variable carries the mode there without a parameter
    on every adapter. It is local to the thread (and asyncio task), so parallel writers with
    other modes do not interfere. ``None`` restores the default (see :func:`atomic_path`).
    """
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, move the file written
    there over ``path``, so that ``path`` holds either the old or the new bytes, never less.

    An archive that is half written after a crash or a full disk looks like a file, so batch
    resumption could skip it and lose the image. The temporary file lives in the same directory
    (``os.replace`` is only atomic within one filesystem) and keeps ``path``'s suffixes
    (rasterio and SimpleITK choose their driver from the extension); it is fsynced before the
    rename, and the directory after it, so the rename itself survives a power cut. On any
    failure the temporary file is removed and ``path`` is left as it was.

    Without ``mode`` (here or from :func:`output_mode`) the new file gets the mode a plain
    ``open(path, "wb")`` would give: the old file's mode when ``path`` exists (a symlink's
    target's mode), otherwise ``0o666`` less the umask. With ``mode`` it gets exactly ``mode``
    (as gzip gives its output the input's mode, so a private scan gives a private archive): the
    temporary file is created with no group or other bits beyond ``mode``'s and set to ``mode``
    before the rename, so the data is never readable under wider permissions than ``mode``. A
    symlink at ``path`` is itself replaced by the new file; its target is left untouched.

    Raises
    ------
    OSError
        The directory is missing or not writable, the disk is full, or the rename failed.
    """
    path = os.fspath(path)
    mode = _MODE.get() if mode is None else mode
    directory, name = os.path.split(os.path.abspath(path))
    suffix = "".join(Path(name).suffixes)
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp{suffix}")
    # O_EXCL: never clobber a file we did not create; the umask applies as open() would. The owner
    # keeps read and write on the temporary file: writers reopen it by name.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        os.close(os.open(tmp, flags, 0o666 if mode is None else mode | 0o600))
    except OSError as exc:
        raise _naming(exc, tmp, path) from exc
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _finish_mode(tmp, path, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, tmp, path) from exc
        raise
    if os.name == "posix":  # directories cannot be opened for fsync on Windows
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _naming(exc: OSError, tmp: str, path: str) -> OSError:
    """``exc`` naming ``path`` where it named the hidden temporary file or no file at all (a
    full disk), so that a user reads ``out.llic: No space left on device``."""
    if exc.errno is None or exc.filename not in (None, tmp):
        return exc
    return type(exc)(exc.errno, exc.strerror, path)


def _finish_mode(tmp: str, path: str, mode: int | None) -> None:
    """Give the finished temporary file ``mode``, or else the mode of the file it replaces."""
    if mode is not None:
        os.chmod(tmp, mode)
        return
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview | Iterable[bytes],
    *,
    mode: int | None = None,
) -> None:
    """Write ``data`` (bytes, or an iterable of byte chunks) to ``path`` through
    :func:`atomic_path` (``mode``: see there)."""
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of the file at ``path``, reading it in blocks.

    Streaming keeps memory flat for multi-gigabyte volumes, so manifests and ``--resume`` checks
    can hash inputs and outputs without loading them.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_id(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(device, inode)`` of the file ``path`` leads to: the same file under any name or link,
    for refusing an output that would replace an input."""
    st = os.stat(path)
    return st.st_dev, st.st_ino
