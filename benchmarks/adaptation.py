"""What per-image adaptation would buy: fine-tune on the plane being coded, count what it costs.

    python benchmarks/adaptation.py [--variant bias|full ...] [--steps T] [--mdl K] [--groups G ...]

The product's HPAC codec is meant to adapt to each image (low-rank adapters fine-tuned on the
image, sent in the stream, kept only where they pay for themselves: the MDL principle). The
training issue's JPEG XL bar is "without per-image adaptation"; this measures, before anything
is built into the stream format, how much adaptation would add on the validation planes.

For every non-constant validation plane of the chosen groups, a fresh copy of the default
model is fine-tuned for ``--steps`` steps on crops of that plane only (the codec's own
quantisation-aware dense pass and focus loss, tile-sized side information, no augmentation),
training one of:

* ``bias``: every bias, the depthwise taps and the head (a few hundred integers);
* ``full``: every weight.

The loss is the plane's bits (per sample of the batch) plus ``--mdl`` bits per unit of
integer change of every parameter, spread over the plane's samples: a stand-in for the
adapter's code length that keeps deltas small and mostly zero (the MDL trade-off of SARP-FT).

The adapted integer network is exported to a temporary registry and the plane's code length is
read from the coder's integer rate map, exactly as ``benchmarks/model_bits.py`` does for the
base model. The adapter's cost is the empirical entropy of the integer deltas against the base
model (per tensor, plus 32 bits per tensor for its alphabet), an estimate of what coding them in
the stream would take. ``net`` is model bits after adaptation plus that cost; a real stream
would keep the base model where ``net`` is not smaller.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from llic_imaging import rate_map
from llic_imaging.corpus import iter_planes
from llic_imaging.model import quant, zoo
from llic_imaging.model.hpac import HpacNet
from llic_imaging.train.data import CropSampler
from llic_imaging.train.export import export
from llic_imaging.train.loop import TrainConfig, batch_bits, lr_at

ROOT = Path(__file__).resolve().parents[1]
GROUPS_16 = ["CT", "MR", "other medical", "satellite 16-bit"]


def adapt(net: HpacNet, variant: str) -> list[torch.nn.Parameter]:
    """Make ``net``'s adapted parameters trainable (the rest frozen); returns them."""
    net.requires_grad_(False)
    if variant == "full":
        net.requires_grad_(True)
        return list(net.parameters())
    params = []
    for name, p in net.named_parameters():
        if name.endswith(("bias", ".dw")) or name.startswith("head."):
            p.requires_grad_(True)
            params.append(p)
    return params


def _unit(name: str) -> int:
    """Integer units per float unit of a parameter (biases have finer steps than weights)."""
    return 1 << (quant.W_FRAC + quant.A_FRAC if name.endswith("bias") else quant.W_FRAC)


def integer_state(net: HpacNet) -> dict[str, np.ndarray]:
    """Every parameter as the integers the coder uses."""
    out = {}
    for name, p in net.named_parameters():
        q = quant.quant_bias(p) if name.endswith("bias") else quant.quant_weight(p)
        out[name] = q.detach().numpy().astype(np.int64)
    return out


def change_units(net: HpacNet, base: dict[str, np.ndarray]) -> torch.Tensor:
    """Sum of |parameter - base| in integer units over the trainable parameters (the L1
    stand-in for the adapter's code length)."""
    total = torch.zeros(())
    for name, p in net.named_parameters():
        if p.requires_grad:
            total = total + (p * _unit(name) - torch.from_numpy(base[name]).float()).abs().sum()
    return total


def delta_bits(base: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> float:
    """Empirical-entropy estimate of coding ``new`` given ``base``, tensor by tensor."""
    total = 0.0
    for name, b in base.items():
        d = (new[name] - b).ravel()
        if not d.any():
            total += 1  # "unchanged" flag
            continue
        _, counts = np.unique(d, return_counts=True)
        p = counts / d.size
        total += float(-(counts * np.log2(p)).sum()) + 32
    return total


def plane_bits(array: np.ndarray, model: str) -> float:
    return float(rate_map(array, model=model).sum(dtype="float64"))


def run(
    variants: list[str], steps: int, groups: list[str], lr: float, batch: int, mdl: float
) -> dict:
    base_name = zoo.DEFAULT_MODEL
    net0, _ = zoo.load(base_name)
    base_int = integer_state(net0)
    cfg = TrainConfig(name="adapt", steps=steps, lr=lr, lr_final=lr / 20)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[zoo.MODEL_PATH_ENV] = tmp
        for plane in iter_planes(groups=groups):
            if plane.constant:
                continue
            array = np.asarray(plane.array)
            row = {
                "file": plane.file.relpath,
                "plane": plane.name,
                "group": plane.group,
                "samples": plane.samples,
                "base_bits": plane_bits(array, base_name),
            }
            for variant in variants:
                torch.manual_seed(0)
                net = copy.deepcopy(net0).train()
                params = adapt(net, variant)
                sampler = CropSampler(
                    [array], [plane.group], 64, {"flips": False}, seed=0, context=256
                )
                opt = torch.optim.Adam(params, lr=lr)
                t0 = time.time()
                for step in range(steps):
                    for g in opt.param_groups:
                        g["lr"] = lr_at(cfg, step)
                    total, n = batch_bits(
                        net, sampler.batch(batch), torch.device("cpu"), focus=True
                    )
                    loss = total / n
                    if mdl:
                        loss = loss + mdl * change_units(net, base_int) / plane.samples
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                seconds = time.time() - t0
                name = f"adapted-{variant}-{len(rows)}"
                export(net.eval(), name, {}, weights_dir=Path(tmp))
                model_bits = plane_bits(array, name)
                cost = delta_bits(base_int, integer_state(net))
                row[variant] = {
                    "model_bits": model_bits,
                    "adapter_bits": cost,
                    "net_bits": model_bits + cost,
                    "seconds": round(seconds, 1),
                }
                print(
                    f"{row['file'][-34:]:34s} {row['plane']:5s} {variant:5s} "
                    f"base {row['base_bits'] / row['samples']:.4f} "
                    f"adapted {model_bits / row['samples']:.4f} "
                    f"+ {cost / row['samples']:.4f} bps adapter "
                    f"({(model_bits + cost) / row['base_bits'] - 1:+.2%}), {seconds:.0f} s",
                    flush=True,
                )
            rows.append(row)
    return {
        "model": base_name,
        "steps": steps,
        "lr": lr,
        "batch": batch,
        "mdl": mdl,
        "planes": rows,
    }


def summary(result: dict, variants: list[str]) -> dict[str, dict[str, float]]:
    """Per group: mean bps (as the bench takes it) of the base model and, per variant, of
    ``min(base, net)`` (a stream keeps the base model where adaptation does not pay)."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in result["planes"]:
        n = r["samples"]
        per[r["group"]]["base"].append(r["base_bits"] / n)
        for v in variants:
            per[r["group"]][v].append(min(r["base_bits"], r[v]["net_bits"]) / n)
    return {g: {k: statistics.fmean(x) for k, x in d.items()} for g, d in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", choices=["bias", "full"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mdl", type=float, default=0.0, help="bits per unit of parameter change")
    ap.add_argument("--groups", action="append", help="benchmark groups (default: the 16-bit)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/adaptation.json")
    args = ap.parse_args()
    variants = args.variant or ["bias", "full"]
    result = run(variants, args.steps, args.groups or GROUPS_16, args.lr, args.batch, args.mdl)
    result["summary"] = summary(result, variants)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    for g, d in result["summary"].items():
        cells = "  ".join(f"{k} {v:.4f}" for k, v in d.items())
        print(f"{g:18s} {cells}")


if __name__ == "__main__":
    main()
