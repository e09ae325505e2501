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
from pathlib import Path

__all__ = ["atomic_path", "sha256_file", "write_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, move the file written
    there over ``path``, so that ``path`` holds either the old or the new bytes, never less.

    An archive that is half written after a crash or a full disk looks like a file, so batch
    resumption could skip it and lose the image. The temporary file lives in the same directory
    (``os.replace`` is only atomic within one filesystem) and keeps ``path``'s suffixes
    (rasterio and SimpleITK choose their driver from the extension); it is fsynced before the
    rename, and the directory after it, so the rename itself survives a power cut. On any
    failure the temporary file is removed and ``path`` is left as it was.

    The new file gets the mode a plain ``open(path, "wb")`` would give: the old file's mode when
    ``path`` exists (a symlink's target's mode), otherwise ``0o666`` less the umask. A symlink at
    ``path`` is itself replaced by the new file; its target is left untouched.

    Raises
    ------
    OSError
        The directory is missing or not writable, the disk is full, or the rename failed.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    suffix = "".join(Path(name).suffixes)
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp{suffix}")
    # O_EXCL: never clobber a file we did not create; 0o666 lets the umask apply as open() would.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # directories cannot be opened for fsync on Windows
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_atomic(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview | Iterable[bytes]
) -> None:
    """Write ``data`` (bytes, or an iterable of byte chunks) to ``path`` through
    :func:`atomic_path`."""
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of the file at ``path``, reading it in blocks.

    Streaming keeps memory flat for multi-gigabyte volumes, so manifests and ``--resume`` checks
    can hash inputs and outputs without loading them.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
