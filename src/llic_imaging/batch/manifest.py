"""The archive manifest (``manifest.json``): one entry per source file, saved atomically, plus
the archive lock, the runs' scratch folders and the removal of temporary files a killed run
left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from llic_imaging import __version__
from llic_imaging._fileio import write_atomic
from llic_imaging.errors import FormatError

__all__ = [
    "ARCHIVED",
    "MANIFEST",
    "SCRATCH_MARKER",
    "STATUSES",
    "TEMP_PREFIX",
    "Entry",
    "Manifest",
    "lock",
    "remove_stale_temporaries",
    "scratch_dir",
]

MANIFEST = "manifest.json"
KIND = "llic-dicom-archive"
VERSION = 1
# ok: coded by llic; kept-compressed: encapsulated DICOM stored verbatim; stored: DICOM without
# Pixel Data (SR, KO, PR, ...) stored verbatim; copied: any other file (DICOMDIR, reports, ...)
# stored verbatim; failed: not archived, ``error`` says why.
STATUSES = ("ok", "kept-compressed", "stored", "copied", "failed")
ARCHIVED = frozenset(STATUSES[:4])
TEMP_PREFIX = ".llic-dicom-"
# Inside every scratch folder: what tells a later run that a folder is one it may remove. The
# study cannot forge it in an archive, where every file it puts ends in .llic or .keep.
SCRATCH_MARKER = ".llic-dicom-scratch"
# Temporary names of ``_fileio.atomic_path``: ".<name>.<16 hex digits>.tmp<name's suffixes>"
# beside the target (group 1: the target's name).
_WRITE_ATOMIC_TEMP = re.compile(r"^\.(.+)\.[0-9a-f]{16}\.tmp(\.[^/]*)?$")
_FLUSH_SECONDS = 1.0


@dataclass
class Entry:
    """What the archive knows about one source file (the JSON object in ``manifest.json``).

    ``reason`` says why a DICOM instance is stored verbatim instead of coded: no Pixel Data, or
    why ``--transcode`` could not recode its compressed pixels.
    """

    path: str
    size: int | None
    sha256: str | None
    status: str
    sop_instance_uid: str | None = None
    transfer_syntax: str | None = None
    archived: str | None = None
    archived_size: int | None = None
    archived_sha256: str | None = None
    model: str | None = None
    reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Any) -> Entry:
        """Validate one manifest entry: a hostile manifest must not make restore write elsewhere."""
        if not isinstance(obj, dict):
            msg = f"manifest entry is not an object: {obj!r}"
            raise FormatError(msg)
        names = {f.name for f in fields(cls)}
        try:
            entry = cls(**{k: v for k, v in obj.items() if k in names})
        except TypeError as exc:
            msg = f"manifest entry {obj.get('path')!r} is incomplete: {exc}"
            raise FormatError(msg) from exc
        if entry.status not in STATUSES:
            msg = f"manifest entry {entry.path!r} has unknown status {entry.status!r}"
            raise FormatError(msg)
        for value in (entry.path, entry.archived):
            if value is not None and not _is_safe_relpath(value):
                msg = f"manifest entry path {value!r} is not a relative path inside the archive"
                raise FormatError(msg)
        if entry.status in ARCHIVED and (entry.archived is None or entry.archived_sha256 is None):
            msg = f"manifest entry {entry.path!r} is {entry.status} but names no archived file"
            raise FormatError(msg)
        return entry


def _is_safe_relpath(value: object) -> bool:
    """Whether ``value`` is a normalised ``/``-separated path that stays inside its folder.

    A backslash is an ordinary character in POSIX file names, so a study may hold ``a\\b`` and
    its archive must load; on Windows it is a separator (and no file name holds one), so there
    it is refused rather than read as a path that could climb out.
    """
    if not isinstance(value, str) or not value or "\0" in value:
        return False
    if os.sep == "\\" and "\\" in value:
        return False
    p = PurePosixPath(value)
    return not p.is_absolute() and ".." not in p.parts and str(p) == value


class Manifest:
    """The entries of one archive, keyed by source path, saved with ``write_atomic``.

    ``save`` rewrites the whole JSON file, so during a batch :meth:`flush` saves at most once a
    second: a crash loses at most that much finished work (which a rerun redoes), while a study
    of ten thousand files does not rewrite megabytes of JSON after every file.
    """

    def __init__(self, root: Path, entries: dict[str, Entry], header: dict[str, Any]):
        self.root = root
        self.entries = entries
        self.header = header
        self._saved_at = time.monotonic()

    @property
    def path(self) -> Path:
        return self.root / MANIFEST

    @classmethod
    def new(cls, root: Path, source: Path) -> Manifest:
        now = _now()
        header = {
            "source": str(source),
            "created": now,
            "updated": now,
            "llic_imaging": __version__,
        }
        return cls(root, {}, header)

    @classmethod
    def load(cls, root: Path) -> Manifest:
        """Read ``root/manifest.json``.

        Raises
        ------
        ValueError
            If there is no manifest: ``root`` is not an archive (a usage error, not bad data).
        FormatError
            If the manifest is not valid JSON of this kind and version, or an entry is malformed.
        """
        path = root / MANIFEST
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            msg = f"{root}: not an llic-dicom archive (no {MANIFEST})"
            raise ValueError(msg) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path}: manifest is not valid JSON: {exc}"
            raise FormatError(msg) from exc
        if not isinstance(obj, dict) or obj.get("kind") != KIND:
            msg = f"{path}: not an llic-dicom manifest"
            raise FormatError(msg)
        if obj.get("version") != VERSION:
            msg = f"{path}: manifest version {obj.get('version')!r} is not {VERSION}; use the llic-imaging version that wrote it"
            raise FormatError(msg)
        files = obj.get("files")
        if not isinstance(files, list):
            msg = f"{path}: manifest has no file list"
            raise FormatError(msg)
        try:
            entries = [Entry.from_dict(f) for f in files]
        except FormatError as exc:
            msg = f"{path}: {exc}"
            raise FormatError(msg) from exc
        header = {k: v for k, v in obj.items() if k not in ("kind", "version", "files")}
        return cls(root, {e.path: e for e in entries}, header)

    @classmethod
    def open(cls, root: Path, source: Path) -> Manifest:
        """Load the manifest of the archive ``root`` for writing, or start one if ``root`` is empty.

        Call it holding :func:`lock`. Stale temporaries of a killed run are removed first. A new
        manifest is saved at once: a folder holding archived files then always holds a manifest,
        so a run killed after its first file can be resumed.

        Raises
        ------
        ValueError
            If ``root`` holds other files but no manifest: it is not an archive to write into.
        FormatError
            If the manifest is damaged.
        """
        if (root / MANIFEST).exists():
            manifest = cls.load(root)
            remove_stale_temporaries(root, manifest.archived_files())
            return manifest
        # A run killed while saving its first manifest leaves only that manifest's temporary.
        first_save = [p for p in root.iterdir() if _WRITE_ATOMIC_TEMP.match(p.name)]
        first_save = [p for p in first_save if p.name.startswith(f".{MANIFEST}.")]
        if any(p not in first_save for p in root.iterdir()):
            msg = f"{root}: not empty and not an llic-dicom archive; choose a new or empty folder"
            raise ValueError(msg)
        for path in first_save:
            path.unlink(missing_ok=True)
        manifest = cls.new(root, source)
        manifest.save()
        return manifest

    def archived_files(self) -> set[Path]:
        """The archived files the entries name: data, whatever their names look like."""
        return {self.root / e.archived for e in self.entries.values() if e.archived}

    def save(self) -> None:
        """Write the manifest atomically: a reader sees the previous or the new one, whole."""
        self.header["updated"] = _now()
        obj = {
            "kind": KIND,
            "version": VERSION,
            **self.header,
            "files": [self.entries[k].to_dict() for k in sorted(self.entries)],
        }
        write_atomic(self.path, (json.dumps(obj, indent=1) + "\n").encode())
        self._saved_at = time.monotonic()

    def flush(self) -> None:
        """Save if the last save is more than a second old (see the class docstring)."""
        if time.monotonic() - self._saved_at >= _FLUSH_SECONDS:
            self.save()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextlib.contextmanager
def lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (``flock`` on the directory itself).

    Two runs writing one archive would overwrite each other's manifest. The kernel drops the
    lock when the process dies, even by SIGKILL, so a crash never leaves a stale lock and no
    lock file is left in the archive.

    Raises
    ------
    BlockingIOError
        If another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; single-writer use is the caller's duty there
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"{directory}: in use by another llic-dicom run"
            raise BlockingIOError(errno.EWOULDBLOCK, msg) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_dir(parent: Path) -> Iterator[Path]:
    """Yield a new private folder in ``parent`` (same disk as the outputs), removed on exit.

    It holds :data:`SCRATCH_MARKER`, so that :func:`remove_stale_temporaries` removes it after a
    killed run but never a study folder that merely has a ``.llic-dicom-`` name.
    """
    with tempfile.TemporaryDirectory(dir=parent, prefix=TEMP_PREFIX) as path:
        (Path(path) / SCRATCH_MARKER).touch()
        yield Path(path)


def remove_stale_temporaries(
    directory: Path, keep: Collection[Path], targets: Collection[Path] | None = None
) -> list[Path]:
    """Remove what a killed run left in ``directory``; return the removed paths.

    Only what this package creates is touched: the :func:`scratch_dir` folders at the top of
    ``directory`` (recognised by their marker, not by their name) and ``write_atomic``
    temporaries below it, all of them in an archive (``targets=None``), or only those of the
    files in ``targets`` in a restore folder that may hold other people's files. No file in
    ``keep``, and no folder holding one, is removed whatever its name looks like: pass the
    archived files the manifest lists, or the files a restore writes (a study may hold a file
    named like a temporary, or a folder holding a marker). Call it while holding :func:`lock`,
    so that no live run's temporaries are removed.
    """
    removed: list[Path] = []
    for path in directory.glob(f"{TEMP_PREFIX}*"):
        if _is_stale_scratch(path, keep):
            shutil.rmtree(path)
            removed.append(path)
    for top, _, names in os.walk(directory):
        for name in names:
            found = _WRITE_ATOMIC_TEMP.match(name)
            path = Path(top) / name
            if not found or path in keep:
                continue
            if targets is None or path.with_name(found.group(1)) in targets:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _is_stale_scratch(path: Path, keep: Collection[Path]) -> bool:
    """A :func:`scratch_dir` left behind: marked, and holding nothing in ``keep``."""
    if path.is_symlink() or not (path / SCRATCH_MARKER).is_file():
        return False
    return not any(k.is_relative_to(path) for k in keep)
