"""Peak RSS of encode + decode of an 8192x8192 uint16 image (fresh process).

    python benchmarks/memory_8192.py [textured_tiles]

Full texture takes ~20 min per direction at today's speed, so by default 16 tiles (one full
encode/decode batch of 2**20 pixels) are textured and the rest is constant: the array buffers
(input, int32 planes, decoded output) are full size and one network batch is live, which is what
bounds the peak. Pass 1024 to texture every tile.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from llic_imaging.bench.memory import peak_memory


def round_trip(textured: int) -> dict:
    import llic_imaging

    rng = np.random.default_rng(0)
    a = np.full((8192, 8192), 1000, np.uint16)
    for k in range(textured):
        y, x = divmod(k, 32)
        t = np.cumsum(rng.integers(-20, 21, (256, 256)), axis=1) + 2000
        a[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256] = np.clip(t, 0, 4095)
    t0 = time.perf_counter()
    s = llic_imaging.encode(a)
    t1 = time.perf_counter()
    ok = bool(np.array_equal(llic_imaging.decode(s), a))
    return {"exact": ok, "bytes": len(s), "encode_s": t1 - t0, "decode_s": time.perf_counter() - t1}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    result, peak = peak_memory(round_trip, n)
    print(
        json.dumps({"shape": [8192, 8192], "textured_tiles": n, "peak_rss_bytes": peak, **result})
    )
