"""What per-image adaptation buys, split into model bits and adapter bytes, per validation plane.

    python benchmarks/adaptation.py [--variant all|bias ...] [--steps T] [--groups G ...]
    python benchmarks/adaptation.py --volumes [--json FILE]

``encode(..., adapt=True)`` fine-tunes every parameter of the network on the image
(``codec.adapt``) and stores the integer deltas. This runs the same fitting on every
non-constant validation plane of the chosen groups (default: the 9-16 bit ones) and reports,
from the coder's integer rate map as ``benchmarks/model_bits.py`` does, the plane's model bits
before and after, and the adapter's packed size. Variants:

* ``all``: every parameter (what the codec does);
* ``bias``: only the biases, the depthwise taps and the head (a few hundred integers), the
  cheaper adapter measured against it.

``net`` is model bits plus adapter bits; a stream keeps the base model where that is not
smaller, so the group means take ``min(base, net)`` per plane, as the encoder does.

``--volumes``: the validation stacks of ``benchmarks/plane_context.py`` (volumes, multiband
rasters) each coded whole as one stream (context 4, the default), with and without
``adapt=True``: stream bytes, one adapter per stack; the adapted stream is decoded and compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from plane_context import STACKS, load

import llic_imaging
from llic_imaging._api import _tiling
from llic_imaging.codec import adapt
from llic_imaging.codec.engine import rate_tiles, tile_grid
from llic_imaging.corpus import iter_planes
from llic_imaging.model import zoo
from llic_imaging.model.runtime import deterministic
from llic_imaging.planes import to_stack

ROOT = Path(__file__).resolve().parents[1]
GROUPS_16 = ["CT", "MR", "other medical", "satellite 16-bit"]


def _bias_names(net) -> set[str]:
    return {k for k in net.state_dict() if k.endswith(("bias", ".dw")) or k.startswith("head.")}


def run(variants: list[str], steps: int, groups: list[str], threads: int) -> dict:
    net, info = zoo.load()
    cpu = torch.device("cpu")
    rows = []
    for plane in iter_planes(groups=groups):
        if plane.constant:
            continue
        stack, spec = to_stack(np.asarray(plane.array))
        tile, patch = _tiling(None, None, spec)
        refs = tile_grid(stack.shape, tile)
        with deterministic(threads):
            base = float(rate_tiles(net, stack, refs, patch=patch, device=cpu).sum(dtype="f8"))
        row = {
            "file": plane.file.relpath,
            "plane": plane.name,
            "group": plane.group,
            "samples": plane.samples,
            "base_bits": base,
        }
        for variant in variants:
            names = None if variant == "all" else _bias_names(net)
            t0 = time.time()
            with deterministic(threads):
                d = adapt.fit(net, stack, tile=tile, steps=steps, names=names)
                seconds = time.time() - t0
                tuned = adapt.adapted(net, d)
                bits = float(
                    rate_tiles(tuned, stack, refs, patch=patch, device=cpu).sum(dtype="f8")
                )
            cost = 8 * len(adapt.pack(d))
            row[variant] = {
                "model_bits": bits,
                "adapter_bits": cost,
                "net_bits": bits + cost,
                "nonzero": int(np.count_nonzero(d)),
                "seconds": round(seconds, 1),
            }
            n = plane.samples
            print(
                f"{row['file'][-34:]:34s} {row['plane']:5s} {variant:4s} base {base / n:.4f} "
                f"adapted {bits / n:.4f} + {cost / n:.4f} bps adapter "
                f"({(bits + cost) / base - 1:+.2%}), {seconds:.0f} s",
                flush=True,
            )
        rows.append(row)
    return {"model": info.name, "steps": steps, "planes": rows}


def volumes(source: Path, threads: int) -> dict[str, dict]:
    """Stream bytes of each validation stack coded whole, plain and adapted."""
    out = {}
    for name, files in STACKS.items():
        stack = load(source, files)
        t0 = time.time()
        plain = llic_imaging.encode(stack, numthreads=threads)
        t1 = time.time()
        tuned = llic_imaging.encode(stack, adapt=True, numthreads=threads)
        t2 = time.time()
        assert np.array_equal(llic_imaging.decode(tuned, numthreads=threads), stack)
        out[name] = {
            "shape": list(stack.shape),
            "plain_bytes": len(plain),
            "adapted_bytes": len(tuned),
            "adapted": llic_imaging.info(tuned).adapted,
            "encode_s": [round(t1 - t0, 1), round(t2 - t1, 1)],
        }
        print(
            f"{name:48s} {len(plain)} -> {len(tuned)} bytes ({len(tuned) / len(plain) - 1:+.2%}), "
            f"encode {t1 - t0:.0f} s / {t2 - t1:.0f} s",
            flush=True,
        )
    return out


def summary(result: dict, variants: list[str]) -> dict[str, dict[str, float]]:
    """Per group: mean bps (unweighted over planes, as the bench) of the base model and, per
    variant, of ``min(base, net)``."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in result["planes"]:
        n = r["samples"]
        per[r["group"]]["base"].append(r["base_bits"] / n)
        for v in variants:
            per[r["group"]][v].append(min(r["base_bits"], r[v]["net_bits"]) / n)
    return {g: {k: statistics.fmean(x) for k, x in d.items()} for g, d in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", choices=["all", "bias"])
    ap.add_argument("--steps", type=int, default=adapt.STEPS)
    ap.add_argument("--threads", type=int, default=2, help="threads of the rate maps")
    ap.add_argument("--groups", action="append", help="benchmark groups (default: the 16-bit)")
    ap.add_argument("--volumes", action="store_true", help="whole validation stacks instead")
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.volumes:
        result = volumes(args.source, args.threads)
        path = args.json or ROOT / "benchmarks/results/adaptation-volumes.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        return
    variants = args.variant or ["all", "bias"]
    result = run(variants, args.steps, args.groups or GROUPS_16, args.threads)
    result["summary"] = summary(result, variants)
    (args.json or ROOT / "benchmarks/results/adaptation.json").write_text(
        json.dumps(result, indent=1) + "\n"
    )
    for g, d in result["summary"].items():
        cells = "  ".join(f"{k} {v:.4f}" for k, v in d.items())
        print(f"{g:18s} {cells}")


if __name__ == "__main__":
    main()
