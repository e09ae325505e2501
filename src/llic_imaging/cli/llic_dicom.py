"""The ``llic-dicom`` console script: archive DICOM study folders (compress, restore, verify, info).

Each command calls one ``llic_imaging.batch`` function. Exit codes: 0 ok, 1 some file failed (one
``path: message`` line each on stderr), 2 usage, 3 unexpected bug.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

import llic_imaging
from llic_imaging import batch
from llic_imaging._fileio import write_atomic
from llic_imaging.cli._options import (
    EXIT_DATA,
    EXIT_OK,
    ExitCodeGroup,
    adapt_opt,
    numthreads_opt,
    quiet_opt,
    run_main,
    verbose_opt,
    verbosity,
)
from llic_imaging.errors import LlicError

__all__ = ["cli", "main"]

_PROG = "llic-dicom"


class _Group(ExitCodeGroup):
    prog = _PROG


json_opt = click.option(
    "--json",
    "json_to",
    metavar="FILE|-",
    is_flag=False,
    flag_value="-",
    default=None,
    help="Write the JSON report to FILE, or to stdout with '-' or no value (then no table).",
)


@contextmanager
def _usage_errors() -> Iterator[None]:
    """A plain ValueError from the library means the arguments are wrong: exit 2, not 1."""
    try:
        yield
    except ValueError as exc:
        if isinstance(exc, LlicError):
            raise
        raise click.UsageError(str(exc)) from exc


@contextmanager
def _bar(desc: str) -> Iterator[batch.Progress]:
    """Yield a ``progress`` callback drawing a per-file tqdm bar on stderr, on a terminal only."""
    from tqdm import tqdm

    show = verbosity() >= 0 and sys.stderr.isatty()
    with tqdm(desc=desc, unit="file", file=sys.stderr, disable=not show) as bar:

        def tick(done: int, total: int, _report: batch.FileReport) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield tick


def _render(rows: list[list[str]]) -> str:
    """Plain aligned text: first column left, the rest right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _summary_table(summary: dict[str, dict[str, float]], *, restoring: bool = False) -> str:
    """Files, original and archived bytes and their ratio per status; the byte columns are
    titled by direction (compress reads originals, restore and verify read the archive)."""
    titles = ["bytes out", "bytes in"] if restoring else ["bytes in", "bytes out"]
    rows = [["status", "files", *titles, "ratio"]]
    for status, g in summary.items():
        ratio = f"{g['ratio']:.3f}" if g["archived_bytes"] else "-"
        rows.append(
            [status, str(g["files"]), str(g["original_bytes"]), str(g["archived_bytes"]), ratio]
        )
    return _render(rows)


def _emit_json(obj: Any, json_to: str | None) -> None:
    text = json.dumps(obj, indent=2)
    if json_to == "-":
        click.echo(text)
    elif json_to is not None:
        write_atomic(json_to, (text + "\n").encode())


def _finish(
    report: batch.ArchiveReport, json_to: str | None, where: Callable[[batch.FileReport], str]
) -> int:
    """Print failures and warnings (stderr), the table (stdout) and the JSON report; return the
    exit code."""
    for f in report.failures:
        click.echo(f"{where(f)}: {f.error}", err=True)
    for w in report.warnings:
        click.echo(f"{Path(report.source) / w.path}: warning: {w.message}", err=True)
    _emit_json(report.to_dict(), json_to)
    if json_to != "-" and verbosity() >= 0:
        click.echo(_summary_table(report.summary(), restoring=report.command != "compress"))
        failed = len(report.failures)
        warned = f", {len(report.warnings)} warnings" if report.warnings else ""
        click.echo(
            f"{report.command}: {len(report.files)} files in {report.seconds:.1f} s, "
            f"{failed} failed{warned}" + (f" (exit {EXIT_DATA})" if failed else "")
        )
    return report.exit_code


@click.group(
    _PROG,
    cls=_Group,
    epilog="\b\nExample:\n  llic-dicom compress study/ -o study.llic/ && llic-dicom verify study.llic/ --against study/",
)
@click.version_option(llic_imaging.__version__, prog_name=_PROG)
def cli() -> None:
    """Archive DICOM studies losslessly with llic, and get every file back byte for byte.

    An archive is a folder mirroring the study: NAME.llic per DICOM instance, NAME.keep for files
    stored verbatim, and manifest.json with the SHA-256 of every original. Exit codes: 0 ok, 1 some
    file failed (one "path: message" line each), 2 usage error, 3 unexpected bug.
    """


@cli.command(
    epilog="\b\nExamples:\n  llic-dicom compress study/ -o archive/ --threads 2\n  llic-dicom compress study/ -o archive/ --json report.json   # rerun: resumes\n  llic-dicom compress study/ -o archive/ --transcode   # recode RLE/JPEG-LS where exact\n  llic-dicom compress study/ -o archive/ --adapt   # smaller, ~30 s more per instance"
)
@click.argument("study", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "archive",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Archive folder (new, empty, or an archive of this study to resume or update).",
)
@numthreads_opt
@click.option(
    "--delete-originals",
    is_flag=True,
    help="After the run, delete each original whose archive was proven to restore it exactly.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Skip files already archived whose archived copy still verifies.",
)
@click.option(
    "--transcode",
    is_flag=True,
    help="Code compressed (RLE, JPEG-LS, lossless JPEG) instances with llic when their original "
    "fragments can be rebuilt byte for byte and the result is smaller; others are kept verbatim "
    "with the reason in the report.",
)
@adapt_opt
@json_opt
@verbose_opt
@quiet_opt
def compress(
    study: Path,
    archive: Path,
    numthreads: int | None,
    delete_originals: bool,
    resume: bool,
    transcode: bool,
    adapt: bool,
    json_to: str | None,
) -> int:
    """Archive every file below STUDY into the archive folder -o.

    DICOM instances with native pixel data are coded with llic; compressed ones (unless
    --transcode recodes them), instances without pixel data, DICOMDIR and other files are kept
    verbatim. Each file is verified (restored and compared by SHA-256) before it counts as
    archived; a file that fails is reported and the run goes on (exit 1). A DICOMDIR that
    references missing files, or instances no DICOMDIR references, give warnings (exit 0).
    """
    with _usage_errors(), _bar("compress") as tick:
        report = batch.compress_tree(
            study,
            archive,
            numthreads=numthreads,
            delete_originals=delete_originals,
            resume=resume,
            transcode=transcode,
            adapt=adapt,
            progress=tick,
        )
    return _finish(report, json_to, lambda f: str(study / f.path))


@cli.command(
    epilog="\b\nExamples:\n  llic-dicom restore archive/ -o study/\n  llic-dicom restore archive/ -o for-viewer/ --transfer-syntax jpegls"
)
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to rebuild the study in (files already there and identical are skipped).",
)
@click.option(
    "--transfer-syntax",
    type=click.Choice(sorted(batch.EXPORT_SYNTAXES)),
    default=None,
    help="Write DICOM instances as standard DICOM in this transfer syntax (same SOPInstanceUID "
    "and pixel values, not byte-identical) for viewers that cannot read the originals.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace existing files that differ (default: fail them)."
)
@numthreads_opt
@json_opt
@verbose_opt
@quiet_opt
def restore(
    archive: Path,
    out: Path,
    transfer_syntax: str | None,
    overwrite: bool,
    numthreads: int | None,
    json_to: str | None,
) -> int:
    """Rebuild the original files of ARCHIVE in the folder -o, byte for byte.

    Every file is checked against the SHA-256 in the manifest before it is written.
    """
    with _usage_errors(), _bar("restore") as tick:
        report = batch.restore_tree(
            archive,
            out,
            transfer_syntax=transfer_syntax,
            numthreads=numthreads,
            overwrite=overwrite,
            progress=tick,
        )
    return _finish(report, json_to, lambda f: str(archive / (f.archived or f.path)))


@cli.command(
    epilog="\b\nExamples:\n  llic-dicom verify archive/\n  llic-dicom verify archive/ --against study/ --json -"
)
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--against",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Study folder: its files must be exactly the archived originals, none missing.",
)
@numthreads_opt
@json_opt
@verbose_opt
@quiet_opt
def verify(archive: Path, against: Path | None, numthreads: int | None, json_to: str | None) -> int:
    """Prove that ARCHIVE restores every file it lists (nothing is written).

    Each .llic is decoded and rebuilt in a temporary folder and compared with the manifest's
    SHA-256; a .llic made with other model weights fails with the model named.
    """
    with _usage_errors(), _bar("verify") as tick:
        report = batch.verify_tree(archive, against=against, numthreads=numthreads, progress=tick)
    return _finish(report, json_to, lambda f: str(archive / (f.archived or f.path)))


@cli.command(epilog="\b\nExamples:\n  llic-dicom info archive/\n  llic-dicom info archive/ --json")
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@json_opt
@verbose_opt
@quiet_opt
def info(archive: Path, json_to: str | None) -> int:
    """Summarise ARCHIVE from its manifest: files, sizes and ratio per status, transfer syntaxes."""
    with _usage_errors():
        summary = batch.archive_info(archive)
    _emit_json(summary, json_to)
    if json_to == "-":
        return EXIT_OK
    for key in ("archive", "source", "created", "updated", "llic_imaging", "files", "instances"):
        click.echo(f"{key:<13} {summary[key]}")
    click.echo(_summary_table(summary["summary"]))
    for title, counts in (
        ("transfer syntax", summary["transfer_syntaxes"]),
        ("model", summary["models"]),
    ):
        if counts:
            click.echo(_render([[title, "files"], *([k, str(v)] for k, v in counts.items())]))
    for f in summary["failed"]:
        click.echo(f"failed: {f['path']}: {f['error']}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run ``llic-dicom`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Returning the code instead of calling ``sys.exit`` lets tests and Python callers run the
    CLI in-process.
    """
    return run_main(cli, argv, _PROG)
