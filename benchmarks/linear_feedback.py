"""What least squares over a tile's causal neighbours buys before it was built (session 14).

    python benchmarks/linear_feedback.py [--source ../shared/data] [--json FILE]

Model bits (the coder's integer tables, teacher forced; the default model, patch 64) of the
9-16 bit validation planes as ``llic bench`` takes them, per group, for:

* **the codec as it was**: each tile as itself or as a feedback chunk, whichever is smaller;
* **errors only**: least squares on the network's errors at the 22 causal positions within
  radius 3, per tile, against the network alone (what feedback chunks generalise);
* **values**: least squares on the neighbours' values (``16 x value - mu16``), the tap sets
  of ``codec.linear`` (radius 2; radius 3 and the four errors; radius 5 and the four
  errors), each tile taking the best of it and the codec's option; the weights' varint bytes
  and 2 more charged. These fits are the first ones tried: an L2 solve and three L1
  reweightings on every 4th position, not the scale-weighted fit the codec ships
  (``docs/benchmarks.md``, "Linear feedback", compares the two).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tile_side_info import GROUPS_16, _planes

from llic_imaging.codec import engine, focus, intcdf, linear
from llic_imaging.model import zoo

CPU = torch.device("cpu")
PATCH = 64
TIGHTEN = (0, 1, 2, 3, 4, 5, 6, 8)


def _varint_bytes(w: np.ndarray) -> int:
    z = np.where(w >= 0, 2 * w, -2 * w - 1)
    return int(np.sum(1 + (z >= 128) + (z >= 16384)))


def _l1_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Integer weights (1/256) of an L2 solve and three L1 reweightings."""
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    for _ in range(3):
        r = np.abs(y - x @ w)
        s = 1 / np.sqrt(np.maximum(r, np.median(r) * 0.5 + 1))
        w = np.linalg.lstsq(x * s[:, None], y * s, rcond=None)[0]
    return np.clip(np.round(w * 256), -linear.MAX_WEIGHT, linear.MAX_WEIGHT).astype(np.int64)


def _bits(m, s, u, vmax, add) -> float:
    """Bits of the refined means at the best tighten."""
    mu = np.clip(m + add, 0, 16 * vmax)
    return min(
        float(focus.code_lengths(mu, np.clip(s - t, 0, intcdf.N_SCALES - 1), u, vmax).sum())
        for t in TIGHTEN
    )


def _gather(a: np.ndarray, geo, at, dr: int, dc: int) -> np.ndarray:
    """``a`` (patch layout, flat) at offset ``(dr, dc)`` of the positions ``at``; 0 beyond the
    patch or the tile, as the codec's taps."""
    k, r, c = at
    rr, cc = r + dr, c + dc
    ok = (rr >= 0) & (cc >= 0) & (cc < geo.patch)
    rr, cc = np.clip(rr, 0, geo.patch - 1), np.clip(cc, 0, geo.patch - 1)
    a = a.reshape(geo.n_patches, geo.patch, geo.patch)
    return np.where(ok & geo.inside[k, rr, cc], a[k, rr, cc], 0)


def measure(net, source: Path) -> dict:
    names = ["network", "codec (session 13)", "errors only"]
    names += ["radius 2", "radius 3 + errors", "radius 5 + errors"]
    within3 = [
        (int(dr), int(dc))
        for dr, dc, e in zip(linear._DR, linear._DC, linear._IS_ERROR, strict=True)
        if not e and -dr <= 3 and abs(dc) <= 3
    ]
    rows = {}
    for group in GROUPS_16:
        per_plane = []
        for p in _planes(source, group):
            stack = p.array[None]
            refs = engine.tile_grid(stack.shape, 256)
            tiles, params, coded = engine._side_info(stack, refs)
            jobs = [(refs[i], tiles[i], params[i]) for i in coded]
            tot = np.zeros(len(names))
            for j, geo, mu, sc, u in engine._predictions(net, jobs, PATCH, CPU):
                q = jobs[j][2]
                pos = geo.stream_order
                at = engine._stream_positions(geo)
                m, s, v = mu[pos], sc[pos], u[pos]
                y = (16 * v - m).astype(np.float64)
                own = float(focus.code_lengths(m, s, v, q.vmax).sum())
                codec = min(own, engine._feedback_option(geo, (mu, sc, u), q, own)[0])
                err = 16 * u - mu
                x = np.stack([_gather(err, geo, at, dr, dc) for dr, dc in within3], 1)
                w = np.round(np.linalg.lstsq(x.astype(np.float64), y, rcond=None)[0] * 64) / 64
                add = np.floor(x @ w + 0.5).astype(np.int64)
                row = [own, codec, min(own, _bits(m, s, v, q.vmax, add))]
                for taps in linear.SETS:
                    x = np.stack(
                        [
                            _gather(err, geo, at, linear._DR[t], linear._DC[t])
                            if linear._IS_ERROR[t]
                            else (_gather(16 * u, geo, at, linear._DR[t], linear._DC[t]) - m)
                            * (_gather(np.ones_like(u), geo, at, linear._DR[t], linear._DC[t]))
                            for t in taps
                        ],
                        1,
                    )
                    w = _l1_fit(x[::4].astype(np.float64), y[::4])
                    add = (x @ w + 128) >> 8
                    row.append(min(codec, _bits(m, s, v, q.vmax, add) + 8 * (_varint_bytes(w) + 2)))
                tot += row
            per_plane.append(tot / p.array.size)
        mean = np.mean(per_plane, 0)
        rows[group] = dict(zip(names, np.round(mean, 4).tolist(), strict=True))
        print(group, rows[group], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    net = zoo.load(zoo.DEFAULT_MODEL)[0]
    rows = measure(net, args.source)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
