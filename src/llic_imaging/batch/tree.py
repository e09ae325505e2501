"""Listing a folder tree for the archive commands: every entry, with what prevents archiving it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_apart", "walk"]


def walk(root: Path) -> list[tuple[str, Path, str | None]]:
    """List ``(relpath, path, problem)`` for everything below ``root``, sorted by relpath.

    Nothing may be dropped silently, so what cannot be read as a file is listed with a
    ``problem`` (unreadable folder, symbolic link to a folder, socket, broken link) instead of
    being left out. Symbolic links to files are listed as files: the archive stores the target's
    bytes. Relpaths use ``/`` on every platform, as the manifest does.
    """
    found: list[tuple[str, Path, str | None]] = []

    def listing_failed(exc: OSError) -> None:
        path = Path(exc.filename or root)
        found.append((path.relative_to(root).as_posix(), path, f"cannot list: {exc.strerror}"))

    for top, dirs, names in os.walk(root, onerror=listing_failed):
        for name in dirs:
            path = Path(top, name)
            if path.is_symlink():
                problem = "symbolic link to a folder; not followed"
                found.append((path.relative_to(root).as_posix(), path, problem))
        for name in names:
            path = Path(top, name)
            problem = None
            if not path.exists():
                problem = "broken symbolic link"
            elif not path.is_file():
                problem = "not a regular file"
            found.append((path.relative_to(root).as_posix(), path, problem))
    return sorted(found, key=lambda item: item[0])


def check_apart(a: Path, b: Path) -> None:
    """Refuse two folders of which one contains the other.

    An archive inside its study would archive itself on the next run; a restore into its
    archive could overwrite archived files with restored ones of the same name.

    Raises
    ------
    ValueError
        If ``a`` and ``b`` are the same folder or one is inside the other.
    """
    ra, rb = a.resolve(), b.resolve()
    if ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra):
        msg = f"{a} and {b} must not be the same folder or inside each other"
        raise ValueError(msg)
