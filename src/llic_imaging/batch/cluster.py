"""Run a per-file function over many files on a dask.distributed cluster, one task per file.

A file is the unit of work because each one is already independent: its output is written
atomically by the task, and nothing is shared between files. The cluster is either a
``LocalCluster`` of worker processes started here (``workers``) or an existing one
(``scheduler``, e.g. ``tcp://host:8786`` from ``dask scheduler`` / ``dask worker``). Streams do
not depend on where they were coded (integer-exact coding), so a file coded on a worker is the
file the same command writes in one process.

Errors and warnings that concern a file (``LlicError``, ``OSError``, ``LlicWarning``) travel
back as data in an :class:`Outcome`, so the caller reports them exactly as it reports a file
done in process; anything else is a bug and is raised in the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llic_imaging.errors import LlicError, LlicWarning, MissingDependencyError

__all__ = ["Outcome", "fan_out"]


@dataclass(frozen=True)
class Outcome:
    """What one task gave: its value, or the file's error; the file's warnings either way."""

    value: Any = None
    error: LlicError | OSError | None = None
    warned: list[tuple[type[Warning], str]] = field(default_factory=list)

    def unwrap(self) -> Any:
        """Issue the task's warnings here, then raise its error or return its value."""
        for category, message in self.warned:
            warnings.warn(message, category, stacklevel=2)
        if self.error is not None:
            raise self.error
        return self.value


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    """The task, on a worker: ``fn(*args, **kwargs)`` with the file's errors as data."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LlicWarning)
        try:
            value, error = fn(*args, **kwargs), None
        except (LlicError, OSError) as exc:
            value, error = None, exc
    warned = [(w.category, str(w.message)) for w in caught if issubclass(w.category, LlicWarning)]
    return Outcome(value, error, warned)


def fan_out(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    **kwargs: Any,
) -> Iterator[tuple[int, Outcome]]:
    """``fn(*calls[i], **kwargs)`` for every ``i`` as one task each -> ``(i, outcome)`` in the
    order the tasks finish. ``scheduler``: the address of a running cluster; otherwise a
    ``LocalCluster`` of ``workers`` single-threaded worker processes (default: one per core)
    lives for the duration of the run. ``fn`` must be importable on the workers."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        msg = 'running on a dask cluster needs distributed: pip install "llic-imaging[dask]"'
        raise MissingDependencyError(msg) from exc
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None, processes=True
        )
    try:
        with Client(scheduler or cluster) as client:
            futures = {
                client.submit(_call, fn, args, kwargs, pure=False): i
                for i, args in enumerate(calls)
            }
            for future in as_completed(futures):
                yield futures[future], future.result()
    finally:
        if cluster is not None:
            cluster.close()
