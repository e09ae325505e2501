"""Per-pixel backward-adaptive least squares on top of the coder's choices (session 16).

    python benchmarks/local_lsq_oracle.py [--tiles 6] [--json FILE] [GROUP ...]

The strongest classical lossless coders (MRP, TMW, Glicbawls) refit a linear predictor for
every pixel on its already-coded neighbourhood; llic's linear chunks fit one per tile and send
it. This oracle asks whether per-pixel refits would still pay on top of what the encoder codes
(format 7: network, linear or feedback chunk, value map; flat flags' hits left out): for every
pixel, weighted ridge least squares over the causal positions within radius 6 of the knight
order (weights ``1 / (1 + decay * distance**2)``), fitted to their errors against their own
means from their radius-2 causal neighbours' values (as the linear chunks' value taps), and the
fitted correction, scaled by the best of 1/4, 1/2 or 1, added to the pixel's mean, the scale
up to 3 levels tighter, with ridge 0.01, 0.1 or 1: the best of those 36 variants per tile
(free side information).
Float, neither exact nor fast: a lever that does not pay here does not pay in the codec.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numba
import numpy as np
from _coded_tiles import coded, sampled

from llic_imaging import corpus
from llic_imaging.codec import focus, intcdf
from llic_imaging.model import zoo

GROUPS = ("CT", "MR", "other medical", "satellite 16-bit")
RIDGES = (0.01, 0.1, 1.0)  # ridge, in units of the mean diagonal of the normal equations
DECAY = 0.1


def _causal(radius: int) -> np.ndarray:
    return np.array(
        [
            (dr, dc)
            for dr in range(-radius, 1)
            for dc in range(-radius, radius + 1)
            if dc + 2 * dr < 0
        ]
    )


FEATURES, TRAINING = _causal(2), _causal(6)


@numba.njit
def _tap(v, inside, k, r, c, dr, dc, centre):
    rr, cc = r + dr, c + dc
    if rr < 0 or cc < 0 or cc >= v.shape[2] or not inside[k, rr, cc]:
        return 0.0
    return v[k, rr, cc] - centre


@numba.njit
def _corrections(v, mu, inside, features, training, ridge, decay):
    """Each pixel's least-squares correction of its mean (px), from its causal neighbourhood."""
    n, p, _ = v.shape
    f = features.shape[0]
    out = np.zeros((n, p, p))
    a, b, g = np.empty((f, f)), np.empty(f), np.empty(f)
    for k in range(n):
        for r in range(p):
            for c in range(p):
                if not inside[k, r, c]:
                    continue
                a[:] = 0.0
                b[:] = 0.0
                samples = 0
                for t in range(training.shape[0]):
                    rr, cc = r + training[t, 0], c + training[t, 1]
                    if rr < 0 or cc < 0 or cc >= p or not inside[k, rr, cc]:
                        continue
                    weight = 1.0 / (1.0 + decay * (training[t, 0] ** 2 + training[t, 1] ** 2))
                    for j in range(f):
                        g[j] = _tap(
                            v, inside, k, rr, cc, features[j, 0], features[j, 1], mu[k, rr, cc]
                        )
                    y = v[k, rr, cc] - mu[k, rr, cc]
                    for i in range(f):
                        b[i] += weight * g[i] * y
                        for j in range(f):
                            a[i, j] += weight * g[i] * g[j]
                    samples += 1
                if samples < f:
                    continue
                lift = ridge * (np.trace(a) / f + 1.0)
                for i in range(f):
                    a[i, i] += lift
                w = np.linalg.solve(a, b)
                for j in range(f):
                    out[k, r, c] += w[j] * _tap(
                        v, inside, k, r, c, features[j, 0], features[j, 1], mu[k, r, c]
                    )
    return out


def _patches(geo, stream: np.ndarray) -> np.ndarray:
    out = np.zeros(geo.n_patches * geo.patch * geo.patch)
    out[geo.stream_order] = stream
    return out.reshape(geo.n_patches, geo.patch, geo.patch)


def measure(
    plane: np.ndarray, net, count: int, rng: np.random.Generator
) -> tuple[float, float, int]:
    """(coder's bits, oracle's bits, samples) of up to ``count`` sampled full tiles."""
    coder = oracle = 0.0
    n = 0
    for c, live in coded(plane, net, sampled(plane, count, rng)):
        mu, sc, u = c.pred
        vmax, geo = c.params.vmax, c.geo
        own = float(focus.code_lengths(mu, sc, u, vmax)[live].sum())
        inside = geo.inside.reshape(geo.n_patches, geo.patch, geo.patch)
        v, m = _patches(geo, u), _patches(geo, mu / 16.0)
        best = own
        for ridge in RIDGES:
            add = _corrections(v, m, inside, FEATURES, TRAINING, ridge, DECAY)
            add = add.reshape(-1)[geo.stream_order]
            for share in (0.25, 0.5, 1.0):
                mu2 = np.clip(mu + np.round(16 * share * add).astype(np.int64), 0, 16 * vmax)
                for t in range(4):
                    sc2 = np.clip(sc - t, 0, intcdf.N_SCALES - 1)
                    best = min(best, float(focus.code_lengths(mu2, sc2, u, vmax)[live].sum()))
        coder, oracle, n = coder + own, oracle + best, n + int(live.sum())
    return coder, oracle, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", default=list(GROUPS))
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    ap.add_argument("--tiles", type=int, default=6)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    net, _ = zoo.load()
    rng = np.random.default_rng(0)
    rows = []
    for p in corpus.iter_planes(args.source, groups=args.groups):
        if p.constant:
            continue
        coder, oracle, n = measure(np.asarray(p.array), net, args.tiles, rng)
        if not n:
            continue
        rows.append({"group": p.group, "file": p.file.relpath, "plane": p.name, "samples": n,
                     "coder_bits": coder, "oracle_bits": oracle})  # fmt: skip
        print(f"{p.file.relpath}:{p.name} coder {coder / n:.4f} bps, per-pixel least squares "
              f"{100 * (oracle / coder - 1):+.2f} %", flush=True)  # fmt: skip
    groups = {}
    for g in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == g]
        groups[g] = 100 * (
            sum(r["oracle_bits"] for r in mine) / sum(r["coder_bits"] for r in mine) - 1
        )
        print(f"{g}: {groups[g]:+.2f} %")
    if args.json:
        out = {"tiles_per_plane": args.tiles, "groups_pct": groups, "planes": rows}
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
