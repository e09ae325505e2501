"""Measure Adaptive Focus Coding against the full-alphabet ideal on the validation split.

    python benchmarks/focus_overhead.py [--max-planes N]

For every plane: the ideal code length of the same integer-parameterised logistic over the
whole alphabet (float64), the focus tables' code length, and the real range-coded payload.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "codec"))
from _reference import ideal_bits  # noqa: E402

import llic_imaging  # noqa: E402
from llic_imaging import corpus  # noqa: E402
from llic_imaging.codec import engine, focus  # noqa: E402
from llic_imaging.model import zoo  # noqa: E402
from llic_imaging.model.runtime import deterministic  # noqa: E402


def measure(plane: np.ndarray, net) -> tuple[float, float, float, int]:
    stack = plane[None].astype(np.int64)
    refs = engine.tile_grid(stack.shape, 256)
    ideal = coded = 0.0
    with deterministic():
        for r in refs:
            tile = stack[0, r.y : r.y + r.h, r.x : r.x + r.w]
            p = engine.chunk_params(tile)
            if p.kind == 0:
                continue
            geo = engine.Geometry(r.h, r.w, 32)
            mu, sc, u = engine._dense(net, geo, [tile], [p], torch.device("cpu"))
            inside = geo.inside.reshape(-1)
            ideal += ideal_bits(mu[0][inside], sc[0][inside], u[0][inside], p.vmax).sum()
            coded += focus.code_lengths(mu[0][inside], sc[0][inside], u[0][inside], p.vmax).sum()
    payload = len(llic_imaging.encode(plane)) * 8
    return ideal, coded, payload, plane.size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-planes", type=int, default=4)
    args = ap.parse_args()
    net, _ = zoo.load()
    rows = []
    for p in corpus.iter_planes(split="validation", max_planes_per_file=args.max_planes):
        if p.constant:
            continue
        ideal, coded, payload, n = measure(np.asarray(p.array), net)
        rows.append(
            {
                "file": p.file.relpath,
                "plane": p.name,
                "group": p.group,
                "samples": n,
                "ideal_bps": ideal / n,
                "focus_bps": coded / n,
                "stream_bps": payload / n,
            }
        )
        r = rows[-1]
        print(
            f"{r['file']}:{r['plane']}  ideal {r['ideal_bps']:.4f}  focus {r['focus_bps']:.4f} "
            f"({100 * (coded / ideal - 1):+.3f}%)  stream {r['stream_bps']:.4f}",
            flush=True,
        )
    tot = {
        k: sum(r[k] * r["samples"] for r in rows) for k in ("ideal_bps", "focus_bps", "stream_bps")
    }
    print(
        json.dumps(
            {
                "planes": len(rows),
                "focus_over_ideal_pct": 100 * (tot["focus_bps"] / tot["ideal_bps"] - 1),
                "stream_over_ideal_pct": 100 * (tot["stream_bps"] / tot["ideal_bps"] - 1),
            }
        )
    )


if __name__ == "__main__":
    main()
