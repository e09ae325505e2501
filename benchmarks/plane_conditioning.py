"""Learned conditioning on the previous plane, against intra coding and delta tiles, in float.

    python benchmarks/plane_conditioning.py [--init hpac-small-v5] [--steps 2000] [--radius 2]

The codec's context across planes (``encode(context=K)``, docs/design.md) codes a tile as its
difference to the previous plane's when that is cheaper; the network itself sees one plane.
This measures what the issue's "condition each slice or band on the previous one" would add if
the network saw the previous plane too, before building integer kernels and a chunk kind for it.

Both arms start from the same trained model and are fine-tuned identically (its last-stage
config: seed, batch, crop, lr schedule, codec-aware loss) on the same crops of consecutive plane
pairs from the train split's stacks (multi-plane files, and the files of one series stacked in
name order: Landsat bands, slice files):

* control: the network as it is (the previous plane unused);
* conditioned: the same network plus a 1x1 layer from the previous plane's window at the coded
  position (5 x 5 by default, ``--radius``; differences to its centre, scaled by the tile's
  input shift, fine and coarse, as the network's own inputs) and the difference of that centre
  to the coded pixel's MED anchor, added to the embedding's accumulator. Zero-initialised: it starts as the control.
  All its inputs but the anchor difference depend on the previous plane only, so a codec would
  compute them once per tile, not per step.

Cells: mean bits per sample over planes 1.. of each validation stack (up to ``--pairs`` evenly
spaced planes, each with its predecessor; constant planes skipped), teacher forced on the codec's
256 x 256 tiles at patch 64, as the coder would charge (``train.loss.bits(focus=True)``); "+
delta" takes, per tile, the cheaper of that and the control's bits of the tile's difference to
the previous plane (what ``encode(context=K)`` chooses between). JPEG XL e7 on the same planes is
the reference.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _finetune import finetune
from plane_context import STACKS, load
from torch import nn

from llic_imaging import corpus, formats
from llic_imaging.bench import codecs
from llic_imaging.codec.engine import _tile_params, chunk_params, tile_grid
from llic_imaging.codec.schedule import Geometry
from llic_imaging.model import zoo
from llic_imaging.model.hpac import HpacNet, QLinear, TileParams, difference_inputs
from llic_imaging.train.data import augment
from llic_imaging.train.loop import PATCH, TrainConfig
from llic_imaging.train.loss import bits

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src/llic_imaging/train/configs"


# ---------------------------------------------------------------------------- the variant
def window_values(ref: np.ndarray, geo: Geometry, r: int) -> np.ndarray:
    """(B, H, W) previous planes -> (B * NP, P*P, T): each position's (2r+1)^2 window, edge-
    padded at the tile's border, in the patch layout of ``geo``; the centre comes first."""
    pad = np.pad(ref, ((0, 0), (r, r), (r, r)), mode="edge")
    h, w = ref.shape[1:]
    offs = [(0, 0)] + [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy or dx]
    win = np.stack([pad[:, r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in offs], 1)
    patches = geo.to_patches(win)  # (B, T, NP, P, P)
    b, t, n, p, _ = patches.shape
    return patches.transpose(0, 2, 3, 4, 1).reshape(b * n, p * p, t).astype(np.float32)


def _scaled(d: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Fine and coarse integer inputs of differences ``d`` (NP, P*P, T), as the network's own."""
    return torch.cat(difference_inputs(d, torch.exp2(-shift)[:, None, None]), -1)


class Model(nn.Module):
    """A trained network, conditioned on the previous plane's (2r+1)^2 window unless r = 0."""

    def __init__(self, net: HpacNet, radius: int):
        super().__init__()
        self.net, self.radius = net, radius
        self.ref = None
        if radius:
            self.ref = QLinear(2 * (2 * radius + 1) ** 2, net.config.channels)
            nn.init.zeros_(self.ref.weight)

    def bits(
        self,
        u: torch.Tensor,
        inside: torch.Tensor,
        p: TileParams,
        ref: torch.Tensor,
        present: torch.Tensor,
    ) -> torch.Tensor:
        """Coder's bits per position (NP, P, P); ``ref`` from :func:`window_values`, minus the
        coded tile's vmin (so it is on ``u``'s scale); ``present`` (NP,) 0 where a patch is
        coded without its previous plane (the network alone, as for a group's first plane)."""
        extra = None
        if self.ref is not None:
            around = _scaled(ref[..., 1:] - ref[..., :1], p.shift)
            qw = self.ref.qparams()

            def extra(anchor: torch.Tensor) -> torch.Tensor:
                centre = _scaled(ref[..., :1] - anchor[..., None], p.shift)
                inp = torch.cat([centre, around], -1)
                acc = torch.addmm(qw[1], inp.reshape(-1, inp.shape[-1]), qw[0].t())
                return acc.reshape(*inp.shape[:-1], -1) * present[:, None, None]

        x, anchor = self.net.features(u, inside, p, extra)
        pred = self.net.head_prediction(x, anchor, p)
        return bits(pred.mu16, pred.scale, u, p.vmax.reshape(-1, 1, 1), focus=True)


# ---------------------------------------------------------------------------- training pairs
@dataclass
class Stack:
    planes: np.ndarray  # (N, H, W) stored integers, N >= 2
    group: str


def train_stacks() -> list[Stack]:
    """The train split's stacks: files of one series stacked in name order when their planes
    share a shape (Landsat bands, slice files), else each multi-plane file alone."""
    series: dict[str, list[corpus.CorpusFile]] = defaultdict(list)
    for f in corpus.files():
        if f.split == "train":
            series[corpus.series_key(f.relpath)].append(f)
    out = []
    for fs in series.values():
        fs.sort(key=lambda f: f.relpath)
        per_file = [[np.asarray(a) for _, a in formats.planes(f.path)] for f in fs]
        if len({p.shape for ps in per_file for p in ps}) == 1:
            per_file = [[p for ps in per_file for p in ps]]
        out += [Stack(np.stack(ps), fs[0].group) for ps in per_file if len(ps) >= 2]
    return out


class PairSampler:
    """Aligned crops of a plane and its predecessor, group-balanced, augmented together, with
    side information from a tile-sized window around the crop (as ``train.data.CropSampler``)."""

    def __init__(self, stacks: list[Stack], cfg: TrainConfig, radius: int, absent: float = 0.0):
        self.stacks, self.cfg, self.radius, self.absent = stacks, cfg, radius, absent
        self.rng = np.random.default_rng(cfg.seed)
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(stacks):
            if min(s.planes.shape[1:]) >= cfg.crop:
                by_group[s.group].append(i)
        self.groups = [v for _, v in sorted(by_group.items())]

    def _pair(self) -> tuple[np.ndarray, np.ndarray, object, bool]:
        rng, cfg = self.rng, self.cfg
        g = self.groups[rng.integers(len(self.groups))]
        s = self.stacks[g[rng.integers(len(g))]].planes
        wh, ww = min(cfg.context, s.shape[1]), min(cfg.context, s.shape[2])
        for _ in range(8):
            k = int(rng.integers(1, s.shape[0]))
            y, x = rng.integers(s.shape[1] - wh + 1), rng.integers(s.shape[2] - ww + 1)
            cur = s[k, y : y + wh, x : x + ww].astype(np.int64)
            ref = s[k - 1, y : y + wh, x : x + ww].astype(np.int64)
            if cur.min() != cur.max():
                break
        cur, ref = augment([cur, ref], cfg.augment, rng)
        p = chunk_params(cur)
        y = rng.integers(cur.shape[0] - cfg.crop + 1)
        x = rng.integers(cur.shape[1] - cfg.crop + 1)
        crop = np.s_[y : y + cfg.crop, x : x + cfg.crop]
        present = not self.absent or bool(rng.random() >= self.absent)
        return cur[crop] - p.vmin, ref[crop] - p.vmin, p, present

    def batch(self, size: int) -> tuple[torch.Tensor, ...]:
        """``(u, inside, side information, previous-plane windows, present)`` of ``size``
        pairs; ``present`` is 0 for the fraction ``absent`` of them."""
        pairs = [self._pair() for _ in range(size)]
        geo = Geometry(self.cfg.crop, self.cfg.crop, PATCH)
        u = np.stack([q[0] for q in pairs])
        ut = torch.from_numpy(geo.to_patches(u).reshape(-1, PATCH, PATCH).astype(np.float32))
        inside = torch.from_numpy(np.tile(geo.inside, (size, 1, 1)).astype(np.float32))
        ref = torch.from_numpy(window_values(np.stack([q[1] for q in pairs]), geo, self.radius))
        tp = _tile_params(geo, [q[2] for q in pairs], torch.device("cpu"))
        present = torch.tensor([float(q[3]) for q in pairs]).repeat_interleave(geo.n_patches)
        return ut, inside, tp, ref, present


def pair_loss(model: Model, sampler: PairSampler, size: int) -> torch.Tensor:
    """Bits per sample of a fresh batch of pairs: the fine-tuning loss."""
    u, inside, tp, ref, present = sampler.batch(size)
    return (model.bits(u, inside, tp, ref, present) * inside).sum() / inside.sum()


# ---------------------------------------------------------------------------- evaluation
def eval_pairs(source: Path, max_pairs: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(previous, current) planes of each validation stack: up to ``max_pairs`` evenly spaced
    current planes 1.., constant ones skipped."""
    out = {}
    for name, files in STACKS.items():
        s = load(source, files)
        ks = np.unique(np.linspace(1, s.shape[0] - 1, max_pairs).round().astype(int))
        out[name] = [(s[k - 1], s[k]) for k in ks if s[k].min() != s[k].max()]
    return out


@torch.no_grad()
def tile_bits(
    model: Model, ref: np.ndarray, cur: np.ndarray, patch: int, present: bool = True
) -> float:
    """Bits of one tile (``cur``, int64) under ``model`` given the previous plane's tile (or
    without it: ``present=False``)."""
    cp = chunk_params(cur)
    if not cp.coded:
        return 0.0
    geo = Geometry(*cur.shape, patch)
    u = torch.from_numpy(geo.to_patches(cur - cp.vmin).astype(np.float32))
    inside = torch.from_numpy(geo.inside.astype(np.float32))
    tp = _tile_params(geo, [cp], torch.device("cpu"))
    refv = torch.from_numpy(window_values((ref - cp.vmin)[None], geo, model.radius))
    flag = torch.full((geo.n_patches,), float(present))
    return float((model.bits(u, inside, tp, refv, flag) * inside).sum())


def stack_bits(
    model: Model,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    delta_model: Model,
    patch: int = 64,
    tile: int = 256,
    present: bool = True,
) -> tuple[float, float]:
    """Mean bps over the current planes: alone, and per tile the cheaper of that and the
    ``delta_model``'s bits of the difference to the previous plane. ``present=False``: the
    model codes without the previous plane."""
    alone, best = [], []
    for prev, cur in pairs:
        a = b = 0.0
        for r in tile_grid((1, *cur.shape), tile):
            sl = np.s_[r.y : r.y + r.h, r.x : r.x + r.w]
            c, p = cur[sl].astype(np.int64), prev[sl].astype(np.int64)
            own = tile_bits(model, p, c, patch, present)
            d = c - p
            diff = tile_bits(delta_model, p, d, patch) if np.ptp(d) <= 0xFFFF else own
            a, b = a + own, b + min(own, diff)
        alone.append(a / cur.size)
        best.append(b / cur.size)
    return statistics.fmean(alone), statistics.fmean(best)


def markdown(results: dict) -> str:
    """One row per stack: JPEG XL, then each arm alone and "+ delta" (change against the
    control's cell of the same kind)."""
    arms = [k for k in results if k != "jxl_e7"]
    bps = {a: results[a].get("bps", results[a]) for a in arms}
    head = ["stack", "JPEG XL e7"] + [f"{a}{tail}" for a in arms for tail in ("", " + delta")]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, jxl in results["jxl_e7"].items():
        cells = [name, f"{jxl:.4f}"]
        for a in arms:
            for i in (0, 1):
                v = bps[a][name][i]
                ref = bps.get("control", {}).get(name)
                change = f" ({100 * (v / ref[i] - 1):+.1f} %)" if ref and a == "conditioned" else ""
                cells.append(f"{v:.4f}{change}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", default="hpac-small-v5", help="trained model to start from")
    ap.add_argument("--config", default=None, help="its last-stage config (default: INIT.toml)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument(
        "--lr", type=float, default=2e-4, help="peak learning rate (v5's 5e-4 broke flat areas)"
    )
    ap.add_argument("--pairs", type=int, default=12, help="planes per validation stack")
    ap.add_argument("--radius", type=int, default=2, help="previous plane's window: (2r+1)^2")
    ap.add_argument(
        "--freeze-trunk",
        action="store_true",
        help="train only the conditioned arm's new layer (its intra coding stays the init model's)",
    )
    ap.add_argument(
        "--absent",
        type=float,
        default=0.0,
        help="fraction of training pairs coded without the previous plane (one model for both)",
    )
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks/results/plane-conditioning.json"
    )
    args = ap.parse_args()
    cfg = replace(TrainConfig.from_toml(args.config or CONFIGS / f"{args.init}.toml"), lr=args.lr)
    pairs = eval_pairs(args.source, args.pairs)
    jxl = codecs.resolve(("jxl_e7",), 1)[0]
    results: dict[str, dict] = {
        "jxl_e7": {
            n: statistics.fmean(8 * len(jxl.encode(jxl.prepare(c))) / c.size for _, c in ps)
            for n, ps in pairs.items()
        }
    }
    base = Model(zoo.load(args.init)[0], 0)
    results[f"{args.init} (no fine-tuning)"] = {
        n: stack_bits(base, ps, base) for n, ps in pairs.items()
    }
    print(json.dumps(results, indent=1), flush=True)
    stacks = train_stacks()
    models = {}
    for arm, radius in (("control", 0), ("conditioned", args.radius)):
        torch.manual_seed(cfg.seed)
        net = copy.deepcopy(base.net)  # zoo.load returns one cached network per process
        net.requires_grad_(True)
        models[arm] = Model(net, radius)
        if radius and args.freeze_trunk:
            net.requires_grad_(False)
        sampler = PairSampler(stacks, cfg, radius, args.absent)
        loss = partial(pair_loss, models[arm], sampler, cfg.batch)
        seconds = finetune(models[arm], cfg, args.steps, loss)
        models[arm].eval()
        results[arm] = {
            "radius": radius,
            "steps": args.steps,
            "seconds": round(seconds),
            "bps": {n: stack_bits(models[arm], ps, models["control"]) for n, ps in pairs.items()},
        }
        if radius and args.freeze_trunk:
            results[arm]["trunk"] = "frozen"
        if radius and args.absent:
            results[arm]["absent"] = args.absent
            results[arm]["bps_without_previous"] = {
                n: stack_bits(models[arm], ps, models["control"], present=False)[0]
                for n, ps in pairs.items()
            }
        print(arm, json.dumps(results[arm], indent=1), flush=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
