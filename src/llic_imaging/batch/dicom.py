"""pydicom boundary of the archive: identify an instance cheaply, list what a DICOMDIR
references, and export an instance to a standard transfer syntax (``restore --transfer-syntax``).
pydicom errors become ``FormatError`` here.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError
from llic_imaging.formats import import_optional

__all__ = ["EXPORT_SYNTAXES", "Described", "describe", "export", "referenced_files", "uid_name"]

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
EXPORT_SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "rle": "1.2.840.10008.1.2.5",  # RLE Lossless
    "jpegls": "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
}
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


@dataclass(frozen=True)
class Described:
    """The identifiers a manifest records; ``None`` where the file does not say (or is broken)."""

    sop_instance_uid: str | None
    sop_class_uid: str | None
    transfer_syntax: str | None

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class_uid == DICOMDIR_SOP_CLASS


def describe(path: Path) -> Described:
    """Read the identifiers of a DICOM file without its pixels; never raises for bad data.

    The manifest wants the SOPInstanceUID even of files that fail later; a file that pydicom
    cannot parse simply has none, and the format adapter then says what is wrong with it.
    Files without the Part 10 preamble are read too (``force``), as the adapter reads them.
    """
    pydicom = import_optional("pydicom", "dicom")
    try:
        with warnings.catch_warnings():  # pydicom warns about invalid values; we only look
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            meta = getattr(ds, "file_meta", None) or pydicom.Dataset()
            sop = ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID")
            cls = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
            syntax = meta.get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001  pydicom raises many types; the adapter reports the problem
        return Described(None, None, None)
    return Described(*(str(v) if v else None for v in (sop, cls, syntax)))


def uid_name(uid: str) -> str:
    """``1.2.840.10008.1.2.4.80`` -> ``JPEG-LS Lossless Image Compression`` (the UID if unknown)."""
    pydicom = import_optional("pydicom", "dicom")
    name = pydicom.uid.UID(uid).name
    return name or uid


def referenced_files(path: Path) -> list[str]:
    """The files a DICOMDIR references, as ``/``-separated paths relative to its folder.

    Each directory record's ReferencedFileID holds the path's components (one value or several).

    Raises
    ------
    FormatError
        If ``path`` cannot be read as a DICOMDIR with a Directory Record Sequence.
    """
    pydicom = import_optional("pydicom", "dicom")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = pydicom.dcmread(path, force=True).DirectoryRecordSequence
            ids = [r.ReferencedFileID for r in records if r.get("ReferencedFileID")]
    except Exception as exc:  # noqa: BLE001  pydicom raises many types for damaged files
        msg = f"cannot read the DICOMDIR's directory records: {exc}"
        raise FormatError(msg) from exc
    return sorted({"/".join([i] if isinstance(i, str) else i) for i in ids})


def _to_little_endian(ds: Any) -> None:
    """Rewrite an Explicit VR Big Endian dataset in place as little endian.

    pydicom refuses to change byte order on save because it cannot know which byte strings hold
    words; here every element is parsed first (so numbers are numbers) and the word-valued byte
    strings (OW/OF/OL/OD/OV, Pixel Data with BitsAllocated > 8) are byte-swapped.
    """
    for elem in ds.iterall():
        width = _SWAP_WIDTH.get(elem.VR, 0)
        if elem.tag == 0x7FE00010:
            width = ds.BitsAllocated // 8 if ds.BitsAllocated > 8 else 0
        if width > 1 and isinstance(elem.value, bytes):
            elem.value = np.frombuffer(elem.value, f">u{width}").astype(f"<u{width}").tobytes()
    ds.set_original_encoding(False, True, ds.original_character_set)


def export(data: bytes, name: str) -> bytes:
    """Rewrite a DICOM file in the transfer syntax ``name`` (a key of ``EXPORT_SYNTAXES``).

    The SOPInstanceUID is kept (``generate_instance_uid=False``): a lossless change of encoding
    is the same instance, and a viewer or PACS must see it as such. The result is read back and
    its ``pixel_array`` compared with the source's, so an encoder that changed a value is caught
    here rather than in a clinic.

    Raises
    ------
    FormatError
        If pydicom has no decoder for the source or no encoder for the target, the pixel data
        does not suit the target (e.g. JPEG-LS with junk bits above BitsStored), or the
        exported pixels differ.
    """
    pydicom = import_optional("pydicom", "dicom")
    target = EXPORT_SYNTAXES[name]
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        source = str(ds.file_meta.TransferSyntaxUID)
        if source == target:
            return data
        expected = ds.pixel_array.copy() if "PixelData" in ds else None
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress(generate_instance_uid=False)
        elif source == _BIG_ENDIAN:
            _to_little_endian(ds)
        if name == "explicit":
            ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(target)
        else:
            ds.compress(target, generate_instance_uid=False)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out = buffer.getvalue()
        back = pydicom.dcmread(io.BytesIO(out))
        same = expected is None or np.array_equal(back.pixel_array, expected)
    except Exception as exc:  # pydicom and its plugins raise many types
        msg = f"cannot export to {uid_name(target)}: {exc}"
        raise FormatError(msg) from exc
    if not same or back.get("SOPInstanceUID") != ds.get("SOPInstanceUID"):
        msg = f"export to {uid_name(target)} changed the pixel values or the SOPInstanceUID"
        raise FormatError(msg)
    return out
