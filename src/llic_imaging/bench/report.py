"""Benchmark results: per-plane records, group means, throughput, JSON and the generated markdown.

The markdown is written only between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` so the
hand-written parts of ``docs/benchmarks.md`` survive every rerun.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llic_imaging._fileio import write_atomic
from llic_imaging.corpus import EXTRA_GROUPS, GROUPS

__all__ = [
    "BEGIN",
    "END",
    "READ",
    "BenchReport",
    "PlaneResult",
    "check_markdown",
    "is_slice",
    "replace_section",
]

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
#: Codec name of the record for a file the format adapters could not read (no planes).
READ = "read"
#: Planes of this shape and stored depth get their own throughput row (the issue's speed target).
SLICE_ROW = "512x512 16-bit slices"
# ours / reference: the targets are against JPEG XL e7 (training issue) and JPEG-LS (engine issue)
RATIOS = ("llic/jxl_e7", "llic/jpegls", "llic_adapt/jxl_e7", "llic_adapt/jpegls")
ROWS = ("all planes", SLICE_ROW)


@dataclass(frozen=True)
class PlaneResult:
    """One codec on one plane. ``bps`` = 8 * ``compressed_bytes`` / samples.

    ``exact`` is False when the decoded plane differs or the codec raised (then ``error`` says
    why and the size and times are ``None``).
    """

    file: str
    group: str
    plane: str
    height: int
    width: int
    dtype: str
    bits: int
    constant: bool
    codec: str
    compressed_bytes: int | None
    bps: float | None
    encode_s: float | None
    decode_s: float | None
    exact: bool
    error: str | None = None

    @property
    def samples(self) -> int:
        return self.height * self.width


@dataclass
class BenchReport:
    """Everything one ``run`` measured, with the aggregates its tables show.

    Group means are unweighted over planes and skip constant planes (as ``BASELINES.md``); a
    codec that failed or was inexact on any counted plane of a group has no mean there (``None``),
    so a failure can never make a codec look better.
    """

    results: list[PlaneResult]
    codecs: tuple[str, ...]
    source: str
    split: str
    numthreads: int | None
    runtime_s: float
    settings: dict[str, str]
    environment: dict[str, str]
    memory: dict[str, Any] | None = None
    created: str = field(default="")

    def groups(self) -> list[str]:
        """Every corpus group, then any extra group that has results."""
        present = {r.group for r in self.results}
        return [*GROUPS, *(g for g in EXTRA_GROUPS if g in present)]

    def group_means(self) -> dict[str, dict[str, float | None]]:
        """Mean bps per group and codec; ``None`` where the group has no planes or a failure."""
        per: dict[tuple[str, str], list[PlaneResult]] = defaultdict(list)
        for r in self.results:
            if not r.constant:
                per[(r.group, r.codec)].append(r)
        out: dict[str, dict[str, float | None]] = {}
        for group in self.groups():
            out[group] = {}
            for codec in self.codecs:
                rows = per.get((group, codec), [])
                ok = rows and all(r.exact for r in rows)
                out[group][codec] = statistics.fmean(r.bps for r in rows) if ok else None
        return out

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """llic's (and llic_adapt's) mean bps divided by the jxl_e7 and jpegls means, per group
        (the issues' targets)."""
        means = self.group_means()
        out: dict[str, dict[str, float | None]] = {}
        for group, row in means.items():
            out[group] = {}
            for key in RATIOS:
                ours, ref = key.split("/")
                if ours in row and ref in row:
                    a, b = row[ours], row[ref]
                    out[group][key] = a / b if a is not None and b else None
        return out

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """(files, planes counted in means, constant planes) per group."""
        files: dict[str, set[str]] = defaultdict(set)
        planes: dict[str, set[tuple[str, str]]] = defaultdict(set)
        constant: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for r in self.results:
            if r.codec != READ:
                files[r.group].add(r.file)
                (constant if r.constant else planes)[r.group].add((r.file, r.plane))
        return {g: (len(files[g]), len(planes[g]), len(constant[g])) for g in self.groups()}

    def throughput(self) -> dict[str, dict[str, tuple[float, float] | None]]:
        """Median encode and decode MPix/s per codec, over all planes and over 512x512 16-bit slices.

        Medians resist the few planes where a codec's fixed costs dominate (64x64 slices).
        """
        rows = {row: [r for r in self.results if r.exact and _in_row(r, row)] for row in ROWS}
        out: dict[str, dict[str, tuple[float, float] | None]] = {}
        for row, results in rows.items():
            out[row] = {}
            for codec in self.codecs:
                mine = [r for r in results if r.codec == codec]
                out[row][codec] = (
                    (
                        statistics.median(r.samples / 1e6 / r.encode_s for r in mine),
                        statistics.median(r.samples / 1e6 / r.decode_s for r in mine),
                    )
                    if mine
                    else None
                )
        return out

    def failures(self) -> list[PlaneResult]:
        """Results that were not bit-exact or raised."""
        return [r for r in self.results if not r.exact]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: run settings, aggregates and every per-plane record."""
        return {
            "created": self.created,
            "source": self.source,
            "split": self.split,
            "codecs": list(self.codecs),
            "numthreads": self.numthreads,
            "runtime_s": self.runtime_s,
            "settings": self.settings,
            "environment": self.environment,
            "counts": {
                g: dict(zip(("files", "planes", "constant_planes"), c, strict=True))
                for g, c in self.counts().items()
            },
            "group_mean_bps": self.group_means(),
            "ratios": self.ratios(),
            "throughput_mpix_s": {
                row: {
                    c: None if v is None else {"encode": v[0], "decode": v[1]} for c, v in d.items()
                }
                for row, d in self.throughput().items()
            },
            "failures": len(self.failures()),
            "memory": self.memory,
            "results": [asdict(r) for r in self.results],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as indented JSON (strict: no NaN, missing values are null).

        Atomically: a full disk or a crash leaves the previous report whole, not half of one.
        """
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        write_atomic(path, text.encode("utf-8"))

    def to_markdown(self) -> str:
        """The generated section (markers included) for ``docs/benchmarks.md``."""
        lines = [
            BEGIN,
            "<!-- Generated by llic_imaging.bench.run; edits here are overwritten. -->",
            "",
        ]
        lines += self._run_summary()
        lines += [
            "",
            "### Mean bits per sample per group (unweighted over non-constant planes)",
            "",
        ]
        lines += self._bps_table()
        lines += ["", "### Throughput (MPix/s, median over planes, encode / decode)", ""]
        lines += self._speed_table()
        if self.memory is not None:
            lines += ["", "### Peak memory", "", self._memory_line()]
        lines += ["", "### Per file (mean bps over the file's non-constant planes)", ""]
        lines += self._file_table()
        lines += ["", END]
        return "\n".join(lines) + "\n"

    def write_markdown(self, path: str | os.PathLike[str]) -> None:
        """(Re)write the generated section of ``path``, creating the file if needed.

        Atomically: rewriting in place would leave the hand-written text cut off, and the end
        marker gone, on a full disk, and the next run would then refuse the file.
        """
        text = replace_section(_read_markdown(path), self.to_markdown())
        write_atomic(path, text.encode("utf-8"))

    def _run_summary(self) -> list[str]:
        counts = self.counts()
        files = sum(c[0] for c in counts.values())
        planes = sum(c[1] for c in counts.values())
        constant = sum(c[2] for c in counts.values())
        checked = sum(r.codec != READ for r in self.results)
        failed = self.failures()
        lines = [
            f"Run {self.created}: split `{self.split}` of `{self.source}`: {files} files, "
            f"{planes} planes in the means ({constant} constant planes coded but excluded), "
            f"total runtime {self.runtime_s:.0f} s.",
            f"Machine: {self.environment.get('platform', '?')}, "
            f"{self.environment.get('cpus', '?')} CPUs; classical codecs single-threaded.",
            "",
            "| codec | settings |",
            "|---|---|",
            *(f"| {c} | {self.settings.get(c, '')} |" for c in self.codecs),
            "",
            f"**Round trip:** {checked} encode/decode pairs checked; "
            f"{len(failed)} not bit-exact or failed.",
        ]
        lines += [
            f"- {r.codec} on {r.file} {r.plane}: {r.error or 'not bit-exact'}" for r in failed[:20]
        ]
        if len(failed) > 20:
            lines.append(f"- ... and {len(failed) - 20} more (see the JSON report)")
        return lines

    def _bps_table(self) -> list[str]:
        means, ratios, counts = self.group_means(), self.ratios(), self.counts()
        ratio_cols = [k for k in RATIOS if any(k in r for r in ratios.values())]
        head = ["group", "files", "planes", *self.codecs, *ratio_cols]
        lines = [_row(head), _row(["---"] * len(head))]
        for group in self.groups():
            row = means[group]
            best = min((v for v in row.values() if v is not None), default=None)
            cells = [
                "–" if v is None else (f"**{v:.2f}**" if v == best else f"{v:.2f}")
                for v in row.values()
            ]
            rcells = [_fmt(ratios[group].get(k), 3) for k in ratio_cols]
            lines.append(_row([group, *map(str, counts[group][:2]), *cells, *rcells]))
        return lines

    def _speed_table(self) -> list[str]:
        speeds = self.throughput()
        n = {
            row: len({(r.file, r.plane) for r in self.results if _in_row(r, row)}) for row in speeds
        }
        lines = [_row(["planes", "n", *self.codecs]), _row(["---"] * (len(self.codecs) + 2))]
        for row, d in speeds.items():
            cells = ["–" if v is None else f"{_speed(v[0])} / {_speed(v[1])}" for v in d.values()]
            lines.append(_row([row, str(n[row]), *cells]))
        return lines

    def _memory_line(self) -> str:
        m = self.memory or {}
        shape = "x".join(map(str, m.get("shape", ())))
        return (
            f"llic encode + decode of a synthetic {shape} {m.get('dtype', '')} image in a fresh "
            f"process: peak RSS {m.get('peak_rss_bytes', 0) / 2**20:.0f} MiB "
            f"(bit-exact: {m.get('exact')})."
        )

    def _file_table(self) -> list[str]:
        per: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        bits: dict[tuple[str, str], set[int]] = defaultdict(set)
        planes: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in self.results:
            key = (r.file, r.group)
            if r.constant or r.codec == READ:
                continue
            planes[key].add(r.plane)
            bits[key].add(r.bits)
            per[key][r.codec].append(r.bps if r.exact and r.bps is not None else math.nan)
        head = ["file", "group", "planes", "bits needed", *self.codecs]
        lines = [_row(head), _row(["---"] * len(head))]
        order = {g: i for i, g in enumerate(self.groups())}
        for key in sorted(per, key=lambda k: (order.get(k[1], 99), k[0])):
            b = sorted(bits[key])
            depth = str(b[0]) if len(b) == 1 else f"{b[0]}-{b[-1]}"
            cells = [_fmt(_mean(per[key].get(c, [])), 2) for c in self.codecs]
            lines.append(_row([key[0], key[1], str(len(planes[key])), depth, *cells]))
        return lines


def replace_section(text: str, section: str) -> str:
    """Return ``text`` with its marked section replaced by ``section`` (or ``section`` appended).

    Raises
    ------
    ValueError
        If ``text`` has a begin marker without an end marker after it, which would otherwise
        silently eat the hand-written text that follows.
    """
    start = text.find(BEGIN)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find(END, start)
    if end < 0:
        msg = f"found {BEGIN} without a following {END}; fix the file by hand"
        raise ValueError(msg)
    return text[:start] + section.rstrip("\n") + text[end + len(END) :]


def check_markdown(path: str | os.PathLike[str]) -> None:
    """Raise now what :meth:`BenchReport.write_markdown` would raise for ``path`` after a run.

    A benchmark takes up to hours; a markdown file with broken markers (or not UTF-8) should
    stop it before it starts, not throw its results away at the end.

    Raises
    ------
    ValueError
        If ``path`` has a begin marker without an end marker, or is not UTF-8 text.
    """
    try:
        replace_section(_read_markdown(path), "")
    except ValueError as exc:  # UnicodeDecodeError included
        msg = f"{path}: {exc}"
        raise ValueError(msg) from exc


def _read_markdown(path: str | os.PathLike[str]) -> str:
    """The text of the markdown file at ``path``, or a bare heading if there is none yet."""
    p = Path(path)
    return p.read_text(encoding="utf-8") if p.exists() else "# Benchmarks\n"


def is_slice(shape: tuple[int, ...], dtype: str) -> bool:
    """A plane of :data:`SLICE_ROW`: 512x512 stored in 16 bits (the codec's speed target)."""
    return tuple(shape) == (512, 512) and dtype in ("uint16", "int16")


def _in_row(r: PlaneResult, row: str) -> bool:
    if r.codec == READ:
        return False
    if row == SLICE_ROW:
        return is_slice((r.height, r.width), r.dtype)
    return True


def _mean(values: Iterable[float]) -> float | None:
    v = list(values)
    return statistics.fmean(v) if v and not any(math.isnan(x) for x in v) else None


def _fmt(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _speed(v: float) -> str:
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"  # a slow codec still shows two digits


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
