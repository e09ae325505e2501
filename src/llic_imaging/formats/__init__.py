"""Format adapters: read a file as stored integers plus opaque metadata, and rebuild it exactly.

Each adapter module (``npy``, ``png``, ``tiff``, ``dicom``, ``nifti``, ``geotiff``, ``itk``) imports its
library lazily, so ``import llic_imaging.formats`` loads numpy only.
"""

from __future__ import annotations

import importlib
import os
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError, UnknownFormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.dicom import EncapsulatedPixelDataError
from llic_imaging.formats.envelope import Loaded, unpack

__all__ = [
    "FORMATS",
    "EncapsulatedPixelDataError",
    "Loaded",
    "detect",
    "extensions",
    "import_optional",
    "load",
    "metadata_differences",
    "planes",
    "save",
    "written_files",
]

FORMATS = ("npy", "png", "tiff", "dicom", "nifti", "geotiff", "itk")

_EXTENSIONS = {
    ".npy": "npy",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".mha": "itk",
    ".mhd": "itk",
    ".nrrd": "itk",
    ".nhdr": "itk",
}
_BY_LENGTH = sorted(_EXTENSIONS, key=len, reverse=True)
_SNIFF_BYTES = 1024
_SKELETON = 64 << 20  # bytes an envelope may hold beyond the image's own size (save)


def _adapter(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        msg = f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        raise FormatError(msg)
    return importlib.import_module(f"llic_imaging.formats.{fmt}")


def _gunzip_head(head: bytes) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _SNIFF_BYTES)
    except zlib.error:
        return b""


def _is_geotiff(path: Path) -> bool:
    """A TIFF is a GeoTIFF when its first page carries GeoTIFF keys, tie points or RPCs."""
    from llic_imaging.formats.tiff import GEO_TAGS, first_page_tags

    return not GEO_TAGS.isdisjoint(first_page_tags(path))


def _by_extension(name: str) -> str | None:
    """The format a file name's extension says, longest extension first (``.nii.gz``)."""
    lower = name.lower()
    return next((_EXTENSIONS[e] for e in _BY_LENGTH if lower.endswith(e)), None)


def detect(path: str | os.PathLike[str]) -> str:
    """Name the format of ``path``: magic bytes first, then the file extension.

    Raises
    ------
    UnknownFormatError
        If the file matches no supported format, or is empty without an image extension
        (a :class:`FormatError`).
    FormatError
        If the file is unreadable, or empty with an image extension.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        msg = f"{p}: cannot read: {exc.strerror or exc}"
        raise FormatError(msg) from exc
    by_name = _by_extension(p.name)
    if not head:
        msg = f"{p}: file is empty"
        raise FormatError(msg) if by_name else UnknownFormatError(msg)
    from llic_imaging.formats import dicom, itk, nifti, npy, png, tiff

    if npy.sniff(head):
        return "npy"
    if png.sniff(head):
        return "png"
    if dicom.sniff(head):  # before TIFF: some DICOM preambles hold a TIFF header (dual files)
        return "dicom"
    if tiff.sniff(head):
        return "geotiff" if _is_geotiff(p) else "tiff"
    if nifti.sniff(head) or (head[:2] == b"\x1f\x8b" and nifti.sniff(_gunzip_head(head))):
        return "nifti"
    if itk.sniff(head):
        return "itk"
    if by_name:
        return by_name
    hint = "; it is a llic stream: use restore" if p.name.endswith(".llic") else ""
    msg = f"{p}: unknown file format (first bytes {head[:8]!r}); expected one of {', '.join(FORMATS)}{hint}"
    raise UnknownFormatError(msg)


def load(path: str | os.PathLike[str], *, format: str | None = None) -> Loaded:  # noqa: A002
    """Read ``path`` as stored integers plus the metadata that rebuilds the file.

    Raises
    ------
    FormatError
        If the file cannot be represented exactly (float data, compressed DICOM, ...).
    MissingDependencyError
        If the format's library is not installed.
    """
    fmt = format or detect(path)
    return _adapter(fmt).load(path)


def save(
    path: str | os.PathLike[str],
    array: np.ndarray,
    metadata: bytes,
    *,
    format: str | None = None,  # noqa: A002
    **options: Any,
) -> None:
    """Rebuild the original file from ``array`` and ``metadata`` (from :func:`load`), atomically.

    ``options`` are adapter-specific overrides (for example ``compression="zstd"`` for TIFF);
    they change the bytes, so byte-identity holds only without them.
    """
    fmt, info, blobs = _restore_envelope(metadata, np.asarray(array).nbytes)
    if format is not None and format != fmt:
        msg = f"metadata was made by the {fmt!r} adapter, not {format!r}"
        raise FormatError(msg)
    try:
        _adapter(fmt).save(path, array, info, blobs, **options)
    except FormatError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # a forged envelope's fields
        msg = f"metadata of the {fmt!r} adapter does not fit it or the image: {exc!r}"
        raise FormatError(msg) from exc


def _restore_envelope(
    metadata: bytes, image_bytes: int
) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """``unpack`` for a restore of an image of ``image_bytes``: a forged envelope could inflate
    a few MB to gigabytes, a real one holds at most the file's skeleton beside the pixels."""
    return unpack(metadata, limit=_SKELETON + image_bytes)


def extensions(metadata: bytes, *, image_bytes: int) -> tuple[str, tuple[str, ...]]:
    """``(format, extensions)``: the file name extensions a file restored from ``metadata`` (an
    image of ``image_bytes``) can be read back from, or ``()`` for any name. Readers pick their
    decoder by the extension, so NumPy bytes named ``.png`` would be unreadable. An adapter with
    its own rule has ``extensions(info, blobs)``.
    """
    fmt, info, blobs = _restore_envelope(metadata, image_bytes)
    rule = getattr(_adapter(fmt), "extensions", None)
    if rule is not None:
        return fmt, rule(info, blobs)
    family = "tiff" if fmt == "geotiff" else fmt
    return fmt, tuple(ext for ext, name in _EXTENSIONS.items() if name == family)


def written_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every file :func:`save` may write for ``path``: ``path`` and, for a detached ITK header
    (``.mhd``, ``.nhdr``), the data files SimpleITK names after it and replaces without asking,
    so a check for existing outputs must look at these too."""
    from llic_imaging.formats import itk

    return [Path(path), *itk.data_files(path)]


def metadata_differences(restored: bytes, original: bytes) -> list[str]:
    """Name the metadata fields and byte blobs in which two envelopes of one format differ.

    Fields an adapter lists in its ``ENCODING_FIELDS`` say how the file's bytes were encoded
    (a gzip member's deflate settings), not what the file holds, so they are not compared: a
    ``"pixels+metadata"`` restore may legitimately encode differently.
    """
    fmt_a, info_a, blobs_a = unpack(restored)
    fmt_b, info_b, blobs_b = unpack(original)
    if fmt_a != fmt_b:
        return [f"format ({fmt_a} vs {fmt_b})"]
    skip = getattr(_adapter(fmt_b), "ENCODING_FIELDS", frozenset())
    keys = info_a.keys() | info_b.keys()
    names = sorted(k for k in keys - skip if info_a.get(k) != info_b.get(k))
    blobs = sorted(k for k in blobs_a.keys() | blobs_b.keys() if blobs_a.get(k) != blobs_b.get(k))
    return names + [f"blob {k!r}" for k in blobs]


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Named 2D stored-integer planes of ``path``, for benchmarks and training.

    Names: ``p<page>[/s<sample>]`` (npy, TIFF), ``c<channel>`` (PNG, alpha skipped),
    ``f<frame>[/s<sample>]`` (DICOM, compressed sources decoded), ``z<slice>`` (NIfTI, first
    volume), ``b<band>`` (GeoTIFF, alpha skipped), ``z<slice>[/s<channel>]`` (MHA/NRRD).
    Indices are 0-based.
    """
    return _adapter(detect(path)).planes(path)
