"""Small DICOM files for the archive tests: pydicom's bundled test files and synthetic instances.

The codec decodes at a few seconds per instance on CI's two cores, so studies here hold at most
two instances that llic codes; the others are kept-compressed or plain files.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest


def bundled(name: str) -> Path:
    """A file shipped inside the pydicom wheel (never downloaded)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled")
    return Path(path)


def write_dicom(
    path: Path,
    *,
    shape: tuple[int, int] = (16, 16),
    seed: int = 0,
    pixel_bytes: bytes | None = None,
    pixels: bool = True,
    rle: bool = False,
) -> Path:
    """Write a CT-like instance (uint16, 12 bits stored) of ``shape`` and return ``path``.

    ``pixel_bytes`` replaces the Pixel Data value (e.g. too short), ``pixels=False`` writes a
    Basic Text SR without Pixel Data, ``rle`` compresses it (a kept-compressed instance that
    costs no codec time).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        BasicTextSRStorage,
        CTImageStorage,
        ExplicitVRLittleEndian,
        RLELossless,
        generate_uid,
    )

    sop_class = CTImageStorage if pixels else BasicTextSRStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName = "Test^Archive"
    ds.PatientID = "LLIC-0001"
    if not pixels:
        ds.Modality = "SR"
        ds.ValueType = "CONTAINER"
        ds.save_as(path, enforce_file_format=True)
        return path
    ds.Modality = "CT"
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(seed)
    image = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 7 + 900).astype(np.uint16)
    image += rng.integers(0, 16, shape, dtype=np.uint16)
    ds.PixelData = image.tobytes() if pixel_bytes is None else pixel_bytes
    if rle:
        ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """``{relpath: sha256}`` of every file below ``root``."""
    return {p.relative_to(root).as_posix(): sha256(p) for p in root.rglob("*") if p.is_file()}


def copy_bundled(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundled(name), dest)
    return dest
