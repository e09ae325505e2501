"""``run``: every plane through every codec in one pass, checked bit for bit and timed.

Front-ends (``llic bench``) call :func:`run` only; its signature is the stable contract.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from llic_imaging import corpus
from llic_imaging._fileio import file_id
from llic_imaging.bench.codecs import DEFAULT_CODECS, Codec, bits_needed, resolve
from llic_imaging.bench.memory import measure_memory
from llic_imaging.bench.report import READ, BenchReport, PlaneResult, check_markdown
from llic_imaging.errors import LlicError

__all__ = ["run"]

# Operations faster than this are repeated until they add up to it, as for baselines.tsv, so
# sub-millisecond codecs on small planes get a usable time.
_MIN_TIMED_S = 0.05
_MAX_REPEATS = 100

Source = str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Iterable[corpus.Plane]


def run(
    source: Source,
    *,
    codecs: Iterable[str] = DEFAULT_CODECS,
    split: str = "validation",
    numthreads: int | None = None,
    model: str | None = None,
    patch: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    memory: bool = False,
) -> BenchReport:
    """Benchmark codecs side by side on the planes of a corpus, one plane at a time.

    Every plane is encoded and decoded by every codec in the same run, the decoded plane is
    compared with the input, and size and times are recorded; so the comparison never mixes
    machines, corpus versions or plane selections.

    Parameters
    ----------
    source
        A data folder (e.g. ``../shared/data``), one file, an iterable of files, or an iterable
        of :class:`llic_imaging.corpus.Plane` (used as given). Files named explicitly are always
        benchmarked; folders are filtered by ``split``.
    codecs
        Names from :data:`llic_imaging.bench.CODECS`. Classical codecs run single-threaded
        with the ``BASELINES.md`` settings; ``"llic"`` uses only ``llic_imaging.encode/decode``.
    split
        ``"validation"`` (the committed split), ``"train"`` or ``"all"``. It filters folders that
        hold files of the committed lists (the shared corpus); any other folder is taken whole.
    numthreads
        Passed to ``llic_imaging.encode/decode``; ``None`` is the library default.
    model
        Model llic encodes with (``None``: the automatic choice); for comparing trained variants.
    patch
        llic's patch side (``None``: the codec default, 64 for 9-16 bit planes and 128 for 8-bit);
        for the coding-steps ablation.
    json_path, markdown_path
        Where to write :meth:`BenchReport.to_dict` as JSON and the generated markdown section
        (between the ``bench`` markers of an existing file, e.g. ``docs/benchmarks.md``).
    progress
        Show a tqdm progress bar over planes on stderr (only when stderr is a terminal).
    memory
        Also run :func:`llic_imaging.bench.measure_memory` (8192x8192 uint16, a fresh process;
        needs ``"llic"``) and put its peak RSS in the report.

    Returns
    -------
    BenchReport
        Per-plane results and the aggregates. Failed or inexact round trips, and files the
        format adapters cannot read (codec ``"read"``), are recorded, not raised: check
        :meth:`BenchReport.failures`.

    Raises
    ------
    ValueError
        If a codec or split name is unknown, there is no file to benchmark, or a report path
        is unusable: a folder, in a missing or read-only folder, one of the benchmarked files,
        the same for both reports, or a markdown file with broken markers. All of these are
        checked before the first plane is read.
    RuntimeError
        If a codec cannot run here (e.g. the llic engine is missing).
    FileNotFoundError
        If a folder or file does not exist.
    """
    names = tuple(codecs)
    if memory and "llic" not in names:
        msg = "memory=True measures llic; include 'llic' in codecs"
        raise ValueError(msg)
    started = time.perf_counter()
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    resolved = resolve(names, numthreads, model, patch)
    label, selection, files, given = _select(source, split)
    _check_outputs(json_path, markdown_path, [f.path for f in files] + [p.file.path for p in given])
    results: list[PlaneResult] = []
    from tqdm import tqdm

    # The total grows file by file, so the corpus is never read up front just to count planes.
    # disable=None: tqdm stays silent when stderr is not a terminal (CI logs, pipes).
    with tqdm(
        desc="bench", unit="plane", total=0, file=sys.stderr, disable=None if progress else True
    ) as bar:
        for planes in _read(files, given, results):
            bar.total += len(planes)
            bar.refresh()
            for plane in planes:
                bar.set_postfix_str(f"{plane.file.relpath} {plane.name}"[-60:], refresh=False)
                results.extend(_bench_plane(plane, resolved))
                bar.update()
    report = BenchReport(
        results=results,
        codecs=names,
        source=label,
        split=selection,
        numthreads=numthreads,
        runtime_s=0.0,
        settings={c.name: c.settings for c in resolved},
        environment=_environment(),
        memory=measure_memory(numthreads=numthreads, model=model) if memory else None,
        created=created,
    )
    report.runtime_s = time.perf_counter() - started
    if json_path is not None:
        report.write_json(json_path)
    if markdown_path is not None:
        report.write_markdown(markdown_path)
    return report


def _select(
    source: Source, split: str
) -> tuple[str, str, list[corpus.CorpusFile], list[corpus.Plane]]:
    """Return the source label, the selection applied, the files to read and the planes given.

    ``split`` filters folders that hold files of the committed split lists (the shared corpus);
    other folders (``samples/``) and files or planes named explicitly are taken whole.
    """
    if split != "all" and split not in corpus.SPLITS:
        msg = f"split must be 'all' or one of {corpus.SPLITS}, got {split!r}"
        raise ValueError(msg)
    items = [source] if isinstance(source, str | os.PathLike) else list(source)
    if items and all(isinstance(p, corpus.Plane) for p in items):
        return "given planes", "as given", [], items  # type: ignore[return-value]
    files: list[corpus.CorpusFile] = []
    filtered = False
    for item in items:
        path = Path(item)  # type: ignore[arg-type]
        found = corpus.files(path)
        if path.is_dir() and split != "all" and any(f.split is not None for f in found):
            found = [f for f in found if f.split == split]
            filtered = True
        files.extend(found)
    label = ", ".join(_shorten(Path(p)) for p in items)  # type: ignore[arg-type]
    if not files:
        msg = f"no image files to benchmark in {label or 'an empty source'} (split {split!r})"
        raise ValueError(msg)
    return label, split if filtered else "all", files, []


def _check_outputs(
    json_path: str | os.PathLike[str] | None,
    markdown_path: str | os.PathLike[str] | None,
    inputs: list[Path],
) -> None:
    """Refuse unusable report paths before the run instead of failing after it (hours later).

    A report that names a benchmarked file would replace that image (``--json scan.npy``), so
    outputs are compared with the inputs by inode, which also catches links.
    """
    targets = [Path(p) for p in (json_path, markdown_path) if p is not None]
    if len(targets) == 2 and _same_file(*targets):
        msg = f"{targets[0]}: the JSON and the markdown report need different files"
        raise ValueError(msg)
    images = {file_id(p) for p in inputs if p.exists()}
    for target in targets:
        _check_output(target, images)
    if markdown_path is not None:
        check_markdown(markdown_path)


def _check_output(target: Path, images: set[tuple[int, int]]) -> None:
    """Raise ValueError if the report cannot be written to ``target`` or would replace an image."""
    folder = target.absolute().parent
    if target.is_dir():
        problem = "is a folder"
    elif not folder.is_dir():
        problem = f"folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"folder {folder} is not writable"
    elif target.exists() and file_id(target) in images:
        problem = "is one of the benchmarked files; choose another output"
    else:
        return
    msg = f"{target}: {problem}"
    raise ValueError(msg)


def _same_file(a: Path, b: Path) -> bool:
    """Same path after resolving links, or (both existing) the same file by another name."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return a.exists() and b.exists() and file_id(a) == file_id(b)


def _read(
    files: list[corpus.CorpusFile], given: list[corpus.Plane], results: list[PlaneResult]
) -> Iterator[list[corpus.Plane]]:
    """Yield the given planes, then each file's planes; an unreadable file goes into ``results``.

    One unreadable file is that file's failure, not the run's (batch behaviour of the CLIs).
    """
    if given:
        yield given
    for file in files:
        try:
            planes = corpus.read_planes(file)
        except LlicError as exc:
            results.append(_read_failure(file, exc))
            continue
        yield planes


def _read_failure(file: corpus.CorpusFile, exc: LlicError) -> PlaneResult:
    return PlaneResult(
        file=file.relpath,
        group=file.group,
        plane="",
        height=0,
        width=0,
        dtype="",
        bits=0,
        constant=False,
        codec=READ,
        compressed_bytes=None,
        bps=None,
        encode_s=None,
        decode_s=None,
        exact=False,
        error=f"{type(exc).__name__}: {exc}",
    )


def _shorten(path: Path) -> str:
    # Reports are committed: show the path the way the docs name it, not this machine's layout.
    try:
        return os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:
        return str(path)


def _bench_plane(plane: corpus.Plane, codecs: list[Codec]) -> list[PlaneResult]:
    a = plane.array
    common = {
        "file": plane.file.relpath,
        "group": plane.group,
        "plane": plane.name,
        "height": int(a.shape[0]),
        "width": int(a.shape[1]),
        "dtype": a.dtype.name,
        "bits": bits_needed(a),
        "constant": plane.constant,
    }
    out = []
    for codec in codecs:
        try:
            prepared = codec.prepare(a)
            data, enc_s = _timed(codec.encode, prepared)
            decoded, dec_s = _timed(codec.decode, data, prepared)
        except Exception as exc:  # any codec failure is a result, not the end of the run
            out.append(
                PlaneResult(
                    **common,
                    codec=codec.name,
                    compressed_bytes=None,
                    bps=None,
                    encode_s=None,
                    decode_s=None,
                    exact=False,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            continue
        # Bit-exact means same dtype and shape as well as same values.
        exact = (
            decoded.dtype == prepared.array.dtype
            and decoded.shape == prepared.array.shape
            and bool(np.array_equal(decoded, prepared.array))
        )
        out.append(
            PlaneResult(
                **common,
                codec=codec.name,
                compressed_bytes=len(data),
                bps=8 * len(data) / a.size,
                encode_s=enc_s,
                decode_s=dec_s,
                exact=exact,
            )
        )
    return out


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - t0
    if elapsed >= _MIN_TIMED_S:
        return result, elapsed
    repeats = min(_MAX_REPEATS, int(_MIN_TIMED_S / max(elapsed, 1e-6)))
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(*args)
    return result, (time.perf_counter() - t0 + elapsed) / (repeats + 1)


def _environment() -> dict[str, str]:
    return {
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
