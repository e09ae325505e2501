"""Bits per sample of trained models on the validation split, from the integer rate map.

    python benchmarks/model_bits.py MODEL [MODEL ...] [--patch P] [--json FILE]

Compares what the *models* spend, without container bytes or timing: for every non-constant
plane ``llic bench`` counts (same planes, same default tile and patch per bit depth unless
``--patch`` says otherwise), the sum of
the per-pixel code lengths under the coder's integer tables (``rate_map``), then the unweighted
mean over the planes of each group, as the bench does. The numbers are exact integers' code
lengths, so they do not depend on the machine, the thread count or what else runs beside
(unlike ``benchmarks/ablation.py``, which runs the whole codec and times it). Models outside the
package are found through ``$LLIC_MODEL_PATH`` (``llic-train --weights-dir``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from llic_imaging import rate_map
from llic_imaging.corpus import iter_planes

ROOT = Path(__file__).resolve().parents[1]


def model_bits(
    models: list[str], source: Path | None, patch: int | None = None
) -> dict[str, dict[str, float]]:
    """``{model: {group: mean bps}}`` over the validation planes of ``source``."""
    per: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in models}
    for plane in iter_planes(source):
        if plane.constant:
            continue
        for m in models:
            bits = float(rate_map(plane.array, model=m, patch=patch).sum(dtype="float64"))
            per[m][plane.group].append(bits / plane.samples)
    return {m: {g: statistics.fmean(v) for g, v in groups.items()} for m, groups in per.items()}


def table(means: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per group, one column per model (bps, and change against the first)."""
    models = list(means)
    first = means[models[0]]
    lines = [
        "| group | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for g in first:
        cells = [f"{first[g]:.4f}"] + [
            f"{means[m][g]:.4f} ({means[m][g] / first[g] - 1:+.1%})" for m in models[1:]
        ]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--source", type=Path, default=None, help="data root (default: shared/data)")
    ap.add_argument("--patch", type=int, default=None, help="patch side (default: the codec's)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/model-bits.json")
    args = ap.parse_args()
    means = model_bits(args.models, args.source, args.patch)
    args.json.write_text(json.dumps(means, indent=1) + "\n")
    print(table(means))


if __name__ == "__main__":
    main()
