"""Regenerate the frozen integer tables shipped in the package (run once per format version).

    python tools/make_tables.py            # writes src/llic_imaging/codec/cdf-v1.npz and model/lut-v1.npz
Existing files are never overwritten unless --force is given: they are part of the bitstream format.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from llic_imaging.codec import intcdf
from llic_imaging.model import quant

ROOT = Path(__file__).resolve().parents[1] / "src" / "llic_imaging"


def main() -> None:
    force = "--force" in sys.argv
    targets = {
        ROOT / "codec" / f"cdf-v{intcdf.CDF_VERSION}.npz": intcdf.generate(),
        ROOT / "model" / f"lut-v{quant.LUT_VERSION}.npz": quant.generate_luts(),
    }
    for path, arrays in targets.items():
        if path.exists() and not force:
            print(f"{path} exists; not rewritten")
            continue
        np.savez_compressed(path, **arrays)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
