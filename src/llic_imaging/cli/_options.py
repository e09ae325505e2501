"""Shared click options, exit codes, per-file error reporting, progress and JSON output for the CLIs.

Users: ``level_opt``, ``model_opt``, ``tile_opt``, ``patch_opt``, ``context_opt`` (compress,
demo); ``adapt_opt`` (compress); ``numthreads_opt`` (all but info); ``device_opt`` (compress,
restore, verify, demo); ``output_opt``, ``overwrite_opt``, ``cluster_opt`` (compress, restore);
``json_opt`` (all but bench); ``verbose_opt``, ``quiet_opt`` (every command). ``llic-dicom``
uses ``adapt_opt`` (compress), ``numthreads_opt``, ``verbose_opt``, ``quiet_opt``, ``verbosity``
and the exit codes.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from llic_imaging.errors import LlicError, LlicWarning

__all__ = [
    "adapt_opt",
    "cluster_opt",
    "run_main",
    "ExitCodeGroup",
    "EXIT_BUG",
    "EXIT_DATA",
    "EXIT_OK",
    "EXIT_USAGE",
    "device_opt",
    "echo_json",
    "json_opt",
    "level_opt",
    "model_opt",
    "numthreads_opt",
    "output_opt",
    "overwrite_opt",
    "patch_opt",
    "context_opt",
    "per_file",
    "progress",
    "quiet_opt",
    "tile_bar",
    "tile_opt",
    "verbose_opt",
    "verbosity",
]

EXIT_OK = 0
EXIT_DATA = 1  # an LlicError or OSError for some input: one `path: message` line each
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_BUG = 3  # anything else: a bug in llic_imaging (traceback with -v)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after temporaries are removed
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), after temporaries are removed

_VERBOSITY = "llic.verbosity"
# Readers that log a file's quirks without naming the file; the adapters' errors name it, so
# these lines would only break "one path: message line per file". Shown with -v.
_LIBRARY_LOGGERS = ("tifffile", "nibabel")
_T = TypeVar("_T")


class _EchoHandler(logging.Handler):
    """Log through ``click.echo`` so records follow the *current* stderr (CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """Map -v/-q counts to a logging level on the package logger, once per command line."""
    delta = value if param.name == "verbose" else -value
    level = ctx.meta.get(_VERBOSITY, 0) + delta
    ctx.meta[_VERBOSITY] = level
    logger = logging.getLogger("llic_imaging")
    logger.setLevel(logging.WARNING - 10 * max(-2, min(level, 2)))
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("llic: %(message)s"))
        logger.addHandler(handler)
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if level > 0 else logging.CRITICAL + 1)
    return value


def verbosity(ctx: click.Context | None = None) -> int:
    """Return the net -v/-q count of this command line (negative means quiet)."""
    ctx = ctx or click.get_current_context(silent=True)
    return ctx.meta.get(_VERBOSITY, 0) if ctx is not None else 0


verbose_opt = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    callback=_set_verbosity,
    help="More output: -v logs each file, -vv debug; tracebacks for unexpected errors.",
)
quiet_opt = click.option(
    "-q",
    "--quiet",
    count=True,
    expose_value=False,
    callback=_set_verbosity,
    help="Less output: no progress bar, tables or warnings; errors still go to stderr.",
)
numthreads_opt = click.option(
    "--threads",
    "--numthreads",
    "numthreads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for coding: the model and the encoder's per-tile searches (default: 1). Output is identical for any value.",
)


def _check_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device cuda`` on a machine without a usable GPU is a usage error, not a bug: the
    runtime's own check (``resolve_device``), run before any work, as click's BadParameter."""
    if value is not None:
        from llic_imaging.model.runtime import resolve_device

        try:
            resolve_device(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return value


device_opt = click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    callback=_check_device,
    help="Where the model runs (default cpu). Streams decode bit-exactly on either device.",
)
# The ranges mirror llic_imaging.encode's documented limits, so bad values are usage errors (2).
tile_opt = click.option(
    "--tile",
    type=click.IntRange(min=8, max=4096),
    default=None,
    help="Tile edge in pixels, 8 to 4096; each tile is an independently decodable chunk "
    "(default 256).",
)
patch_opt = click.option(
    "--patch",
    type=click.Choice(["16", "32", "64", "128"]),
    default=None,
    callback=lambda _ctx, _param, value: None if value is None else int(value),
    help="Patch edge in pixels (default 64 for 9-16 bit data, 128 for 8-bit): larger patches code a little smaller and decode "
    "slower (more network steps per tile).",
)
context_opt = click.option(
    "--context",
    type=click.IntRange(min=1, max=1024),
    default=None,
    help="Stacks (volumes, multiband rasters): plane context group K, 1 to 1024 (default 4; 1: "
    "off). Inside each group of K planes a tile may be coded against the previous plane (its "
    "difference, or its predictions refined by that plane's prediction errors) where that is "
    "smaller; reading one plane then decodes up to K - 1 earlier tiles.",
)
adapt_opt = click.option(
    "--adapt",
    is_flag=True,
    help="Per-image adaptation: fine-tune the model on each image (about 30 s) and store the "
    "change in the stream where it saves more than it costs (typically 2-8 % on CT, MR and "
    "radiographs). Decoding costs the same as without.",
)
level_opt = click.option(
    "--level",
    type=click.IntRange(min=1, max=1),
    default=None,
    help="Effort level; only 1 exists today. Every level is lossless.",
)
model_opt = click.option(
    "--model",
    default=None,
    help='Model id to encode with (default "auto": the shipped model, or its 8-bit fine-tune where a small probe codes smaller). Stored in the stream header.',
)
json_opt = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable JSON on stdout instead of text.",
)


def cluster_opt(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--workers N`` / ``--scheduler ADDRESS``: one dask task per file, as ``cluster``
    (``{"workers": ..., "scheduler": ...}``; both None: in this process)."""

    def both(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        cluster = ctx.params.setdefault("cluster", {})
        cluster[param.name] = value
        if all(cluster.get(k) is not None for k in ("workers", "scheduler")):
            msg = "give --workers (a local cluster) or --scheduler (a running one), not both"
            raise click.UsageError(msg)
        return value

    f = click.option(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        expose_value=False,
        callback=both,
        help="Code the files on a running dask cluster, e.g. tcp://host:8786, one task per file "
        "(needs the dask extra and llic-imaging on the workers).",
    )(f)
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        expose_value=False,
        callback=both,
        help="Code the files on a local dask cluster of N worker processes, one task per file "
        "(needs the dask extra; give --threads 1 when N is the number of cores).",
    )(f)


overwrite_opt = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace existing outputs (otherwise an existing output is a usage error).",
)
output_opt = click.option(
    "-o",
    "--output",
    type=click.Path(),  # a str: a trailing "/" (an output directory) must survive
    default=None,
    help="Output file, or a directory when there are several inputs, IN is a directory, or OUT ends in /.",
)


def echo_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout; the shapes are documented in docs/cli.md."""
    click.echo(json.dumps(obj, indent=2))


def _interactive() -> bool:
    return verbosity() >= 0 and sys.stderr.isatty()


def progress(items: Iterable[_T], *, total: int, desc: str) -> Iterator[_T]:
    """Wrap ``items`` in a per-file tqdm bar on stderr, shown only for an interactive run."""
    from tqdm import tqdm

    show = total > 1 and _interactive()
    yield from tqdm(items, total=total, desc=desc, unit="file", file=sys.stderr, disable=not show)


@contextmanager
def tile_bar(desc: str, *, show: bool) -> Iterator[Callable[[int], None] | None]:
    """Yield a per-tile progress callback for ``encode``/``decode``, or None when hidden.

    One large image (an 8192x8192 band) takes minutes, so a single-file run gets a bar over
    tiles instead of a useless 1-file bar.
    """
    if not (show and _interactive()):
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=desc, unit="tile", file=sys.stderr) as bar:
        yield bar.update


@contextmanager
def per_file(path: Path | str, failures: list[str]) -> Iterator[None]:
    """Report what happens to one file as ``path: ...`` lines on stderr, and go on with the rest.

    A data error becomes one ``path: message`` line and is recorded in ``failures``: batch
    commands keep working through the remaining files and exit 1 at the end, so one bad input
    does not hide the results of the others. ``OSError`` counts as a data error here because an
    unreadable or unwritable file is about the file, not about the program. Library warnings
    (e.g. ``MetadataWarning``) become ``path: warning: message`` lines, hidden by ``-q``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LlicWarning)
        try:
            yield
        except BrokenPipeError:  # stdout closed by the reader (| head): not about this file
            raise
        except (LlicError, OSError) as exc:
            where = str(path)
            if isinstance(exc, OSError) and exc.strerror:
                where, message = str(exc.filename or path), exc.strerror
            else:
                message = str(exc)
            # Format adapters already name the file; do not print "x.npy: x.npy: ...".
            line = message if message.startswith(f"{where}: ") else f"{where}: {message}"
            click.echo(line, err=True)
            failures.append(str(path))
    if verbosity() >= 0:
        for w in caught:
            click.echo(f"{path}: warning: {w.message}", err=True)


class ExitCodeGroup(click.Group):
    """A group that turns exceptions escaping a command into the documented exit codes.

    ``LlicError``/``OSError`` (a damaged file, an unwritable folder) print one line and exit 1;
    anything else is a bug: exit 3, with the traceback under ``-v``. Subclasses set ``prog``.
    """

    prog = "llic"

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (
            click.exceptions.ClickException,
            click.exceptions.Exit,
            click.exceptions.Abort,
            BrokenPipeError,
        ):
            raise
        except (LlicError, OSError) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
            click.echo(f"{self.prog}: {where}{text}", err=True)
            raise click.exceptions.Exit(EXIT_DATA) from exc
        except Exception as exc:
            if verbosity(ctx) > 0:
                click.echo(traceback.format_exc(), err=True, nl=False)
            hint = "" if verbosity(ctx) > 0 else " (run with -v for the traceback)"
            click.echo(
                f"{self.prog}: unexpected error, please report it: {type(exc).__name__}: {exc}{hint}",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_BUG) from exc


def run_main(group: click.Group, argv: list[str] | None, prog: str) -> int:
    """Run a console-script group in-process and return its exit code.

    click's standalone mode would call ``sys.exit``; returning the code lets tests and other
    Python callers run the CLI in-process. Ctrl-C and SIGTERM unwind like an exception, so
    temporary files and folders are removed, and give 130 and 143. A reader closing stdout
    (``| head``) is not blamed on a file: click ends the run quietly with 1.
    """
    with _terminate_as_exception():
        try:
            result = group.main(args=argv, prog_name=prog, standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except click.Abort:
            click.echo("Aborted!", err=True)
            return EXIT_INTERRUPTED
        except _Terminated:
            click.echo("Terminated", err=True)
            return EXIT_TERMINATED
    return result if isinstance(result, int) else EXIT_OK


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``with`` blocks clean up on the way out."""


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` for the block (signals reach the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
