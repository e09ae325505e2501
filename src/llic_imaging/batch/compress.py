"""``compress_tree``: archive a DICOM study folder, every file verified before it counts as done."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath

import llic_imaging
from llic_imaging import formats
from llic_imaging._fileio import atomic_path, sha256_file
from llic_imaging.batch import dicom
from llic_imaging.batch.fileset import FileSets
from llic_imaging.batch.manifest import (
    ARCHIVED,
    MANIFEST,
    Entry,
    Manifest,
    lock,
    scratch_dir,
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
from llic_imaging.errors import LlicError, VerificationError
from llic_imaging.formats.dicom import NoPixelDataError, load_encapsulated

__all__ = ["compress_tree"]

_log = logging.getLogger(__name__)

# The archived name of a study file is its relpath plus one of these (coded, verbatim).
CODED, VERBATIM = ".llic", ".keep"


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
        if self._commit(entry, f"{entry.path}{VERBATIM}", data, Path.read_bytes):
            entry.status = status
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
        """Keep the llic ``stream`` as ``<relpath>.llic``, proven to restore the file.

        The proof decodes the bytes on disk and rebuilds the file with the format adapter, so
        an entry is ``ok`` only when the archive as written gives back the original SHA-256.
        """
        model = llic_imaging.info(stream).model  # before the rename: nothing may fail after it
        restore = partial(restore_llic, scratch=self.scratch, numthreads=self.numthreads)
        if self._commit(entry, f"{entry.path}{CODED}", stream, restore):
            entry.status, entry.model = "ok", model
        return entry

    def _commit(
        self, entry: Entry, archived: str, data: bytes, restore: Callable[[Path], bytes]
    ) -> bool:
        """Write ``data`` under a temporary name beside ``archived``, and rename it to
        ``archived`` only once ``restore`` reads the original's SHA-256 back from the disk.

        On failure (the source changed while it was read, a bad disk) the temporary is removed
        and ``entry.error`` says why; a file an earlier run verified at ``archived``, which the
        manifest still lists, is left as it was. On success the ``archived*`` fields are set.
        """
        dest = self.out / archived
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
                archived_sha256 = _proven_sha256(tmp, restore, str(entry.sha256))
        except VerificationError as exc:
            entry.error = str(exc)
            return False
        entry.archived, entry.archived_size = archived, len(data)
        entry.archived_sha256 = archived_sha256
        return True

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


def _proven_sha256(path: Path, restore: Callable[[Path], bytes], original: str) -> str:
    """The SHA-256 of the archived file ``path``, once ``restore(path)`` gave back ``original``.

    Raises
    ------
    VerificationError
        If the restored bytes have another SHA-256.
    """
    digest = hashlib.sha256(restore(path)).hexdigest()
    if digest != original:
        msg = (
            f"verification failed: the archived file restores to sha256 {digest[:16]}..., "
            f"the original has {original[:16]}... (did the file change during the run?)"
        )
        raise VerificationError(msg)
    return sha256_file(path)


def _clashes(files: list[tuple[str, Path, str | None]], manifest: Manifest) -> dict[str, str]:
    """Plan the archive's names before anything is written: ``{relpath: problem}`` for each
    study file whose archived name would also be a folder of the archive, or whose folder would
    be an archived file (``X`` becomes ``X.llic`` or ``X.keep``, beside a study folder
    ``X.llic/``; a study folder ``manifest.json/``). Both sides of a clash fail, naming each
    other, so that neither takes the other's place in whatever order they come.
    """
    rels = [rel for rel, _, problem in files if problem is None]
    listed = {e.archived: e.path for e in manifest.entries.values() if e.archived}
    owners = {name: f"the archived file of {rel}" for name, rel in listed.items()}
    owners |= {rel + s: f"the archived file of {rel}" for rel in rels for s in (CODED, VERBATIM)}
    owners[MANIFEST] = "the archive's manifest"
    folders: dict[str, str] = {}  # folder of the archive -> a file below it
    for name in [*rels, *listed]:
        folders |= {folder: name for folder in _folders(name) if folder not in folders}
    problems: dict[str, str] = {}
    for rel in rels:
        for name in (rel + CODED, rel + VERBATIM):
            if name in folders:
                problems[rel] = (
                    f"archive name clash: {name} would be this file's archived file and the "
                    f"folder of {folders[name]}; rename one of them"
                )
        for folder in _folders(rel):
            if folder in owners:
                problems[rel] = (
                    f"archive name clash: {folder} would be this file's folder and "
                    f"{owners[folder]}; rename one of them"
                )
    return problems


def _folders(relpath: str) -> list[str]:
    """``a/b/c`` -> ``["a/b", "a"]``: the folders the archive needs for ``relpath``."""
    return [folder.as_posix() for folder in PurePosixPath(relpath).parents[:-1]]


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
    :attr:`ArchiveReport.exit_code` is then 1. So do, before anything is written, a file and a
    folder that would have one name in the archive (``X`` -> ``X.llic`` beside a study folder
    ``X.llic/``). An archived file is replaced only by one that verified, so a failed attempt
    keeps the copy of an earlier run. DICOMDIRs are checked against the study:
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
        clashes = _clashes(files, manifest)
        files = [(rel, path, problem or clashes.get(rel)) for rel, path, problem in files]
        filesets = FileSets.read(files)
        with scratch_dir(out) as scratch:
            job = _Compressor(
                src,
                out,
                manifest,
                scratch,
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
