"""Crash-safe file output and streaming file hashes, shared by the API, CLI and batch runs.

Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat

__all__ = ["sha256_file", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new bytes, never less.

    An archive that is half written after a crash or a full disk looks like a file, so batch
    resumption could skip it and lose the image. The bytes therefore go to a temporary file in the
    same directory (``os.replace`` is only atomic within one filesystem), are flushed and fsynced,
    and the temporary file is renamed over ``path``; the directory is then fsynced so the rename
    itself survives a power cut. On any failure the temporary file is removed and ``path`` is left
    as it was.

    The new file gets the mode a plain ``open(path, "wb")`` would give: the old file's mode when
    ``path`` exists (a symlink's target's mode), otherwise ``0o666`` less the umask. A symlink at
    ``path`` is itself replaced by the new file; its target is left untouched.

    Raises
    ------
    OSError
        The directory is missing or not writable, the disk is full, or the rename failed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never clobber a file we did not create; 0o666 lets the umask apply as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of the file at ``path``, reading it in blocks.

    Streaming keeps memory flat for multi-gigabyte volumes, so manifests and ``--resume`` checks
    can hash inputs and outputs without loading them.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
