"""What more per-tile choices in the chunk header buy: two measured and not built, one built.

    python benchmarks/tile_side_info.py [--source ../shared/data] [--threads 2] [--json FILE]
        [--second-model NAME]   # e.g. with LLIC_MODEL_PATH=runs/candidates

Both would be encoder-side choices signalled in a chunk's header, integer-exact by construction:

* **scale offset**: every pixel's scale level shifted by ``d`` (1/8 octave each, ``d`` in
  -6..6), chosen per tile (or per image) by the encoder. Measured on the validation planes of
  the 9-16 bit groups, as ``llic bench`` takes them, in model bits (the coder's integer tables,
  teacher forced). If the network were miscalibrated on some data, this would pay.
* **linear inter-plane prediction**: a delta chunk codes ``x - clip(((a * ref + 32) >> 6) + b)``
  instead of ``x - ref``, with ``a`` (1/64 steps, 0..255) and ``b`` fitted per tile by least
  squares. Measured on ``plane_context.py``'s stacks (up to 11 consecutive pairs of planes each)
  as the best of intra, delta and linear per tile against the best of intra and delta, which
  is what ``context=K`` shipped until session 11. Bands whose gains differ would pay.
* **model per tile** (with ``--second-model``): each tile of the 9-16 bit groups' planes coded
  by whichever of the default and the second model codes it smaller (one header bit), against
  the default alone. If trained models erred differently, a second model would pay.
* **resid** (built in session 11): the tile coded as itself, its predictions refined by the
  previous plane's prediction error (``engine._best_refinement``, the encoder's own search, taken
  only where it saves 1 % of the tile's bits as the encoder does), on the same pairs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from plane_context import STACKS, load

from llic_imaging import corpus
from llic_imaging.codec import engine, focus, intcdf
from llic_imaging.model import zoo
from llic_imaging.model.runtime import deterministic

GROUPS_16 = ("CT", "MR", "other medical", "satellite 16-bit")
OFFSETS = tuple(range(-6, 7))
PATCH = 64
CPU = torch.device("cpu")


def _predictions(net, jobs: list) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(mu16, scale, u)`` of each job (tile, values, params) in stream order: the tile's
    pixels without the padding of partial patches."""
    out: list = [None] * len(jobs)
    for j, geo, mu, sc, u in engine._predictions(net, jobs, PATCH, CPU):
        pos = geo.stream_order
        out[j] = (mu[pos], sc[pos], u[pos])
    return out


def _bits(net, jobs: list, offsets: tuple[int, ...] = (0,)) -> np.ndarray:
    """Model bits of each job, one column per scale offset."""
    out = np.zeros((len(jobs), len(offsets)))
    for j, (mu, sc, u) in enumerate(_predictions(net, jobs)):
        for k, d in enumerate(offsets):
            level = np.clip(sc + d, 0, intcdf.N_SCALES - 1)
            out[j, k] = focus.code_lengths(mu, level, u, jobs[j][2].vmax).sum()
    return out


def _planes(source: Path, group: str):
    """The validation planes of ``group`` that ``llic bench`` counts (non-constant)."""
    return (p for p in corpus.iter_planes(source, groups=[group]) if not p.constant)


def scale_offsets(net, source: Path) -> dict:
    """Mean bps per group: as trained, best offset per image, best offset per tile."""
    rows = {}
    for group in GROUPS_16:
        base, image, tile = [], [], []
        for p in _planes(source, group):
            stack = p.array[None]
            refs = engine.tile_grid(stack.shape, 256)
            tiles, params, coded = engine._side_info(stack, refs)
            bits = _bits(net, [(refs[i], tiles[i], params[i]) for i in coded], OFFSETS)
            n = p.array.size
            base.append(bits[:, OFFSETS.index(0)].sum() / n)
            image.append(bits.sum(0).min() / n)
            tile.append(bits.min(1).sum() / n)
        rows[group] = {
            "as trained": round(float(np.mean(base)), 4),
            "best offset per image": round(float(np.mean(image)), 4),
            "best offset per tile": round(float(np.mean(tile)), 4),
        }
        print(group, rows[group], flush=True)
    return rows


def model_per_tile(net, second, source: Path) -> dict:
    """Mean bps per group: each model alone, and the cheaper of the two per tile."""
    rows = {}
    for group in GROUPS_16:
        sums, k = np.zeros(3), 0
        for p in _planes(source, group):
            stack = p.array[None]
            refs = engine.tile_grid(stack.shape, 256)
            bits = [
                [float(b.sum()) for _, b in engine._tile_bits(n, stack, refs, PATCH, CPU)]
                for n in (net, second)
            ]
            a, b = np.array(bits)
            sums += np.array([a.sum(), b.sum(), np.minimum(a, b).sum()]) / p.array.size
            k += 1
        first, other, best = (round(float(v / k), 4) for v in sums)
        rows[group] = {"default": first, "second": other, "cheaper per tile": best}
        print(group, rows[group], flush=True)
    return rows


def _linear(x: np.ndarray, ref: np.ndarray, lim: np.iinfo) -> np.ndarray:
    """``x`` minus its per-tile least-squares prediction from ``ref`` (a in 1/64 steps)."""
    if ref.std() == 0:
        return x - ref
    a = np.linalg.lstsq(np.stack([ref.ravel(), np.ones(ref.size)], 1), x.ravel(), rcond=None)[0][0]
    a64 = int(np.clip(round(a * 64), 0, 255))
    scaled = (a64 * ref + 32) >> 6
    return x - np.clip(scaled + round(float(np.mean(x - scaled))), lim.min, lim.max)


def linear_prediction(net, source: Path) -> dict:
    """Bits of the best of intra and delta, and with linear or resid tiles as a third choice."""
    rows = {}
    for name, files in STACKS.items():
        stack = load(source, files)
        lim = np.iinfo(stack.dtype)
        starts = np.unique(
            np.linspace(0, stack.shape[0] - 2, min(11, stack.shape[0] - 1)).astype(int)
        )
        jobs, options = [], []
        for k in starts:
            for r in engine.tile_grid((1, *stack.shape[1:]), 256):
                window = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
                x = stack[k + 1][window].astype(np.int64)
                ref = stack[k][window].astype(np.int64)
                cands = {"intra": x, "delta": x - ref, "linear": _linear(x, ref, lim), "ref": ref}
                option = {}
                for kind, values in cands.items():
                    p = engine.chunk_params(values, delta=kind in ("delta", "linear"))
                    option[kind] = len(jobs) if p.coded else None
                    if p.coded:
                        jobs.append((r, values, p))
                options.append(option)
        preds = _predictions(net, jobs)
        bits = [
            float(focus.code_lengths(*pr, job[2].vmax).sum())
            for pr, job in zip(preds, jobs, strict=True)
        ]
        cost = []
        for o in options:
            c = {k: 0.0 if j is None else bits[j] for k, j in o.items() if k != "ref"}
            c["resid"] = c["intra"]
            if o["intra"] is not None and o["ref"] is not None:
                mu, _, u = preds[o["ref"]]
                p = jobs[o["intra"]][2]
                option = [(replace(p, kind=p.kind | engine._RESID), 16 * u - mu)]
                resid = engine._best_refinement(preds[o["intra"]], option)[0]
                if resid < (1 - engine._RESID_MARGIN) * c["intra"]:
                    c["resid"] = resid
            cost.append(c)
        intra = sum(c["intra"] for c in cost)
        two = sum(min(c["intra"], c["delta"]) for c in cost)
        three = sum(min(c["intra"], c["delta"], c["linear"]) for c in cost)
        resid = sum(min(c["intra"], c["delta"], c["resid"]) for c in cost)
        rows[name] = {
            "pairs": len(starts),
            "intra kB": round(float(intra) / 8e3, 1),
            "intra or delta / intra": round(float(two / intra), 4),
            "intra, delta or linear / intra": round(float(three / intra), 4),
            "linear's gain": f"{(three / two - 1) * 100:+.2f} %",
            "intra, delta or resid / intra": round(float(resid / intra), 4),
            "resid's gain": f"{(resid / two - 1) * 100:+.2f} %",
        }
        print(name, rows[name], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=corpus.default_root())
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--second-model", help="also measure a per-tile choice against this model")
    ap.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "tile-side-info.json"
    )
    args = ap.parse_args()
    with deterministic(args.threads):
        net = zoo.load(zoo.DEFAULT_MODEL)[0]
        result = {
            "model": zoo.DEFAULT_MODEL,
            "patch": PATCH,
            "scale offset (mean bps)": scale_offsets(net, args.source),
            "inter-plane choices": linear_prediction(net, args.source),
        }
        if args.second_model:
            second = zoo.load(args.second_model)[0]
            result[f"model per tile: {zoo.DEFAULT_MODEL} or {args.second_model}"] = model_per_tile(
                net, second, args.source
            )
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
