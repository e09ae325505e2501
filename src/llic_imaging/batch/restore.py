"""``restore_tree``, ``verify_tree`` and ``archive_info``: read an archive that ``compress_tree``
wrote, proving every file against the SHA-256 its manifest recorded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import llic_imaging
from llic_imaging import formats
from llic_imaging._fileio import sha256_file, write_atomic
from llic_imaging.batch import dicom
from llic_imaging.batch.manifest import (
    MANIFEST,
    TEMP_PREFIX,
    Entry,
    Manifest,
    lock,
    remove_stale_temporaries,
    scratch_dir,
)
from llic_imaging.batch.report import (
    ArchiveReport,
    FileReport,
    Progress,
    error_text,
    summarise,
)
from llic_imaging.batch.tree import check_apart, walk
from llic_imaging.errors import VerificationError

__all__ = ["archive_info", "original_bytes", "restore_llic", "restore_tree", "verify_tree"]

_log = logging.getLogger(__name__)


def restore_llic(path: Path, scratch: Path, *, numthreads: int | None = None) -> bytes:
    """Decode the ``.llic`` file ``path`` and rebuild the file it was made from, as bytes.

    The format adapter writes files, not bytes, so the file is rebuilt in ``scratch`` (a
    private folder) and read back.

    Raises
    ------
    LlicError
        A damaged stream, a stream made with other weights (``ModelError``), or metadata the
        adapter cannot rebuild a file from.
    """
    data = path.read_bytes()
    array = llic_imaging.decode(data, numthreads=numthreads)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        rebuilt = Path(tmp) / path.name.removesuffix(".llic")
        formats.save(rebuilt, array, llic_imaging.metadata(data))
        return rebuilt.read_bytes()


def original_bytes(
    entry: Entry, archive: Path, scratch: Path, *, numthreads: int | None = None
) -> bytes:
    """The original file of an archived entry, checked against the manifest's SHA-256.

    Raises
    ------
    VerificationError
        If the rebuilt bytes are not the original's.
    LlicError, OSError
        If the archived file is missing, unreadable or damaged.
    """
    archived = archive / str(entry.archived)
    if entry.status == "ok":
        data = restore_llic(archived, scratch, numthreads=numthreads)
    else:
        data = archived.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        msg = (
            f"the restored file has sha256 {digest[:16]}..., "
            f"the manifest says {str(entry.sha256)[:16]}..."
        )
        raise VerificationError(msg, path=str(archived))
    return data


def _write(dest: Path, data: bytes, *, overwrite: bool) -> bool:
    """Write ``data`` to ``dest`` atomically; False if ``dest`` already holds exactly ``data``.

    Raises
    ------
    FileExistsError
        If ``dest`` holds something else and ``overwrite`` is false: a restore never replaces
        a file it did not make unless asked.
    """
    if dest.exists():
        if dest.is_file() and sha256_file(dest) == hashlib.sha256(data).hexdigest():
            return False
        if not overwrite:
            msg = f"{dest} exists and differs; pass overwrite=True (--overwrite) to replace it"
            raise FileExistsError(msg)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, data)
    return True


def _restore_one(
    entry: Entry,
    archive: Path,
    out: Path,
    scratch: Path,
    *,
    transfer_syntax: str | None,
    overwrite: bool,
    numthreads: int | None,
) -> FileReport:
    start = time.perf_counter()
    report = FileReport(
        path=entry.path,
        status=entry.status,
        archived_bytes=entry.archived_size or 0,
        archived=entry.archived,
    )
    if entry.status == "failed":
        report.error = f"not in the archive: {entry.error}"
        return report
    dest = out / entry.path
    export = transfer_syntax is not None and entry.status in ("ok", "kept-compressed")
    try:
        if not export and dest.is_file() and sha256_file(dest) == entry.sha256:
            report.status, report.original_bytes = "skipped", entry.size or 0
            return report
        data = original_bytes(entry, archive, scratch, numthreads=numthreads)
        if export:
            data = dicom.export(data, str(transfer_syntax))
        if not _write(dest, data, overwrite=overwrite):
            report.status = "skipped"
        report.original_bytes = len(data)
    except Exception as exc:
        report.status, report.error = "failed", error_text(exc, archive / str(entry.archived))
    report.seconds = time.perf_counter() - start
    return report


def restore_tree(
    archive_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    transfer_syntax: str | None = None,
    numthreads: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ArchiveReport:
    """Rebuild every archived file under ``out_dir``, byte for byte, at its original relpath.

    Each file is checked against the manifest's SHA-256 before it is written (atomically), so
    ``out_dir`` never holds a wrong file. Files already there with the right bytes are
    ``skipped``, which makes a restore resumable; other existing files are left alone unless
    ``overwrite``. Entries that failed at compress time are reported as failed: the restored
    tree lacks them.

    Parameters
    ----------
    transfer_syntax
        ``"explicit"``, ``"rle"`` or ``"jpegls"``: write the DICOM instances (coded and
        kept-compressed ones) as standard DICOM in that transfer syntax instead, with the same
        SOPInstanceUID and pixel values, for viewers that cannot read the originals' syntax.
        Stored and copied files stay verbatim. These files are *not* byte-identical to the originals.

    Raises
    ------
    ValueError
        If ``archive_dir`` is not an archive, the folders overlap, or the syntax is unknown.
    FormatError
        If the manifest is damaged.
    """
    archive, out = Path(archive_dir), Path(out_dir)
    if transfer_syntax is not None and transfer_syntax not in dicom.EXPORT_SYNTAXES:
        msg = (
            f"transfer syntax {transfer_syntax!r} is not one of {', '.join(dicom.EXPORT_SYNTAXES)}"
        )
        raise ValueError(msg)
    manifest = Manifest.load(archive)
    check_apart(archive, out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = ArchiveReport("restore", str(archive), str(out))
    entries = [manifest.entries[k] for k in sorted(manifest.entries)]
    with lock(out):
        targets = {out / e.path for e in entries}
        remove_stale_temporaries(out, keep=targets, targets=targets)
        with scratch_dir(out) as scratch:
            for done, entry in enumerate(entries, 1):
                file_report = _restore_one(
                    entry,
                    archive,
                    out,
                    scratch,
                    transfer_syntax=transfer_syntax,
                    overwrite=overwrite,
                    numthreads=numthreads,
                )
                report.files.append(file_report)
                _log.info("%s: %s", file_report.path, file_report.status)
                if progress is not None:
                    progress(done, len(entries), file_report)
    report.seconds = time.perf_counter() - start
    return report


def _verify_one(
    entry: Entry, archive: Path, scratch: Path, against: Path | None, numthreads: int | None
) -> FileReport:
    start = time.perf_counter()
    report = FileReport(
        path=entry.path,
        status=entry.status,
        archived_bytes=entry.archived_size or 0,
        original_bytes=entry.size or 0,
        archived=entry.archived,
    )
    if entry.status == "failed":
        report.status, report.error = "failed", f"not archived: {entry.error}"
        return report
    archived = archive / str(entry.archived)
    problems: list[str] = []
    if not archived.is_file():
        problems.append(f"archived file {entry.archived} is missing")
    else:
        try:
            original_bytes(entry, archive, scratch, numthreads=numthreads)
        except Exception as exc:
            problems.append(error_text(exc, archived))
        if sha256_file(archived) != entry.archived_sha256:
            problems.append("the archived file is not the one the manifest recorded")
    if against is not None:
        original = against / entry.path
        if not original.is_file():
            problems.append(f"missing from {against}")
        elif sha256_file(original) != entry.sha256:
            problems.append(f"{original} differs from the archived original")
    if problems:
        report.status, report.error = "failed", "; ".join(problems)
    report.seconds = time.perf_counter() - start
    return report


def verify_tree(
    archive_dir: str | os.PathLike[str],
    *,
    against: str | os.PathLike[str] | None = None,
    numthreads: int | None = None,
    progress: Progress | None = None,
) -> ArchiveReport:
    """Prove that the archive restores every file it lists, without writing anything.

    Every ``.llic`` file is decoded and rebuilt in a temporary folder, every verbatim file is
    read, and each result must have the manifest's SHA-256; the archived files must also still
    be the ones recorded (a ``.llic`` made with other weights fails here with the model error).
    With ``against`` (the study folder), each original there must have the archived SHA-256
    and every file there must be in the archive. Files in the archive the manifest does not name
    are reported as ``unlisted`` (not a failure). The archive may be read-only.

    Raises
    ------
    ValueError
        If ``archive_dir`` is not an archive.
    FormatError
        If the manifest is damaged.
    """
    archive = Path(archive_dir)
    study = Path(against) if against is not None else None
    manifest = Manifest.load(archive)
    start = time.perf_counter()
    report = ArchiveReport("verify", str(archive), str(study) if study else None)
    entries = [manifest.entries[k] for k in sorted(manifest.entries)]
    extra = []
    if study is not None:
        extra = [
            FileReport(path=rel, status="failed", error=problem or f"not in the archive {archive}")
            for rel, _, problem in walk(study)
            if rel not in manifest.entries
        ]
    total = len(entries) + len(extra)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as scratch:
        for done, entry in enumerate(entries, 1):
            file_report = _verify_one(entry, archive, Path(scratch), study, numthreads)
            report.files.append(file_report)
            _log.info("%s: %s", file_report.path, file_report.status)
            if progress is not None:
                progress(done, total, file_report)
    for done, file_report in enumerate(extra, len(entries) + 1):
        report.files.append(file_report)
        if progress is not None:
            progress(done, total, file_report)
    listed = {MANIFEST} | {str(e.archived) for e in entries if e.archived}
    report.files += [
        FileReport(
            path=rel, status="unlisted", archived_bytes=_size(path), error="not in the manifest"
        )
        for rel, path, _ in walk(archive)
        if rel not in listed
    ]
    report.seconds = time.perf_counter() - start
    return report


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def archive_info(archive_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise an archive from its manifest alone (nothing is decoded).

    Returns
    -------
    dict
        ``archive``, ``source``, ``created``, ``updated``, ``llic_imaging`` (the writer's
        version), ``files``, ``instances`` (entries with a SOPInstanceUID), ``summary`` (files,
        bytes in/out and ratio per status and in total), ``transfer_syntaxes`` and ``models``
        (counts by name) and ``failed`` (``path`` and ``error`` of each failed entry).

    Raises
    ------
    ValueError
        If ``archive_dir`` is not an archive.
    FormatError
        If the manifest is damaged.
    """
    archive = Path(archive_dir)
    manifest = Manifest.load(archive)
    entries = [manifest.entries[k] for k in sorted(manifest.entries)]
    syntaxes = Counter(dicom.uid_name(e.transfer_syntax) for e in entries if e.transfer_syntax)
    return {
        "archive": str(archive),
        **{k: manifest.header.get(k) for k in ("source", "created", "updated", "llic_imaging")},
        "files": len(entries),
        "instances": sum(1 for e in entries if e.sop_instance_uid),
        "summary": summarise((e.status, e.size or 0, e.archived_size or 0) for e in entries),
        "transfer_syntaxes": dict(syntaxes.most_common()),
        "models": dict(Counter(e.model for e in entries if e.model).most_common()),
        "failed": [{"path": e.path, "error": e.error} for e in entries if e.status == "failed"],
    }
