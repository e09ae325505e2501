"""Model ablation: bits per sample per validation group and speed, one row per trained variant.

    python benchmarks/ablation.py MODEL [MODEL ...] [--bench-json DIR] [--markdown FILE]

For every model: ``llic bench``'s library twin on the validation split with llic only
(``benchmarks/results/ablation-<model>.json``; reused when it exists, delete it to rerun), and a
speed probe: encode and decode of one 512x512 16-bit CT slice of the validation split with one
and with two threads, best of three, on whatever else the machine is doing (run it on an idle
machine). JPEG XL e7 and JPEG-LS means come from the main bench JSON of the same split
(``benchmarks/results/bench-validation.json``), so every row is compared with the same
classical numbers. The table goes between the ``ablation`` markers of docs/benchmarks.md.
Models outside the package are found through ``$LLIC_MODEL_PATH`` (``llic-train --weights-dir``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import llic_imaging
from llic_imaging import bench, formats
from llic_imaging.corpus import EXTRA_GROUPS, GROUPS
from llic_imaging.model import zoo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEED_FILE = "medical/CT_bad_sequence.dcm"  # 512x512 16-bit, validation split
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"


def size(config: dict[str, int]) -> tuple[int, int]:
    """Parameters, and multiply-accumulates per pixel of one dense pass (the decoder does the
    same work step by step)."""
    from llic_imaging.model.hpac import HpacConfig, HpacNet

    net = HpacNet(HpacConfig.from_dict(config))
    c, r = net.config.channels, net.config.mlp_ratio
    block = 2 * c * c + c * c + 2 * r * c * c + len(net.taps_b) * c
    macs = net.embed.weight.numel() + net.config.blocks * block + net.head.weight.numel()
    return sum(p.numel() for p in net.parameters()), macs


def speed(model: str, source: Path) -> dict[str, float]:
    """MPix/s of encode and decode of one 512x512 16-bit slice, 1 and 2 threads, best of 3."""
    plane = formats.planes(source / SPEED_FILE)[0][1]
    out = {}
    for threads in (1, 2):
        llic_imaging.decode(llic_imaging.encode(plane[:64, :64], model=model), numthreads=threads)
        enc, dec = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            data = llic_imaging.encode(plane, model=model, numthreads=threads)
            t1 = time.perf_counter()
            assert np.array_equal(llic_imaging.decode(data, numthreads=threads), plane)
            enc.append(t1 - t0)
            dec.append(time.perf_counter() - t1)
        out[f"encode_{threads}t"] = plane.size / min(enc) / 1e6
        out[f"decode_{threads}t"] = plane.size / min(dec) / 1e6
    return out


def group_means(path: Path, codec: str) -> dict[str, float]:
    means = json.loads(path.read_text())["group_mean_bps"]
    return {g: v[codec] for g, v in means.items() if v.get(codec) is not None}


def table(rows: list[dict], classical: dict[str, dict[str, float]]) -> str:
    groups = [g for g in (*GROUPS, *EXTRA_GROUPS) if any(g in r["bps"] for r in rows)]
    head = (
        "| model | params | kMAC/px | "
        + " | ".join(groups)
        + " | enc/dec MPix/s 1 thread | 2 threads |"
    )
    lines = [BEGIN, "", head, "|" + "---|" * (len(groups) + 5)]
    for name, ref in classical.items():
        cells = " | ".join(f"{ref[g]:.3f}" if g in ref else "" for g in groups)
        lines.append(f"| *{name}* |  |  | {cells} |  |  |")
    for r in rows:
        cells = " | ".join(f"{r['bps'][g]:.3f}" for g in groups)
        s = r["speed"]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs'] / 1000:.1f} | {cells} | "
            f"{s['encode_1t']:.2f} / {s['decode_1t']:.2f} | {s['encode_2t']:.2f} / {s['decode_2t']:.2f} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--classical", type=Path, default=RESULTS / "bench-validation.json")
    ap.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    text = args.markdown.read_text()
    if BEGIN not in text or END not in text:
        msg = f"{args.markdown} has no {BEGIN} ... {END} section"
        raise SystemExit(msg)
    rows = []
    for model in args.models:
        out = RESULTS / f"ablation-{model}.json"
        if not out.exists():
            bench.run(args.source, codecs=("llic",), model=model, numthreads=1, json_path=out)
        n_params, macs = size(zoo.model_info(model).config)
        rows.append(
            {
                "model": model,
                "params": n_params,
                "macs": macs,
                "bps": group_means(out, "llic"),
                "speed": speed(model, args.source),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    classical = {c: group_means(args.classical, c) for c in ("jxl_e7", "jpegls")}
    start, end = text.index(BEGIN), text.index(END) + len(END)
    args.markdown.write_text(text[:start] + table(rows, classical) + text[end:])
    (RESULTS / "ablation.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
