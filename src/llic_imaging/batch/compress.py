"""``compress_tree``: archive a DICOM study folder, every file verified before it counts as done."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import llic_imaging
from llic_imaging import formats
from llic_imaging._fileio import sha256_file, write_atomic
from llic_imaging.batch import dicom
from llic_imaging.batch.fileset import FileSets
from llic_imaging.batch.manifest import (
    ARCHIVED,
    TEMP_PREFIX,
    Entry,
    Manifest,
    lock,
)
from llic_imaging.batch.report import (
    ArchiveReport,
    FileReport,
    Progress,
    error_text,
    one_line,
)
from llic_imaging.batch.restore import restore_llic
from llic_imaging.batch.tree import check_apart, walk
from llic_imaging.errors import LlicError
from llic_imaging.formats.dicom import NoPixelDataError, load_encapsulated

__all__ = ["compress_tree"]

_log = logging.getLogger(__name__)


def _is_dicom(path: Path) -> bool:
    """True if the format adapters take ``path`` for DICOM (DICM marker, else ``.dcm`` name)."""
    try:
        return formats.detect(path) == "dicom"
    except Exception:  # noqa: BLE001  any file is welcome in a study; non-DICOM is copied
        return False


class _Compressor:
    """One ``compress_tree`` run: the manifest, the scratch folder and the per-file steps.

    ``referenced`` holds the relpaths DICOMDIRs reference: those are DICOM whatever their name.
    """

    def __init__(
        self,
        src: Path,
        out: Path,
        manifest: Manifest,
        scratch: Path,
        numthreads: int | None,
        *,
        transcode: bool,
        adapt: bool | int,
        referenced: set[str],
    ):
        self.src, self.out, self.manifest = src, out, manifest
        self.scratch, self.numthreads = scratch, numthreads
        self.transcode, self.adapt, self.referenced = transcode, adapt, referenced

    def run(self, rel: str, path: Path, problem: str | None, *, resume: bool) -> FileReport:
        """Archive one file; every failure becomes a failed entry, never an exception."""
        start = time.perf_counter()
        old = self.manifest.entries.get(rel)
        skipped = False
        if problem is not None:
            entry = Entry(path=rel, size=_size(path), sha256=None, status="failed", error=problem)
        else:
            try:
                entry, skipped = self._archive(rel, path, old if resume else None)
            except Exception as exc:
                entry = Entry(
                    path=rel,
                    size=_size(path),
                    sha256=None,
                    status="failed",
                    error=error_text(exc, path),
                )
        if entry.status == "failed" and old is not None and old.status in ARCHIVED:
            # Keep the copy made earlier: the source may have rotted since, which is what an
            # archive is for. The entry notes the failed attempt; this run still fails.
            old.error = f"last compress failed: {entry.error}"
            self.manifest.entries[rel] = old
        else:
            self._replace(old, entry)
        reason = f" ({entry.reason})" if entry.reason else ""
        _log.info("%s: %s%s", rel, "skipped" if skipped else entry.status, reason)
        return FileReport(
            path=rel,
            status="skipped" if skipped else entry.status,
            original_bytes=entry.size or 0,
            archived_bytes=entry.archived_size or 0,
            seconds=time.perf_counter() - start,
            archived=entry.archived,
            reason=entry.reason,
            error=entry.error,
        )

    def _replace(self, old: Entry | None, entry: Entry) -> None:
        """Record ``entry``; a file archived under another name before leaves no orphan."""
        if old is not None and old.archived and entry.archived and old.archived != entry.archived:
            (self.out / old.archived).unlink(missing_ok=True)
        self.manifest.entries[entry.path] = entry

    def _archive(self, rel: str, path: Path, old: Entry | None) -> tuple[Entry, bool]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            error = f"cannot read: {exc.strerror or exc}"
            return Entry(
                path=rel, size=_size(path), sha256=None, status="failed", error=error
            ), False
        entry = Entry(
            path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest(), status="failed"
        )
        if old is not None and self._still_archived(old, entry):
            old.error = None  # an earlier failed attempt no longer applies
            return old, True
        if not data:
            entry.error = "file is empty"
            return entry, False
        if not (rel in self.referenced or _is_dicom(path)):
            return self._store(entry, data, "copied"), False
        described = dicom.describe(path)
        entry.sop_instance_uid = described.sop_instance_uid
        entry.transfer_syntax = described.transfer_syntax
        if described.is_dicomdir:
            return self._store(entry, data, "copied"), False
        try:
            loaded = formats.load(path, format="dicom")
        except formats.EncapsulatedPixelDataError:
            if self.transcode:
                return self._transcode(entry, path, data), False
            return self._store(entry, data, "kept-compressed"), False
        except NoPixelDataError as exc:  # SR, KO, PR, ...: the study is complete only with them
            entry.reason = f"no pixel data ({dicom.uid_name(exc.sop_class)})"
            return self._store(entry, data, "stored"), False
        except LlicError as exc:
            entry.error = one_line(exc, str(path))
            return entry, False
        return self._code(entry, self._encode(loaded)), False

    def _still_archived(self, old: Entry, new: Entry) -> bool:
        """Resume test: same source bytes, the archived file is the one that was verified, and
        with ``--transcode`` a compressed instance kept earlier was already tried."""
        if old.status not in ARCHIVED or (old.size, old.sha256) != (new.size, new.sha256):
            return False
        if self.transcode and old.status == "kept-compressed" and old.reason is None:
            return False
        archived = self.out / str(old.archived)
        return archived.is_file() and sha256_file(archived) == old.archived_sha256

    def _store(self, entry: Entry, data: bytes, status: str) -> Entry:
        """Keep ``data`` verbatim as ``<relpath>.keep``, checked by reading it back."""
        archived = f"{entry.path}.keep"
        dest = self.out / archived
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, data)
        digest = sha256_file(dest)
        if digest != entry.sha256:
            dest.unlink(missing_ok=True)
            entry.error = f"verification failed: the copy reads back with sha256 {digest[:16]}..."
            return entry
        entry.status, entry.archived = status, archived
        entry.archived_size, entry.archived_sha256 = len(data), digest
        return entry

    def _transcode(self, entry: Entry, path: Path, data: bytes) -> Entry:
        """``--transcode``: code the decoded pixels of a compressed instance when its fragments
        can be rebuilt byte for byte and the stream is smaller than the file; else keep the
        file verbatim and record why."""
        try:
            stream = self._encode(load_encapsulated(path))
        except LlicError as exc:
            why = one_line(exc, str(path))
        else:
            if len(stream) < len(data):
                return self._code(entry, stream)
            why = f"the llic stream ({len(stream)} bytes) is not smaller than the file"
        entry.reason = f"--transcode: {why}; kept verbatim"
        return self._store(entry, data, "kept-compressed")

    def _encode(self, loaded: formats.Loaded) -> bytes:
        return llic_imaging.encode(
            loaded.array, metadata=loaded.metadata, numthreads=self.numthreads, adapt=self.adapt
        )

    def _code(self, entry: Entry, stream: bytes) -> Entry:
        """Write the llic ``stream`` as ``<relpath>.llic``, then prove it restores the file.

        The proof decodes the bytes on disk and rebuilds the file with the format adapter, so
        an entry is ``ok`` only when the archive as written gives back the original SHA-256.
        """
        archived = f"{entry.path}.llic"
        dest = self.out / archived
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, stream)
        restored = restore_llic(dest, self.scratch, numthreads=self.numthreads)
        digest = hashlib.sha256(restored).hexdigest()
        if digest != entry.sha256:
            dest.unlink(missing_ok=True)
            entry.error = (
                f"verification failed: the restored file has sha256 {digest[:16]}..., "
                f"the original {str(entry.sha256)[:16]}..."
            )
            return entry
        entry.status, entry.archived = "ok", archived
        entry.archived_size, entry.archived_sha256 = len(stream), sha256_file(dest)
        entry.model = llic_imaging.info(stream).model
        return entry

    def delete_original(self, report: FileReport) -> None:
        """Delete the source of an archived file after proving once more that it restores.

        The source is hashed again (it must still be the archived bytes) and a skipped
        ``.llic`` entry is restored again, since this run did not decode it.
        """
        entry = self.manifest.entries[report.path]
        path = self.src / entry.path
        try:
            if report.status == "skipped" and entry.status == "ok":
                restored = restore_llic(
                    self.out / str(entry.archived), self.scratch, numthreads=self.numthreads
                )
                if hashlib.sha256(restored).hexdigest() != entry.sha256:
                    report.status = "failed"
                    report.error = (
                        "the archived stream no longer restores the original; original kept"
                    )
                    return
            if sha256_file(path) != entry.sha256:
                report.status = "failed"
                report.error = "the original changed during the run; original kept"
                return
            path.unlink()
        except (LlicError, OSError) as exc:
            report.status = "failed"
            report.error = f"original not deleted: {error_text(exc, path)}"
            return
        report.deleted = True


def _size(path: Path) -> int | None:
    try:
        return path.lstat().st_size
    except OSError:
        return None


def compress_tree(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    numthreads: int | None = None,
    delete_originals: bool = False,
    resume: bool = True,
    transcode: bool = False,
    adapt: bool | int = False,
    progress: Progress | None = None,
) -> ArchiveReport:
    """Archive every file below ``src_dir`` into ``out_dir`` and record it in ``manifest.json``.

    Each DICOM instance with native pixel data becomes ``<relpath>.llic`` (stored words coded
    by llic, everything else kept in the stream's metadata); it counts as ``ok`` only after the
    written file was decoded and rebuilt into the original bytes (same SHA-256). Instances with
    compressed pixel data (``kept-compressed``), instances without Pixel Data (``stored``),
    DICOMDIR and non-DICOM files (``copied``) are stored verbatim as ``<relpath>.keep``. A file
    that cannot be archived gets a ``failed`` entry with a one-line error and the run goes on;
    :attr:`ArchiveReport.exit_code` is then 1. DICOMDIRs are checked against the study:
    references to missing files and instances no DICOMDIR references become
    :attr:`ArchiveReport.warnings`, and referenced files are read as DICOM whatever their name.

    Parameters
    ----------
    numthreads
        CPU threads for the codec; the archive does not depend on it.
    delete_originals
        Delete each archived source after the run, once its archive has been proven to restore
        it and the source still has the archived SHA-256. Failed files are never deleted.
    resume
        Skip files whose manifest entry has the same size and SHA-256 and whose archived file
        still has the recorded SHA-256 (after a crash, or on a study that grew). Without it
        every file is archived again.
    transcode
        Decode compressed instances and code them with llic when the original fragments can be
        rebuilt byte for byte from the decoded pixels (the same encoder reproduces them; see
        :func:`llic_imaging.formats.dicom.load_encapsulated`) and the stream is smaller. Other
        compressed instances are kept verbatim with the reason in ``reason``.
    adapt
        Per-image adaptation (``llic_imaging.encode(adapt=...)``: True, or a number of fitting
        steps): fit the model to each instance and keep the adapter where the stream gets
        smaller. It pays on large
        radiographs and CT/MR slices (1.6-7.6 % in ``docs/benchmarks.md``), rarely on small
        ones, and costs about 30 s of fitting per instance. Files already archived are not
        coded again unless ``resume`` is off.
    progress
        ``progress(done, total, file_report)`` after each file.

    Raises
    ------
    ValueError
        If ``src_dir`` is not a folder, the two folders overlap, or ``out_dir`` holds other
        files but no manifest.
    FormatError
        If ``out_dir`` has a damaged manifest.
    BlockingIOError
        If another run is writing ``out_dir``.
    """
    src, out = Path(src_dir), Path(out_dir)
    if not src.is_dir():
        msg = f"{src}: not a folder"
        raise ValueError(msg)
    check_apart(src, out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = ArchiveReport("compress", str(src), str(out))
    with lock(out):
        manifest = Manifest.open(out, src.resolve())
        files = walk(src)
        filesets = FileSets.read(files)
        with tempfile.TemporaryDirectory(dir=out, prefix=TEMP_PREFIX) as scratch:
            job = _Compressor(
                src,
                out,
                manifest,
                Path(scratch),
                numthreads,
                transcode=transcode,
                adapt=adapt,
                referenced=filesets.referenced,
            )
            try:
                for done, (rel, path, problem) in enumerate(files, 1):
                    file_report = job.run(rel, path, problem, resume=resume)
                    report.files.append(file_report)
                    manifest.flush()
                    if progress is not None:
                        progress(done, len(files), file_report)
            finally:
                manifest.save()
            unreferenced = filesets.unreferenced(manifest.entries[f.path] for f in report.files)
            report.warnings = sorted(filesets.warnings + unreferenced, key=lambda w: w.path)
            if delete_originals:  # only now: the saved manifest lists every archived file
                for file_report in report.files:
                    if file_report.status in ARCHIVED or file_report.status == "skipped":
                        job.delete_original(file_report)
    report.seconds = time.perf_counter() - start
    return report
