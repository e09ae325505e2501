"""What a batch run returns: one :class:`FileReport` per file and their totals per status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llic_imaging.errors import LlicError

__all__ = [
    "ArchiveReport",
    "ArchiveWarning",
    "FileReport",
    "Progress",
    "error_text",
    "one_line",
    "summarise",
]

_log = logging.getLogger(__name__)


@dataclass
class FileReport:
    """The outcome of one file in one run.

    ``status`` is the manifest status (``ok``, ``kept-compressed``, ``stored``, ``copied``,
    ``failed``) or what this run did instead: ``skipped`` (already archived or restored and
    verified) and ``unlisted`` (``verify`` found a file the manifest does not name).
    ``original_bytes`` and ``archived_bytes`` are the sizes of the original (or exported) file
    and of its archived form, whichever way this run went. ``reason`` is the manifest's: why a
    DICOM instance is stored verbatim.
    """

    path: str
    status: str
    original_bytes: int = 0
    archived_bytes: int = 0
    seconds: float = 0.0
    archived: str | None = None
    reason: str | None = None
    error: str | None = None
    deleted: bool = False

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ORDER = ("ok", "kept-compressed", "stored", "copied", "skipped", "unlisted", "failed")


@dataclass(frozen=True)
class ArchiveWarning:
    """Something about the study worth a look that is no failure: a file a DICOMDIR references
    is missing, or a DICOM instance is in no DICOMDIR of its folder."""

    path: str
    message: str


Progress = Callable[[int, int, FileReport], None]
"""``progress(done, total, report)``, called after each file so front-ends can draw a bar."""


@dataclass
class ArchiveReport:
    """Everything one ``compress_tree``/``restore_tree``/``verify_tree`` run did.

    The CLI prints :meth:`summary` as its final table and :meth:`to_dict` as ``--json``, and
    exits with :attr:`exit_code`: one failed file makes the whole run fail, after the rest of
    the batch was done. ``warnings`` never change the exit code.
    """

    command: str
    source: str
    target: str | None
    files: list[FileReport] = field(default_factory=list)
    warnings: list[ArchiveWarning] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[FileReport]:
        return [f for f in self.files if f.failed]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def summary(self) -> dict[str, dict[str, float]]:
        """Files, bytes and ratio per status and in total (the rows of the CLI table)."""
        return summarise((f.status, f.original_bytes, f.archived_bytes) for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "source": self.source,
            "target": self.target,
            "seconds": round(self.seconds, 3),
            "failures": len(self.failures),
            "summary": self.summary(),
            "files": [f.to_dict() for f in self.files],
            "warnings": [asdict(w) for w in self.warnings],
        }


def summarise(rows: Any) -> dict[str, dict[str, float]]:
    """Group ``(status, original_bytes, archived_bytes)`` rows by status, in a fixed order, plus ``total``.

    Each group is ``{files, original_bytes, archived_bytes, ratio}``. The total counts every file but only
    the bytes of archived ones, so a large failed file does not inflate the archive's ratio.
    """
    groups: dict[str, dict[str, float]] = {}
    total = {"files": 0, "original_bytes": 0, "archived_bytes": 0}
    for status, original_bytes, archived_bytes in rows:
        g = groups.setdefault(status, {"files": 0, "original_bytes": 0, "archived_bytes": 0})
        g["files"] += 1
        g["original_bytes"] += original_bytes
        g["archived_bytes"] += archived_bytes
        total["files"] += 1
        if status not in ("failed", "unlisted"):  # the total ratio is that of the archive
            total["original_bytes"] += original_bytes
            total["archived_bytes"] += archived_bytes
    ordered = {s: groups[s] for s in _ORDER if s in groups}
    ordered["total"] = total
    for d in ordered.values():
        d["ratio"] = (
            round(d["original_bytes"] / d["archived_bytes"], 4) if d["archived_bytes"] else 0.0
        )
    return ordered


def one_line(exc: BaseException, path: str = "") -> str:
    """Make an exception a one-line message, without the ``path: `` prefix adapters add.

    Manifests and ``path: message`` lines need one line per file; pydicom's plugin errors span
    several, and format adapters start their messages with the absolute path, which the
    manifest entry already names.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2 :]
    return text


def error_text(exc: Exception, path: Path) -> str:
    """The one-line ``error`` of a file that failed with ``exc``.

    Data problems (``LlicError``, ``OSError``) are expected in a batch and read as they are
    (an ``OSError`` about another file than ``path`` names that file);
    anything else is a bug in llic_imaging, says so, and logs its traceback at debug level,
    but still only fails that one file.
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = Path(exc.filename) if exc.filename else path
        return exc.strerror if where == path else f"{where}: {exc.strerror}"
    if isinstance(exc, LlicError | OSError):
        return one_line(exc, str(path))
    _log.debug("unexpected error on %s", path, exc_info=True)
    return f"unexpected error, please report it: {type(exc).__name__}: {one_line(exc)}"
