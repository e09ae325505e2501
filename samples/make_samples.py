"""Regenerate the synthetic sample images in this folder (seeded, so the bytes never change).

Run ``python samples/make_samples.py``. Every image is made here from seeded noise and geometry
(the CT series with pydicom, the NIfTI volume with nibabel, the GeoTIFF with rasterio); only
``CT_small.dcm`` and ``MR_small.dcm`` are copied from the installed pydicom (see LICENSES.md).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pydicom.data
import rasterio
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

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


def _uid(*parts: object) -> str:
    """A UID derived from fixed text, so regenerated files carry the same UIDs."""
    return generate_uid(entropy_srcs=["llic-imaging samples", *map(str, parts)])


def ct_instance(pixels: np.ndarray, k: int) -> Dataset:
    """One CT Image Storage instance (slice ``k``) of a shared synthetic study and series.

    Stored values are HU + 1024 (RescaleIntercept -1024), signed, with PixelPaddingValue -2000
    outside the field of view: the layout of many scanners' int16 CT.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = _uid("ct_study", "instance", k)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("implementation")  # pydicom's default names its version
    meta.ImplementationVersionName = "LLIC_SAMPLES"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid("ct_study", "study")
    ds.SeriesInstanceUID = _uid("ct_study", "series")
    ds.FrameOfReferenceUID = _uid("ct_study", "frame of reference")
    ds.Modality = "CT"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "LLIC-SAMPLE-0001"
    ds.StudyDate = ds.SeriesDate = "20240601"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "5.0"
    ds.ImagePositionPatient = ["-125.0", "-125.0", f"{-10.0 + 5.0 * k:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = f"{-10.0 + 5.0 * k:.1f}"
    ds.PixelSpacing = ["1.953125", "1.953125"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.add_new(0x00280120, "SS", -2000)  # PixelPaddingValue: its VR follows PixelRepresentation
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def ct_series(rng: np.random.Generator) -> list[np.ndarray]:
    """Three 128x128 stored-value CT slices: body, lungs and a spine that moves between slices."""
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    slices = []
    for k in range(3):
        hu = _ellipses(
            (128, 128),
            [(-1000, 0, 0, 2, 2), (1040, 0.05, 0, 0.7, 0.85), (-820, -0.05, -0.4, 0.4, 0.25)]
            + [(-820, -0.05, 0.4, 0.4 - 0.03 * k, 0.25), (700, 0.55, 0, 0.1, 0.09 + 0.01 * k)],
        )
        stored = hu + 1024 + rng.normal(0, 10, hu.shape)
        slices.append(np.round(np.where(x**2 + y**2 > 0.96, -2000, stored)).astype(np.int16))
    return slices


def head_nifti(rng: np.random.Generator) -> nib.Nifti1Image:
    """64x64x8 int16 MR-like head volume, 3.5 x 3.5 x 6 mm voxels, RAS+ scanner space."""
    z = np.linspace(-0.8, 0.8, 8)
    volume = np.stack(
        [
            _ellipses(
                (64, 64),
                [(600, 0, 0, 0.85 * np.sqrt(1 - 0.5 * zk**2), 0.7), (-350, 0, 0, 0.75, 0.6)]
                + [(250, 0.1, 0.25 - 0.1 * zk, 0.2, 0.12), (250, 0.1, -0.25 + 0.1 * zk, 0.2, 0.12)],
            )
            for zk in z
        ],
        axis=-1,
    )
    data = np.clip(volume + rng.normal(0, 6, volume.shape) + 10, 0, None).astype(np.int16)
    affine = np.diag([3.5, 3.5, 6.0, 1.0])
    affine[:3, 3] = [-110.25, -110.25, -21.0]  # voxel (31.5, 31.5, 3.5) sits at the origin
    img = nib.Nifti1Image(data.transpose(1, 0, 2), affine)  # (y, x, z) -> NIfTI's (i, j, k)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def scene_u16(rng: np.random.Generator) -> np.ndarray:
    """Three 12-bit reflectance-like bands (red, green, NIR) of one 1/f terrain, 0 off-swath."""
    freq = np.fft.fftfreq(128)
    radius = np.hypot(*np.meshgrid(freq, freq, indexing="ij"))
    spectrum = rng.normal(size=(128, 128)) * np.where(radius > 0, radius, 1) ** -1.8
    terrain = np.fft.ifft2(spectrum).real
    terrain = (terrain - terrain.min()) / np.ptp(terrain)
    bands = [
        600 + 1800 * terrain,
        800 + 1400 * terrain,
        2600 + 1200 * (1 - terrain),  # vegetation in the valleys
    ]
    out = np.stack([b + rng.normal(0, 15, b.shape) for b in bands]).clip(1, 4095)
    y, x = np.mgrid[0:128, 0:128]
    out[:, x + y < 40] = 0  # outside the sensor swath: nodata
    return np.round(out).astype(np.uint16)


def write_scene(path: Path, bands: np.ndarray) -> None:
    """An uncompressed strip GeoTIFF in UTM 33N: the layout the adapter restores byte for byte."""
    profile = {
        "driver": "GTiff",
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": rasterio.Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5300000.0),  # 10 m pixels
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        for i, name in enumerate(("red", "green", "nir"), start=1):
            dst.set_band_description(i, name)
        dst.update_tags(SOURCE="llic-imaging make_samples.py (synthetic)", DATE="2024-06-01")


def main(out: Path = HERE) -> None:
    """Write every sample into ``out`` (tests regenerate into a temporary folder and compare)."""
    rng = np.random.default_rng(20240601)
    np.save(out / "ct_stack_i16.npy", ct_stack_i16(rng))
    tifffile.imwrite(out / "phantom_u16.tif", phantom_u16(rng))
    (out / "terrain_u8.png").write_bytes(imagecodecs.png_encode(terrain_u8(rng)))
    tifffile.imwrite(out / "dem_i16.tif", dem_i16(rng), compression="zlib")
    study = out / "ct_study"
    study.mkdir(exist_ok=True)
    for k, pixels in enumerate(ct_series(rng)):
        ct_instance(pixels, k).save_as(study / f"CT{k + 1:04d}.dcm", enforce_file_format=True)
    # gzip with mtime 0 (not nib.save): the member header would otherwise carry today's time.
    (out / "head_i16.nii.gz").write_bytes(gzip.compress(head_nifti(rng).to_bytes(), mtime=0))
    write_scene(out / "scene_u16.tif", scene_u16(rng))
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(pydicom.data.get_testdata_file(name), out / name)


if __name__ == "__main__":
    main()
