"""``llic-dicom compress`` ratio on the shared DICOM files, next to JPEG-LS and JPEG XL archives.

    python benchmarks/dicom_archive.py [--source ../shared/data] [--limit N]

* llic: every ``*.dcm`` below SOURCE (symbolic links in a temporary study) archived by
  ``batch.compress_tree(study, archive, numthreads=1)``, the library twin of ``llic-dicom
  compress STUDY -o ARCHIVE --threads 1``; its bytes are every file of the archive folder
  (``.llic``, ``.keep``, ``manifest.json``).
* JPEG-LS (as ``dcmcjpls``): each instance with native pixel data re-encoded by pydicom's
  JPEG-LS Lossless encoder (pyjpegls), encapsulated and saved as explicit VR little endian.
* JPEG XL: the same file with one libjxl lossless effort-7 codestream per frame (the ``llic
  bench`` ``jxl_e7`` settings) under JPEG XL Lossless (1.2.840.10008.1.2.4.110). pydicom 3.0.2
  cannot write that transfer syntax, so the file is written under the JPEG-LS UID and the
  size corrected for the longer UID.

Instances with compressed pixel data (or none) count at their original size for JPEG-LS and
JPEG XL. Writes the table between the ``dicom-archive`` markers of docs/benchmarks.md and the
numbers to benchmarks/results/dicom-archive.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pydicom
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder, iter_pixels
from pydicom.uid import UID, JPEGLSLossless
from pydicom.valuerep import VR

import llic_imaging
from llic_imaging import batch
from llic_imaging.bench import codecs

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- dicom-archive:begin -->", "<!-- dicom-archive:end -->"
JPEGXL_LOSSLESS = UID("1.2.840.10008.1.2.4.110")
#: Table row of a modality code; anything else is "other".
GROUPS = {"CT": "CT", "MR": "MR", "CR": "CR/DX", "DX": "CR/DX", "US": "US", "NM": "NM", "XA": "XA"}
ROWS = ("CT", "MR", "CR/DX", "US", "NM", "XA", "other")
CODECS = ("llic", "jpegls", "jxl")


@dataclass
class FileResult:
    """One DICOM file: its size, llic's archive status, each codec's bytes and seconds."""

    path: str
    modality: str
    group: str
    original_bytes: int
    status: str
    llic_bytes: int
    llic_s: float
    jpegls_bytes: int = 0
    jpegls_s: float = 0.0
    jxl_bytes: int = 0
    jxl_s: float = 0.0
    note: str | None = None


def modality(relpath: str, ds: pydicom.Dataset, labels: dict[str, str]) -> str:
    """The MANIFEST.tsv modality's first word (``SC (DICOM Modality=CT)`` is SC), else the tag."""
    return labels.get(relpath) or str(ds.get("Modality", "")) or "-"


def encapsulated_bytes(ds: pydicom.Dataset, frames: list[bytes], uid: UID) -> int:
    """Size of ``ds`` saved with ``frames`` as encapsulated Pixel Data under transfer syntax ``uid``."""
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = VR.OB, True
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless  # pydicom writes known syntaxes only
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return len(buf.getvalue()) + _even(len(uid)) - _even(len(JPEGLSLossless))


def classical(ds: pydicom.Dataset, result: FileResult, jxl: codecs.Codec) -> None:
    """Fill in the JPEG-LS and JPEG XL sizes and encode times of one file (changes ``ds``)."""
    result.jpegls_bytes = result.jxl_bytes = result.original_bytes
    if ds.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in ds:
        result.note = "compressed or no pixel data: original size"
        return
    try:
        frames = list(iter_pixels(ds, raw=True))
        t0 = time.perf_counter()
        jls = list(get_encoder(JPEGLSLossless).iter_encode(ds, encoding_plugin="pyjpegls"))
        t1 = time.perf_counter()
        jxls = [jxl.encode(jxl.prepare(f)) for f in frames]
        result.jpegls_s, result.jxl_s = t1 - t0, time.perf_counter() - t1
        result.jpegls_bytes = encapsulated_bytes(ds, jls, JPEGLSLossless)
        result.jxl_bytes = encapsulated_bytes(ds, jxls, JPEGXL_LOSSLESS)
    except Exception as exc:  # one odd file must not end an hour's run; it counts as original
        result.note = f"{type(exc).__name__}: {exc}"


def run(source: Path, limit: int | None) -> dict[str, Any]:
    """Archive the DICOM files of ``source`` with llic, size the JPEG-LS/JXL files, summarise."""
    files = sorted(source.rglob("*.dcm"))[:limit]
    labels = _manifest_modalities(source / "MANIFEST.tsv")
    with tempfile.TemporaryDirectory(prefix="dicom-archive-") as tmp:
        study, archive = Path(tmp, "study"), Path(tmp, "archive")
        for f in files:
            (study / f.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (study / f.relative_to(source)).symlink_to(f.resolve())
        t0 = time.perf_counter()
        report = batch.compress_tree(study, archive, numthreads=1, progress=_progress)
        llic_s = time.perf_counter() - t0
        archive_bytes = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())
        models = sorted({e.get("model") for e in _manifest(archive) if e.get("model")})
    jxl = codecs.resolve(("jxl_e7",), 1)[0]
    results = []
    for fr in report.files:
        ds = pydicom.dcmread(source / fr.path)
        mod = modality(fr.path, ds, labels)
        llic_bytes = fr.original_bytes if fr.failed else fr.archived_bytes
        r = FileResult(
            fr.path,
            mod,
            GROUPS.get(mod, "other"),
            fr.original_bytes,
            fr.status,
            llic_bytes,
            fr.seconds,
        )
        classical(ds, r, jxl)
        results.append(r)
        print(
            f"{r.path}: jpegls {r.jpegls_bytes} B, jxl {r.jxl_bytes} B {r.note or ''}", flush=True
        )
    failed = [r for r in results if r.status == "failed"]
    llic_total = archive_bytes + sum(r.original_bytes for r in failed)
    total = _sums(results) | {"llic_bytes": llic_total, "llic_s": llic_s}
    return {
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "source": os.path.relpath(source, REPO),
        "limit": limit,
        "settings": {
            "llic": f"llic-dicom compress --threads 1, llic_imaging {llic_imaging.__version__}, "
            f"models {', '.join(models) or '-'}",
            "jpegls": f"JPEG-LS Lossless, pydicom {pydicom.__version__} + pyjpegls "
            f"{metadata.version('pyjpegls')}",
            "jxl": f"JPEG XL {jxl.settings}",
        },
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "failed": [r.path for r in failed],
        "groups": {g: _sums([r for r in results if r.group == g]) for g in ROWS},
        "total": total,
        "files": [asdict(r) for r in results],
    }


def markdown(res: dict[str, Any]) -> str:
    """The generated section, markers included."""
    limited = f" (first {res['limit']} only: `--limit {res['limit']}`)" if res["limit"] else ""
    lines = [
        BEGIN,
        "<!-- Generated by benchmarks/dicom_archive.py; edits here are overwritten. -->",
        "",
        f"Run {res['created']}: {res['total']['files']} DICOM files of `{res['source']}`"
        f"{limited}; {len(res['failed'])} failed in llic-dicom (counted at their original size)."
        f" Machine: {res['machine']}.",
        "",
        *(f"- {name}: {setting}" for name, setting in res["settings"].items()),
        "",
        "| modality | files | original MB | llic MB | llic ratio | JPEG-LS ratio | JPEG XL ratio "
        "| llic s | JPEG-LS s | JPEG XL s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [(g, s) for g, s in res["groups"].items() if s["files"]] + [("total", res["total"])]
    for name, s in rows:
        orig = s["original_bytes"]
        cells = [name, str(s["files"]), f"{orig / 1e6:.2f}", f"{s['llic_bytes'] / 1e6:.2f}"]
        cells += [_ratio(orig, s[f"{c}_bytes"]) for c in CODECS]
        cells += [f"{s[f'{c}_s']:.1f}" for c in CODECS]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"`{f['path']}`: {f['note']}" for f in res["files"] if f["note"]]
    if notes:
        lines += ["", "Counted at their original size for JPEG-LS and JPEG XL: " + "; ".join(notes)]
    return "\n".join([*lines, "", END])


def splice(text: str, section: str) -> str:
    """``text`` with its marked section replaced by ``section``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        msg = f"no {BEGIN} ... {END} section"
        raise ValueError(msg)
    return text[:start] + section + text[end + len(END) :]


def write(res: dict[str, Any], md_path: Path, json_path: Path) -> None:
    """Replace the marked section of ``md_path`` and write the JSON."""
    md_path.write_text(splice(md_path.read_text(), markdown(res)))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(res, indent=1) + "\n")


def _sums(results: list[FileResult]) -> dict[str, Any]:
    keys = ("original_bytes", *(f"{c}_{k}" for c in CODECS for k in ("bytes", "s")))
    return {"files": len(results)} | {k: sum(getattr(r, k) for r in results) for k in keys}


def _manifest_modalities(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {r["file"]: r["modality"].split()[0] for r in csv.DictReader(fh, delimiter="\t")}


def _ratio(original: int, coded: int) -> str:
    return f"{original / coded:.3f}" if coded else "-"


def _even(n: int) -> int:
    return n + n % 2


def _manifest(archive: Path) -> list[dict[str, Any]]:
    return json.loads((archive / batch.MANIFEST).read_text())["files"]


def _progress(done: int, total: int, fr: batch.FileReport) -> None:
    ratio = fr.original_bytes / fr.archived_bytes if fr.archived_bytes else 0.0
    print(f"[{done}/{total}] {fr.path}: {fr.status} {ratio:.3f} {fr.seconds:.1f} s", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, help="only the first N files (a smoke test)")
    ap.add_argument("--markdown", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/dicom-archive.json")
    args = ap.parse_args(argv)
    splice(args.markdown.read_text(), "")  # fail now, not after the run, if the markers are gone
    warnings.filterwarnings("ignore", module=r"pydicom\.")
    res = run(args.source.resolve(), args.limit)
    write(res, args.markdown, args.json)
    print(markdown(res))


if __name__ == "__main__":
    main()
