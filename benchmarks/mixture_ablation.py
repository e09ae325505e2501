"""Mixture-of-logistics head against one logistic, measured in float on a trained trunk.

    python benchmarks/mixture_ablation.py [--init hpac-small-v4] [--k 1 3] [--steps 1500]

The codec's head is one logistic read from frozen integer tables (docs/design.md); a K-component
mixture would need integer mixture CDF tables and K table reads per pixel. Before building those,
this measures what a mixture buys. Every arm starts from the same trained model and is
fine-tuned identically (same crops, seed and schedule as the model's last stage), keeping one
logistic (K = 1, the control) or with a K-component head whose components start as noisy copies
of the trained head. Then it reports the code length of each validation plane (teacher forced
on the codec's 256 x 256 tiles at patch 64), group means as ``llic bench`` takes them. A
component's probability of a value is what the coder charges for it (``train.loss.bits`` with
``focus=True``: an outlier costs escape + raw bits, which is what keeps nodata jumps finite), and
the mixture's cost is ``-log2 sum_k w_k 2**-bits_k``; for K = 1 that is the codec's own model
bits. Means and scales are the integer ones the codec would use; mixture weights stay float.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _finetune import finetune
from torch import nn

from llic_imaging.codec.engine import _tile_params, chunk_params, tile_grid
from llic_imaging.codec.schedule import Geometry
from llic_imaging.corpus import iter_planes
from llic_imaging.model import zoo
from llic_imaging.model.hpac import HpacNet, QLinear, TileParams
from llic_imaging.train.data import CropSampler
from llic_imaging.train.loop import TrainConfig, batch_tensors
from llic_imaging.train.loss import bits

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src/llic_imaging/train/configs"
_LN2 = math.log(2.0)


class Mixture(nn.Module):
    """A trained trunk with K integer (mean, scale) heads and float mixture weights."""

    def __init__(self, net: HpacNet, k: int, seed: int):
        super().__init__()
        self.net = net
        g = torch.Generator().manual_seed(seed)
        c = net.config.channels
        self.heads = nn.ModuleList(QLinear(c, 2) for _ in range(k))
        for i, h in enumerate(self.heads):
            h.load_state_dict(net.head.state_dict())
            if i:  # break the symmetry; the first component is the trained head exactly
                h.weight.data += (
                    0.05 * h.weight.data.std() * torch.randn(h.weight.shape, generator=g)
                )
        self.logits = nn.Linear(c, k)
        nn.init.zeros_(self.logits.weight)
        nn.init.constant_(self.logits.bias, 0.0)
        self.logits.bias.data[0] = 1.0

    def bits(self, u: torch.Tensor, inside: torch.Tensor, p: TileParams) -> torch.Tensor:
        """-log2 P(u) per position, (NP, P, P)."""
        x, anchor = self.net.features(u, inside, p)
        vmax = p.vmax.reshape(-1, 1, 1)
        per = []
        for h in self.heads:
            pred = self.net.head_prediction(x, anchor, p, h)
            per.append(bits(pred.mu16, pred.scale, u, vmax, focus=True).double())
        if len(per) == 1:
            return per[0]
        logw = torch.log_softmax(self.logits(x).double(), dim=-1).reshape(*u.shape, -1)
        return -torch.logsumexp(logw - torch.stack(per, -1) * _LN2, dim=-1) / _LN2


def crop_loss(model: Mixture, sampler: CropSampler, size: int) -> torch.Tensor:
    """Bits per sample of a fresh batch of train crops: the fine-tuning loss."""
    batch = sampler.batch(size)
    u, inside, tp = batch_tensors(batch, torch.device("cpu"))
    return (model.bits(u, inside, tp) * inside).sum() / batch.u.size


@torch.no_grad()
def validation_bits(model: Mixture, patch: int = 64, tile: int = 256) -> dict[str, float]:
    """Mean over the validation planes of each group of the planes' ideal bits per sample."""
    per: dict[str, list[float]] = defaultdict(list)
    for plane in iter_planes(None):
        if plane.constant:
            continue
        stack = plane.array.astype(np.int64)[None]
        total = 0.0
        for r in tile_grid(stack.shape, tile):
            t = stack[r.plane, r.y : r.y + r.h, r.x : r.x + r.w]
            cp = chunk_params(t)
            if not cp.coded:
                continue
            geo = Geometry(r.h, r.w, patch)
            u = torch.from_numpy(geo.to_patches(t - cp.vmin).astype(np.float32))
            inside = torch.from_numpy(geo.inside.astype(np.float32))
            tp = _tile_params(geo, [cp], torch.device("cpu"))
            total += float((model.bits(u, inside, tp) * inside).sum())
        per[plane.group].append(total / plane.samples)
    return {g: statistics.fmean(v) for g, v in per.items()}


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", default="hpac-small-v4", help="trained model to start from")
    ap.add_argument(
        "--config", default=None, help="its last-stage config (default: CONFIGS/INIT.toml)"
    )
    ap.add_argument("--k", type=int, nargs="+", default=[1, 3], help="mixture sizes to compare")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/mixture-ablation.json")
    args = ap.parse_args()
    cfg = TrainConfig.from_toml(args.config or CONFIGS / f"{args.init}.toml")
    results: dict[str, dict] = {}
    base, _ = zoo.load(args.init)
    results[f"{args.init} (no fine-tuning)"] = {"bps": validation_bits(Mixture(base, 1, cfg.seed))}
    print(json.dumps(results, indent=1), flush=True)
    for k in args.k:
        torch.manual_seed(cfg.seed)
        net = copy.deepcopy(base)  # zoo.load returns one cached network per process
        net.requires_grad_(True)
        model = Mixture(net, k, cfg.seed)
        sampler = CropSampler.from_corpus(cfg.crop, cfg.augment, cfg.seed, context=cfg.context)
        seconds = finetune(model, cfg, args.steps, partial(crop_loss, model, sampler, cfg.batch))
        results[f"K={k}"] = {
            "steps": args.steps,
            "seconds": round(seconds),
            "bps": validation_bits(model),
        }
        print(json.dumps(results[f"K={k}"], indent=1), flush=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
