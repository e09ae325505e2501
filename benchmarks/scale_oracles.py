"""What the coder's distribution leaves on the 16-bit groups: shape and intensity (session 16).

    python benchmarks/scale_oracles.py [--plain] [--source ../shared/data] [--tiles 24] [--json FILE] [GROUP ...]

Oracles that take side information as free (or nearly), so a lever that does not pay here
cannot pay in the codec. Pixels: up to ``--tiles`` full 256 x 256 tiles per plane (a fixed
random pick) of the validation split, coded as the encoder codes them in format 7 (chunk
options, value maps, linear feedback; flat flags' hits left out), or with ``--plain`` as the
shipped default network predicts them alone (patch 64). Every column is in % of the bits of
those predictions as they are (``network``); the shape columns compare with ``shape logistic``
(float code lengths, not the integer tables).

* **Shape** (float64 code lengths over the whole alphabet, tails folded at the range, as
  ``tests/codec/_reference.py``): the logistic and a Gaussian or generalised Gaussian
  (exponent 1.2, 1.5, 2.5) with its best scale multiplier per tile (1/8-octave steps over +-1
  octave), and the best shape per tile.
* **Intensity** (the coder's integer tables, scale levels moved, header bytes counted): the
  network is blind to absolute intensity by design (it sees neighbour differences from its MED
  anchor), while X-ray and satellite detector noise grows with the signal. The best scale
  offset per tile (1 byte), and per tile and bucket of the predicted value: 8 equal parts of
  the tile's range (9 bytes) or 8 quantiles (the 7 edges sent too, 23 bytes).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _coded_tiles import CPU, coded, sampled
from scipy.special import gammainc, ndtr

from llic_imaging import corpus
from llic_imaging.codec import engine, focus, intcdf
from llic_imaging.codec.schedule import Geometry
from llic_imaging.model import zoo
from llic_imaging.model.runtime import deterministic

GROUPS = ("CT", "MR", "other medical", "satellite 16-bit")
OFFSETS = np.arange(-8, 9)  # scale multipliers 2**(d/8), scale levels taken off
BUCKETS = 8


def _generalised(beta: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: 0.5 + 0.5 * np.sign(z) * gammainc(1.0 / beta, np.abs(z) ** beta)


# CDF of a unit shape, and the factor that brings the logistic's scale near its best width.
SHAPES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "logistic": (lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)), 1.0),
    "gaussian": (ndtr, 1.8),
    "gg1.2": (_generalised(1.2), 1.3),
    "gg1.5": (_generalised(1.5), 1.6),
    "gg2.5": (_generalised(2.5), 2.0),
}


def _bits(cdf, mu: np.ndarray, s: np.ndarray, v: np.ndarray, vmax: int) -> np.ndarray:
    hi = np.where(v >= vmax, 1.0, cdf((v + 0.5 - mu) / s))
    lo = np.where(v <= 0, 0.0, cdf((v - 0.5 - mu) / s))
    return -np.log2(np.maximum(hi - lo, 1e-300))


def _tiles(plane: np.ndarray, net, count: int, rng: np.random.Generator, plain: bool):
    """(mu16, scale level, coded symbol, vmax, position coded by the distribution) of each
    coded tile of up to ``count`` sampled full tiles: the codec's format-7 choice (chunk
    options, flat flags) or, with ``plain``, the network's teacher-forced prediction alone."""
    refs = sampled(plane, count, rng)
    if not plain:
        for c, live in coded(plane, net, refs):
            yield (*c.pred, c.params.vmax, live)
        return
    geo = Geometry(256, 256, 64)
    inside = geo.inside.reshape(-1)
    with deterministic():
        for r in refs:
            tile = plane[r.y : r.y + r.h, r.x : r.x + r.w].astype(np.int64)
            p = engine.chunk_params(tile)
            if p.coded:
                mu, sc, u = (a[0][inside] for a in engine._dense(net, geo, [tile], [p], CPU))
                yield mu, sc, u, p.vmax, np.ones(u.size, bool)


def _offset_bits(table: np.ndarray, bucket: np.ndarray, k: int) -> float:
    """Bits with the best offset (row of ``table``) for each of ``k`` buckets."""
    return float(sum(table[:, bucket == b].sum(1).min() for b in range(k)))


def measure(plane: np.ndarray, net, count: int, rng, plain: bool) -> dict[str, float]:
    """Bits per sample of the plane's sampled tiles under each oracle (``network``: as coded)."""
    totals: dict[str, float] = defaultdict(float)
    n = 0
    for mu16, sc, u, vmax, live in _tiles(plane, net, count, rng, plain):
        mu16, sc, u = mu16[live], sc[live], u[live]
        mu, s, v = mu16 / 16.0, np.exp2(sc / 8.0 - 4.0), u.astype(np.float64)
        per_shape = {}
        for name, (cdf, factor) in SHAPES.items():
            per_shape[name] = min(
                _bits(cdf, mu, s * factor * 2.0 ** (d / 8), v, vmax).sum() for d in OFFSETS
            )
            totals[f"shape {name}"] += per_shape[name]
        totals["shape: best per tile"] += min(per_shape.values())
        # the coder's own integer tables, the scale levels moved; side information counted
        table = np.stack(
            [
                focus.code_lengths(mu16, np.clip(sc - d, 0, intcdf.N_SCALES - 1), u, vmax)
                for d in OFFSETS
            ]
        )
        plain_bits = float(table[OFFSETS == 0].sum())
        totals["network"] += plain_bits
        equal = np.minimum(mu16 * BUCKETS // (16 * vmax + 16), BUCKETS - 1)
        quantile = np.searchsorted(np.quantile(mu16, np.linspace(0, 1, BUCKETS + 1)[1:-1]), mu16)
        for name, bucket, k, header in (
            ("offset per tile", np.zeros(u.size, int), 1, 8),
            ("offsets per tile, equal buckets", equal, BUCKETS, 8 * (1 + BUCKETS)),
            ("offsets per tile, quantile buckets", quantile, BUCKETS, 8 * (3 * BUCKETS - 1)),
        ):
            totals[name] += min(plain_bits, _offset_bits(table, bucket, k) + header)
        n += u.size
    return {"samples": n, **{k: v / n for k, v in totals.items()}} if n else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", default=list(GROUPS))
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    ap.add_argument("--tiles", type=int, default=24)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plain", action="store_true", help="the network alone, no chunk options")
    args = ap.parse_args()
    net, _ = zoo.load()
    rng = np.random.default_rng(0)
    rows = []
    for p in corpus.iter_planes(args.source, groups=args.groups):
        if p.constant:
            continue
        r = measure(np.asarray(p.array), net, args.tiles, rng, args.plain)
        if not r:
            continue
        rows.append({"group": p.group, "file": p.file.relpath, "plane": p.name, **r})
        print(
            f"{p.file.relpath}:{p.name} network {r['network']:.4f} bps; "
            + ", ".join(
                f"{k} {100 * (v / r['network'] - 1):+.2f}%"
                for k, v in r.items()
                if k not in ("samples", "network")
            ),
            flush=True,
        )
    groups = {}
    for g in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == g]
        base = sum(r["network"] * r["samples"] for r in mine)
        keys = [k for k in mine[0] if k not in ("group", "file", "plane", "samples", "network")]
        groups[g] = {k: 100 * (sum(r[k] * r["samples"] for r in mine) / base - 1) for k in keys}
        print(g, json.dumps({k: round(v, 2) for k, v in groups[g].items()}))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tiles_per_plane": args.tiles,
                    "plain": args.plain,
                    "groups_pct": groups,
                    "planes": rows,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
