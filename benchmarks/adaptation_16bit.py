"""Per-image adaptation on the 9-16 bit validation planes, beside the plain bench run.

    python benchmarks/adaptation_16bit.py [--json FILE]  # after llic bench wrote bench-validation.json

A shorter stand-in for ``llic bench -c llic_adapt`` (every group, about 45 minutes): each
plane coded with ``encode(adapt=True)``, checked bit-exact, its bits per sample set beside the
plain stream's and JPEG XL's from the bench JSON (default ``--json``:
``benchmarks/results/adapt-linear-16bit.json``, session 14's run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import llic_imaging
from llic_imaging import corpus

GROUPS = ("CT", "MR", "other medical", "satellite 16-bit")
RESULTS = Path("benchmarks/results")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=RESULTS / "adapt-linear-16bit.json")
    args = ap.parse_args()
    bench = json.loads((RESULTS / "bench-validation.json").read_text())["results"]
    bps = {(r["codec"], r["file"], r["plane"]): r["bps"] for r in bench}
    out = []
    for group in GROUPS:
        for p in corpus.iter_planes(Path("../shared/data"), groups=[group]):
            if p.constant:
                continue
            t = time.perf_counter()
            s = llic_imaging.encode(p.array, adapt=True, numthreads=2)
            seconds = time.perf_counter() - t
            key = (p.file.relpath, p.name)
            out.append(
                {
                    "file": key[0],
                    "plane": key[1],
                    "group": group,
                    "bps": 8 * len(s) / p.array.size,
                    "plain_bps": bps[("llic", *key)],
                    "jxl_bps": bps[("jxl_e7", *key)],
                    "adapted": llic_imaging.info(s).adapted,
                    "exact": bool(np.array_equal(llic_imaging.decode(s, numthreads=2), p.array)),
                    "encode_s": seconds,
                }
            )
            print(out[-1], flush=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    for group in GROUPS:
        rows = [r for r in out if r["group"] == group]
        jxl = np.mean([r["jxl_bps"] for r in rows])
        print(
            group,
            "adapted / JPEG XL",
            round(np.mean([r["bps"] for r in rows]) / jxl, 3),
            "plain / JPEG XL",
            round(np.mean([r["plain_bps"] for r in rows]) / jxl, 3),
        )


if __name__ == "__main__":
    main()
