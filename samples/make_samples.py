"""Regenerate the synthetic sample images in this folder (seeded, so the bytes never change).

Run ``python samples/make_samples.py``; the DICOM samples are copied from the installed pydicom
(see LICENSES.md) when it is importable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent


def _ellipses(shape: tuple[int, int], spec: list[tuple[float, ...]]) -> np.ndarray:
    """Sum of filled ellipses (value, cy, cx, ry, rx) on a [-1, 1] grid: a Shepp-Logan-like phantom."""
    y, x = np.mgrid[-1 : 1 : shape[0] * 1j, -1 : 1 : shape[1] * 1j]
    out = np.zeros(shape)
    for value, cy, cx, ry, rx in spec:
        out += value * (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1)
    return out


def phantom_u16(rng: np.random.Generator) -> np.ndarray:
    """12-bit MR-like phantom in uint16: smooth regions, sharp edges and sensor noise."""
    head = _ellipses(
        (192, 192),
        [(1800, 0, 0, 0.9, 0.7), (-700, 0, 0, 0.8, 0.6), (500, -0.2, -0.2, 0.2, 0.15)]
        + [(400, 0.3, 0.2, 0.15, 0.25), (900, 0.1, 0.05, 0.05, 0.05)],
    )
    return np.clip(head + rng.normal(0, 12, head.shape) + 40, 0, 4095).astype(np.uint16)


def ct_stack_i16(rng: np.random.Generator) -> np.ndarray:
    """Three CT-like int16 slices: -2000 padding outside the scan circle, air, tissue, bone."""
    slices = []
    for k in range(3):
        body = _ellipses(
            (96, 96),
            [(-1000, 0, 0, 2, 2), (1040, 0.05, 0, 0.75, 0.6 - 0.05 * k), (900, 0.5, 0, 0.12, 0.1)],
        )
        noisy = body + rng.normal(0, 8, body.shape)
        y, x = np.mgrid[-1:1:96j, -1:1:96j]
        slices.append(np.where(x**2 + y**2 > 0.95, -2000, noisy))
    return np.round(slices).astype(np.int16)


def terrain_u8(rng: np.random.Generator) -> np.ndarray:
    """8-bit satellite-like band: fractal (1/f) terrain, the texture of a land-cover scene."""
    freq = np.fft.fftfreq(128)
    radius = np.hypot(*np.meshgrid(freq, freq, indexing="ij"))
    spectrum = rng.normal(size=(128, 128)) * np.where(radius > 0, radius, 1) ** -1.6
    field = np.fft.ifft2(spectrum).real
    scaled = (field - field.min()) / np.ptp(field) * 200 + 20
    return scaled.astype(np.uint8)


def dem_i16(rng: np.random.Generator) -> np.ndarray:
    """int16 elevation tile with a -32768 nodata strip next to valid data (a swath edge)."""
    y, x = np.mgrid[0:96, 0:128]
    hills = 300 + 120 * np.sin(x / 11.0) * np.cos(y / 17.0) + rng.normal(0, 2, (96, 128))
    out = np.round(hills).astype(np.int16)
    out[:, :20] = -32768
    return out


def main() -> None:
    rng = np.random.default_rng(20240601)
    np.save(HERE / "ct_stack_i16.npy", ct_stack_i16(rng))
    tifffile.imwrite(HERE / "phantom_u16.tif", phantom_u16(rng))
    (HERE / "terrain_u8.png").write_bytes(imagecodecs.png_encode(terrain_u8(rng)))
    tifffile.imwrite(HERE / "dem_i16.tif", dem_i16(rng), compression="zlib")
    try:
        import pydicom.data
    except ImportError:
        return
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(pydicom.data.get_testdata_file(name), HERE / name)


if __name__ == "__main__":
    main()
