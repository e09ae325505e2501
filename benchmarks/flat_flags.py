"""What flat flags buy, and which neighbourhood they should ask about (session 15).

    python benchmarks/flat_flags.py [--source ../shared/data] [--json FILE] [GROUP ...]

Model bits (the coder's integer tables, teacher forced, patch 64; the model ``llic bench``
picks for the group) of the validation planes as ``llic bench`` takes them, per group, against
the codec's format-6 choice for each tile (what ``encode`` would code without flags). Each
variant adds, per tile, a flag wherever its neighbourhood rule holds, with the codec's
probability (Krichevsky-Trofimov over earlier steps, 1/4096), and is kept on a tile where it
saves 16 bits:

* **four neighbours** (W, N, NW, NE agree: what ``codec.flat`` ships);
* **NE beyond the patch allowed**: as four, but NE may be missing at the patch's right edge;
* **W and N**; **W, N and NW**;
* **four, buckets**: four neighbours, the flags' counts kept apart by the network's own code
  length for the neighbours' value (< 0.1, < 1, < 4, more bits);
* **four, exclusion**: four neighbours, and after a miss the neighbours' value taken out of
  the network's distribution (its probability renormalised away).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from llic_imaging import corpus
from llic_imaging.codec import engine, flat, focus
from llic_imaging.model import zoo

CPU = torch.device("cpu")
GROUPS = (
    "satellite 16-bit",
    "other medical",
    "other medical (8-bit sources)",
    "CT (8-bit sources)",
    "MR (8-bit sources)",
)
NAMES = (
    "four neighbours",
    "NE beyond the patch allowed",
    "W and N",
    "W, N and NW",
    "four, buckets",
    "four, exclusion",
)
MARGIN = 16


def _kt_bits(equal: np.ndarray, step: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Each flag's code length under per-context KT counts over earlier steps (1/4096)."""
    out = np.zeros(equal.size)
    for c in np.unique(context):
        m = context == c
        e, s = equal[m], step[m]
        seen = np.searchsorted(s, s, side="left")
        before = np.concatenate([[0], np.cumsum(e)])[seen]
        p = flat._probability(before, seen) / (1 << flat.PRECISION)  # the codec's estimate
        out[m] = -np.log2(np.where(e == 1, p, 1 - p))
    return out


def _tile(choice) -> tuple[float, list[float]]:
    """A tile's bits without flags, and with each variant's (the smaller of the two)."""
    geo, (mu, sc, u), vmax = choice.geo, choice.pred, choice.params.vmax
    bits = focus.code_lengths(mu, sc, u, vmax)
    k, r, c = engine._stream_positions(geo)
    step = np.repeat(np.arange(len(geo.step_sizes)), geo.step_sizes)
    coded = np.zeros(geo.n_patches * geo.patch * geo.patch, np.int64)
    coded[geo.stream_order] = u
    values = geo.framed(coded)
    four, w = flat.candidates(values, (k, r, c))
    n, nw, ne = values[k, r, c + 1], values[k, r, c], values[k, r, c + 2]
    rules = (
        four,
        (w >= 0) & (w == n) & (w == nw) & ((w == ne) | (ne < 0)),
        (w >= 0) & (w == n),
        (w >= 0) & (w == n) & (w == nw),
        four,
        four,
    )
    own = float(bits.sum())
    out = []
    for name, ok in zip(NAMES, rules, strict=True):
        idx = np.flatnonzero(ok)
        equal = (u[idx] == w[idx]).astype(np.int64)
        context = np.zeros(idx.size, np.int64)
        if name == "four, buckets":
            context = np.digitize(focus.code_lengths(mu[idx], sc[idx], w[idx], vmax), [0.1, 1, 4])
        total = own - bits[idx[equal == 1]].sum() + _kt_bits(equal, step[idx], context).sum()
        if name == "four, exclusion":
            miss = idx[equal == 0]
            p = 2.0 ** -focus.code_lengths(mu[miss], sc[miss], w[miss], vmax)
            total += np.log2(np.maximum(1 - p, 1e-9)).sum()
        out.append(min(own, total + MARGIN))
    return own, out


def measure(source: Path, groups: tuple[str, ...]) -> dict:
    nets: dict = {}
    rows = {}
    for group in groups:
        per_plane = []
        for p in corpus.iter_planes(source, groups=[group]):
            if p.constant:
                continue
            eight = p.array.dtype.itemsize == 1 and "satellite" not in group
            name = "hpac-small-v5-med8" if eight else zoo.DEFAULT_MODEL
            if name not in nets:
                nets[name] = copy.deepcopy(zoo.load(name)[0])
            stack = p.array[None]
            refs = engine.tile_grid(stack.shape, 256)
            patch = 128 if p.array.dtype.itemsize == 1 else 64
            _, decisions = engine._choices(
                nets[name], stack, refs, patch=patch, device=CPU, context=1
            )
            tot = np.zeros(1 + len(NAMES))
            for _, choices in decisions:
                own, variants = _tile(choices[engine.LINEAR_FORMAT])
                tot += [own, *variants]
            per_plane.append(tot / p.array.size)
        mean = np.mean(per_plane, 0)
        rows[group] = {"codec (format 6)": round(float(mean[0]), 4)} | {
            n: f"{100 * (m / mean[0] - 1):+.2f} %" for n, m in zip(NAMES, mean[1:], strict=True)
        }
        print(group, rows[group], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("groups", nargs="*", default=list(GROUPS))
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = measure(args.source, tuple(args.groups))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
