"""The ``llic`` console script: compress, restore, verify, info, bench and demo.

Exit codes: 0 ok, 1 data error (one ``path: message`` line per file), 2 usage, 3 unexpected bug.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

import llic_imaging
from llic_imaging import formats
from llic_imaging._fileio import file_id
from llic_imaging.cli import _files
from llic_imaging.cli._options import (
    EXIT_DATA,
    ExitCodeGroup,
    adapt_opt,
    cluster_opt,
    context_opt,
    device_opt,
    echo_json,
    json_opt,
    level_opt,
    model_opt,
    numthreads_opt,
    output_opt,
    overwrite_opt,
    patch_opt,
    per_file,
    progress,
    quiet_opt,
    run_main,
    tile_bar,
    tile_opt,
    verbose_opt,
    verbosity,
)
from llic_imaging.errors import LlicError, UnknownFormatError

__all__ = ["cli", "main"]

_T = TypeVar("_T")

_SUFFIX = ".llic"


class _LlicGroup(ExitCodeGroup):
    prog = "llic"


def _is_image(path: Path) -> bool:
    """False for files no adapter recognises (folders also hold READMEs, scripts, ...); a
    recognised file that is empty, unreadable or corrupt is kept, so that it is reported."""
    try:
        formats.detect(path)
    except UnknownFormatError:
        return False
    except LlicError:
        pass
    return True


def _expand(inputs: Sequence[Path], keep: Callable[[Path], bool]) -> list[tuple[Path, Path]]:
    """List ``(file, path relative to its input)``; directories contribute their ``keep`` files."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                rel = path.relative_to(item)
                hidden = any(part.startswith(".") for part in rel.parts)
                if not hidden and path.is_file() and keep(path):
                    found.append((path, rel))
        else:
            found.append((item, Path(item.name)))
    return found


def _plan(
    inputs: Sequence[Path],
    output: str | None,
    *,
    keep: Callable[[Path], bool],
    rename: Callable[[Path], Path],
    overwrite: bool,
) -> list[tuple[Path, Path]]:
    """Pair every input file with its output path, refusing clashes before any work starts.

    One input file with ``-o`` names the output file itself, unless ``-o`` is a directory or
    ends in ``/``; several inputs or a directory make ``-o`` a directory (created, mirroring
    sub-folders); without ``-o`` outputs go next to inputs.
    """
    files = _expand(inputs, keep)
    if not files:
        msg = "no input files found"
        raise click.UsageError(msg)
    if output is None:
        pairs = [(src, src.parent / rename(Path(src.name))) for src, _ in files]
    elif _names_a_file(output, single=len(inputs) == 1 and not inputs[0].is_dir()):
        pairs = [(files[0][0], Path(output))]
    else:
        if os.path.lexists(output) and not os.path.isdir(output):
            msg = f"-o {output}: several inputs need an output directory, and this is a file"
            raise click.UsageError(msg)
        pairs = [(src, Path(output) / rename(rel)) for src, rel in files]
    outputs = [dst for _, dst in pairs]
    if len({dst.resolve() for dst in outputs}) != len(outputs):  # a.npy and ./a.npy too
        msg = "two inputs would write the same output; use separate runs"
        raise click.UsageError(msg)
    sources = {file_id(src) for src, _ in pairs}
    clash = next(
        (dst for dst in outputs if dst.exists() and file_id(dst) in sources), None
    )  # the same file by another name or link: --overwrite would replace an input
    if clash is not None:
        msg = f"{clash} is an input; choose another output"
        raise click.UsageError(msg)
    # A dangling link counts; so does a detached header's data file that the restore writes.
    existing = [f for dst in outputs for f in formats.written_files(dst) if os.path.lexists(f)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        msg = f"{existing[0]} exists{more}; pass --overwrite to replace it"
        raise click.UsageError(msg)
    for dst in outputs:
        dst.parent.mkdir(parents=True, exist_ok=True)
    return pairs


def _names_a_file(output: str, *, single: bool) -> bool:
    """``-o`` is the output file itself only for one input file, and only when it is not an
    existing directory or written with a trailing separator (``-o restored/``)."""
    return single and not os.path.isdir(output) and not output.endswith(("/", os.sep))


def _strip_suffix(rel: Path) -> Path:
    """``a/b.png.llic`` -> ``a/b.png``: restore gives back the original file name."""
    if rel.name.endswith(_SUFFIX) and len(rel.name) > len(_SUFFIX):
        return rel.with_name(rel.name[: -len(_SUFFIX)])
    msg = f"{rel}: name does not end in {_SUFFIX}, so its original name is unknown; restore it alone with -o FILE"
    raise click.UsageError(msg)


def _each(
    fn: Callable[..., _T],
    pairs: list[tuple[Path, Path]],
    desc: str,
    failures: list[str],
    cluster: dict[str, Any],
    **options: Any,
) -> list[_T]:
    """``fn(src, dst, **options)`` for every pair, in this process or as one task per file on a
    dask cluster (``cluster``, from ``cluster_opt``) -> the results of the files that worked,
    in input order. A file's error or warnings are reported as ``per_file`` reports them."""
    done: dict[int, _T] = {}
    if all(v is None for v in cluster.values()):
        with tile_bar(desc, show=len(pairs) == 1) as tick:
            for i, (src, dst) in enumerate(progress(pairs, total=len(pairs), desc=desc)):
                with per_file(src, failures):
                    done[i] = fn(src, dst, progress=tick, **options)
    else:
        from llic_imaging.batch.cluster import fan_out

        tasks = fan_out(fn, pairs, **cluster, **options)
        for i, outcome in progress(tasks, total=len(pairs), desc=desc):
            with per_file(pairs[i][0], failures):
                done[i] = outcome.unwrap()
    return [done[i] for i in sorted(done)]


def _finish(failures: list[str]) -> None:
    """Exit 1 after a batch in which some files failed (each already reported on stderr)."""
    if failures:
        click.get_current_context().exit(EXIT_DATA)


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Render rows as plain aligned text: first column left, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.group(
    "llic",
    cls=_LlicGroup,
    epilog="\b\nExample:\n  llic demo samples/          # compress, restore and verify the bundled samples",
)
@click.version_option(llic_imaging.__version__, prog_name="llic")
def cli() -> None:
    """Lossless learned compression (HPAC) of 8-16 bit medical and satellite images.

    Every command that takes files accepts several, or a directory. Exit codes: 0 ok, 1 data
    error (one "path: message" line per bad file), 2 usage error, 3 unexpected bug.
    """


@cli.command(
    epilog="\b\nExamples:\n  llic compress ct.dcm -o ct.dcm.llic\n  llic compress scans/ -o archive/ --threads 2\n"
    "  llic compress scenes/ -o archive/ --workers 8   # one file per worker process (dask)"
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@output_opt
@level_opt
@model_opt
@tile_opt
@patch_opt
@context_opt
@adapt_opt
@numthreads_opt
@device_opt
@cluster_opt
@overwrite_opt
@json_opt
@verbose_opt
@quiet_opt
def compress(
    inputs: tuple[Path, ...],
    output: str | None,
    overwrite: bool,
    as_json: bool,
    cluster: dict[str, Any],
    **options: Any,
) -> None:
    """Compress images (.npy, .png, .tif, ...) to .llic streams, keeping their metadata.

    Without -o each output is written next to its input as NAME.llic.
    """
    pairs = _plan(
        inputs,
        output,
        keep=_is_image,
        rename=lambda r: r.with_name(r.name + _SUFFIX),
        overwrite=overwrite,
    )
    failures: list[str] = []
    results = _each(_files.compress_file, pairs, "compress", failures, cluster, **options)
    if as_json:
        echo_json([r.to_dict() for r in results])
    elif verbosity() >= 0:
        for r in results:
            click.echo(
                f"{r.input} -> {r.output}: {r.input_bytes} -> {r.output_bytes} bytes "
                f"({r.ratio:.2f}x, {r.bits_per_sample:.3f} bits/sample)"
            )
    _finish(failures)


@cli.command(
    epilog="\b\nExamples:\n  llic restore ct.dcm.llic -o ct.dcm\n  llic restore archive/ -o restored/\n"
    "  llic restore scene.tif.llic -o scene.tif --cog --compress zstd --predictor 2"
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@output_opt
@click.option("--cog", is_flag=True, help="GeoTIFF outputs: write a Cloud Optimized GeoTIFF.")
@click.option(
    "--compress",
    type=click.Choice(["none", "deflate", "lzw", "zstd", "lzma", "packbits"], case_sensitive=False),
    default=None,
    help="GeoTIFF outputs: GDAL compression instead of the source's (changes the bytes).",
)
@click.option(
    "--predictor",
    type=click.IntRange(1, 2),  # 3 (floating point) never fits stored integers
    default=None,
    help="GeoTIFF outputs: GDAL predictor (1: none, 2: horizontal differencing).",
)
@numthreads_opt
@device_opt
@cluster_opt
@overwrite_opt
@json_opt
@verbose_opt
@quiet_opt
def restore(
    inputs: tuple[Path, ...],
    output: str | None,
    overwrite: bool,
    as_json: bool,
    cluster: dict[str, Any],
    cog: bool,
    compress: str | None,
    predictor: int | None,
    **options: Any,
) -> None:
    """Restore .llic streams to the files they were made from.

    Without -o, NAME.llic is restored to NAME next to it. Directories contribute their *.llic files.
    --cog, --compress and --predictor rewrite GeoTIFF outputs (same pixels and georeferencing,
    new bytes); a stream of another format is then reported as a data error.
    """
    geotiff: dict[str, Any] = {"cog": True} if cog else {}
    if compress:
        geotiff["compress"] = compress.lower()
    if predictor:
        geotiff["predictor"] = predictor
    pairs = _plan(
        inputs,
        output,
        keep=lambda p: p.name.endswith(_SUFFIX),
        rename=_strip_suffix,
        overwrite=overwrite,
    )
    failures: list[str] = []
    results = _each(
        _files.restore_file, pairs, "restore", failures, cluster, geotiff=geotiff, **options
    )
    if as_json:
        echo_json([r.to_dict() for r in results])
    elif verbosity() >= 0:
        for r in results:
            click.echo(f"{r.input} -> {r.output}: {'x'.join(map(str, r.shape))} {r.dtype}")
    _finish(failures)


@cli.command(
    epilog="\b\nExamples:\n  llic verify ct.dcm.llic            # stream checksums only\n  llic verify ct.dcm.llic ct.dcm     # restores and compares with the original"
)
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument(
    "original", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@numthreads_opt
@device_opt
@json_opt
@verbose_opt
@quiet_opt
def verify(archive: Path, original: Path | None, as_json: bool, **options: Any) -> None:
    """Check that ARCHIVE decodes exactly, and optionally that it restores ORIGINAL.

    Exits 1 and prints what differed on any mismatch.
    """
    failures: list[str] = []
    reports: list[_files.Verified] = []
    with tile_bar("verify", show=True) as tick, per_file(archive, failures):
        reports.append(_files.verify_file(archive, original, progress=tick, **options))
    for report in reports:
        if as_json:
            echo_json(report.to_dict())
        elif report.ok and verbosity() >= 0:
            against = f" against {original}" if original else ""
            click.echo(f"{archive}: OK ({', '.join(report.checks)}){against}")
        for line in report.differences:
            click.echo(f"{archive}: {line}", err=True)
        if not report.ok:
            failures.append(str(archive))
    _finish(failures)


@cli.command(epilog="\b\nExamples:\n  llic info ct.dcm.llic\n  llic info ct.dcm.llic --json")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_opt
@verbose_opt
@quiet_opt
def info(archive: Path, as_json: bool) -> None:
    """Show the header of a .llic stream (shape, dtype, model, chunks, ...) without decoding it."""
    failures: list[str] = []
    with per_file(archive, failures):
        header = llic_imaging.info(archive.read_bytes()).to_dict()
        if as_json:
            echo_json(header)
        else:
            width = max(map(len, header))
            for key, value in header.items():
                click.echo(f"{key:<{width}}  {value}")
    _finish(failures)


@cli.command(
    epilog="\b\nExamples:\n  llic bench ../shared/data --json bench.json --markdown docs/benchmarks.md\n  llic bench samples/ -c llic -c jpegls --split all"
)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full report (settings, aggregates, every plane) as JSON to this file.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="(Re)write the generated section of this markdown file, e.g. docs/benchmarks.md.",
)
@click.option(
    "-c",
    "--codec",
    "codecs",
    multiple=True,
    help="Codec to run (llic, jxl_e7, jpegls, jpeg2k, png, zstd19, or llic_adapt: llic with "
    "per-image adaptation, about 30 s per plane); repeat for several (default: all but "
    "llic_adapt).",
)
@click.option(
    "--split",
    type=click.Choice(["validation", "train", "all"]),
    default="validation",
    show_default=True,
    help="Planes of the shared corpus to use; other folders are taken whole.",
)
@click.option(
    "--memory", is_flag=True, help="Also measure llic's peak memory on an 8192x8192 uint16 image."
)
@model_opt
@patch_opt
@numthreads_opt
@verbose_opt
@quiet_opt
def bench(
    source: Path,
    json_path: Path | None,
    markdown_path: Path | None,
    codecs: tuple[str, ...],
    **options: Any,
) -> None:
    """Benchmark llic against JPEG XL, JPEG-LS, JPEG 2000, PNG and zstd on SOURCE, bit-exactly.

    Every plane goes through every codec in one run; sizes, speeds and failures are reported.
    Exits 1 if any codec failed or was inexact on any plane.
    """
    from llic_imaging import bench as benchmarks  # here, so file commands never load the harness

    try:
        report = benchmarks.run(
            source,
            codecs=codecs or benchmarks.DEFAULT_CODECS,
            json_path=json_path,
            markdown_path=markdown_path,
            progress=verbosity() >= 0,
            **options,
        )
    except ValueError as exc:  # no planes, or an unknown split/codec: the arguments are wrong
        raise click.UsageError(str(exc)) from exc
    if verbosity() >= 0:
        click.echo(report.to_markdown())
    for r in report.failures():
        click.echo(f"{r.file} {r.plane}: {r.codec}: {r.error or 'decoded plane differs'}", err=True)
    _finish([r.file for r in report.failures()])


@cli.command(
    epilog="\b\nExample:\n  llic demo samples/ --workdir /tmp/llic-demo   # keeps the .llic and restored files"
)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the .llic and restored files here (default: a temporary folder, removed after).",
)
@level_opt
@model_opt
@tile_opt
@patch_opt
@context_opt
@numthreads_opt
@device_opt
@json_opt
@verbose_opt
@quiet_opt
def demo(directory: Path, workdir: Path | None, as_json: bool, **options: Any) -> None:
    """Compress, restore and verify every image in DIRECTORY and print a ratio table.

    Nothing in DIRECTORY is modified. A file counts as lossless only if the restored file matches
    the original (byte for byte where its format allows, else pixels and metadata).
    """
    if workdir is not None and _overlap(directory, workdir):
        msg = f"--workdir {workdir} and {directory} overlap; demo never writes into DIRECTORY"
        raise click.UsageError(msg)
    files = _expand([directory], keep=_is_image)
    if not files:
        msg = f"{directory}: no image files found"
        raise click.UsageError(msg)
    failures: list[str] = []
    rows: list[_files.Demoed] = []
    with tempfile.TemporaryDirectory(prefix="llic-demo-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for src, rel in progress(files, total=len(files), desc="demo"):
            with per_file(src, failures):
                rows.append(_files.demo_file(src, work / rel.parent, **options))
    failures += [r.verified.original or "" for r in rows if not r.verified.ok]
    if as_json:
        echo_json([r.to_dict() for r in rows])
    else:
        for r in rows:
            for line in r.verified.differences:
                click.echo(f"{r.compressed.input}: {line}", err=True)
        if verbosity() >= 0:
            click.echo(_demo_table(rows, directory))
    _finish(failures)


def _overlap(a: Path, b: Path) -> bool:
    """Whether one folder is the other or inside it (after resolving links)."""
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _demo_table(rows: list[_files.Demoed], directory: Path) -> str:
    """The ratio table of ``llic demo``: one line per file and a total line.

    ``identical`` says how strictly each restore was checked: ``bytes`` where the format adapter
    rebuilds the file byte for byte, ``pixels+metadata`` where it re-encodes (PNG, zlib TIFF).
    """
    body = []
    for r in rows:
        c = r.compressed
        body.append(
            [
                str(Path(c.input).relative_to(directory)),
                c.format,
                "x".join(map(str, c.shape)),
                c.dtype,
                str(c.input_bytes),
                str(c.output_bytes),
                f"{c.ratio:.2f}",
                f"{c.bits_per_sample:.3f}",
                f"{c.seconds:.2f}",
                f"{r.restored.seconds:.2f}",
                _identical(r.verified),
            ]
        )
    total_in = sum(r.compressed.input_bytes for r in rows)
    total_out = sum(r.compressed.output_bytes for r in rows)
    body.append(
        ["total", "", "", "", str(total_in), str(total_out), f"{total_in / max(total_out, 1):.2f}"]
        + ["", f"{sum(r.compressed.seconds for r in rows):.2f}"]
        + [f"{sum(r.restored.seconds for r in rows):.2f}"]
        + ["all" if all(r.verified.ok for r in rows) else "NOT ALL"]
    )
    header = ["file", "format", "shape", "dtype", "bytes", "llic bytes", "ratio", "bits/sample"]
    return _table(body, [*header, "encode s", "restore s", "identical"])


def _identical(verified: _files.Verified) -> str:
    """What the demo proved equal: the file bytes, or (other formats) the pixels and metadata."""
    if not verified.ok:
        return "NO"
    return "bytes" if "bytes" in verified.checks else "pixels+metadata"


def main(argv: list[str] | None = None) -> int:
    """Run ``llic`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    click's standalone mode would call ``sys.exit``; returning the code instead lets tests and
    other Python callers run the CLI in-process.
    """
    return run_main(cli, argv, "llic")
