"""The codec issue's speed target, repeated: llic and JPEG XL on the 512x512 16-bit validation slices.

    python benchmarks/speed_target.py [--source ../shared/data] [--rounds 10] [--threads 2]
        [--model NAME[,NAME...]] [--patch P] [--json FILE]

``llic bench`` times each plane once, so its "512x512 16-bit slices" row is one sample of a
machine whose speed drifts by 15-30 % over an hour. This script repeats that row: each round
encodes and decodes every such slice of the validation split once with llic (``--threads``) and
with JPEG XL effort 7 (one thread), through the same codec definitions as ``llic bench``, and
takes the median over the slices as the bench does. JPEG XL, timed beside llic in every round,
shows how fast the machine was in that round. Several models (``--model a,b``) are timed
interleaved, slice by slice, so they see the same machine. Every round trip is checked bit for
bit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from llic_imaging import corpus
from llic_imaging.bench import codecs, report

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn, *args) -> tuple[object, float]:
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--model", default=None, help="llic model(s), comma-separated (default: automatic choice)"
    )
    ap.add_argument(
        "--patch", type=int, default=None, help="llic patch side (default: the codec's)"
    )
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/speed-target.json")
    args = ap.parse_args()

    planes = [
        p
        for p in corpus.iter_planes(args.source, split="validation")
        if report.is_slice(p.array.shape, p.array.dtype.name)
    ]
    models = args.model.split(",") if args.model else [None]
    run = [
        replace(c, name=f"llic {m}" if len(models) > 1 else "llic")
        for m in models
        for c in codecs.resolve(("llic",), args.threads, m, args.patch)
    ]
    run += codecs.resolve(("jxl_e7",), args.threads)
    llics = [c.name for c in run if c.name.startswith("llic")]
    rounds = []
    for r in range(args.rounds):
        mpix: dict[str, dict[str, list[float]]] = {
            c.name: {"encode": [], "decode": []} for c in run
        }
        for plane in planes:
            for codec in run:
                prepared = codec.prepare(plane.array)
                data, enc = _timed(codec.encode, prepared)
                decoded, dec = _timed(codec.decode, data, prepared)
                if not np.array_equal(decoded, prepared.array):
                    msg = f"{codec.name} round trip of {plane.file.relpath} is not exact"
                    raise SystemExit(msg)
                mpix[codec.name]["encode"].append(plane.samples / 1e6 / enc)
                mpix[codec.name]["decode"].append(plane.samples / 1e6 / dec)
        medians = {c: {k: statistics.median(v) for k, v in d.items()} for c, d in mpix.items()}
        rounds.append({"round": r, "median_mpix_s": medians, "per_slice_mpix_s": mpix})
        line = "  ".join(f"{c} {m['encode']:.2f} / {m['decode']:.2f}" for c, m in medians.items())
        print(f"round {r}: {line} MPix/s (encode / decode, median of the slices)", flush=True)
    summary = {
        name: {
            op: {
                "min": min(v),
                "median": statistics.median(v),
                "max": max(v),
                "rounds_at_least_0.5": sum(x >= 0.5 for x in v),
            }
            for op in ("encode", "decode")
            for v in [[x["median_mpix_s"][name][op] for x in rounds]]
        }
        for name in llics
    }
    result = {
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "slices": [p.file.relpath for p in planes],
        "threads": args.threads,
        "models": args.model or "automatic choice",
        "patch": args.patch or "default",
        "rounds": len(rounds),
        "llic_summary": summary,
        "results": rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    for name, ops in summary.items():
        for op, s in ops.items():
            print(
                f"{name} {op}: min {s['min']:.2f}, median {s['median']:.2f}, max {s['max']:.2f}"
                f" MPix/s; {s['rounds_at_least_0.5']}/{len(rounds)} rounds >= 0.5"
            )


if __name__ == "__main__":
    main()
