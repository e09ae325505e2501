"""DICOM adapter (pydicom): the file is split at the Pixel Data value into head, stored words
and tail, so restore is byte-identical; encapsulated (compressed) sources are refused by ``load``.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, read_bytes, write_atomic

__all__ = ["EncapsulatedPixelDataError", "load", "planes", "save", "sniff"]

_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Encapsulated transfer syntaxes imagecodecs decodes frame by frame (pydicom 3.0.2 needs gdcm or
# pylibjpeg for these; imagecodecs is already a dependency).
_DECODERS = {
    "1.2.840.10008.1.2.4.57": "ljpeg_decode",
    "1.2.840.10008.1.2.4.70": "ljpeg_decode",
    "1.2.840.10008.1.2.4.80": "jpegls_decode",
    "1.2.840.10008.1.2.4.81": "jpegls_decode",
    "1.2.840.10008.1.2.4.90": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.91": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.201": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.202": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.203": "jpeg2k_decode",
}


class EncapsulatedPixelDataError(FormatError):
    """The Pixel Data is already compressed (JPEG, JPEG-LS, JPEG 2000, RLE, ...).

    Such files cannot be split into stored words without losing the original codestream, so
    callers (``llic-dicom``) catch this and archive the file verbatim instead of recoding it.
    """

    def __init__(self, message: str, *, transfer_syntax: str = ""):
        super().__init__(message)
        self.transfer_syntax = transfer_syntax


def sniff(head: bytes) -> bool:
    """True if ``head`` has the Part 10 preamble marker ``DICM`` at offset 128."""
    return head[128:132] == b"DICM"


def _read(data: bytes, path: str) -> tuple[Any, Any]:
    """Parse the dataset without reading Pixel Data; return ``(dataset, raw pixel element)``."""
    pydicom = import_optional("pydicom", "dicom")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=256, force=not sniff(data))
        raw = ds.get_item(_PIXEL_DATA, keep_deferred=True) if _PIXEL_DATA in ds else None
        sop = str(ds.get("SOPClassUID", "unknown"))
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct/ValueError
        msg = f"{path}: not a readable DICOM file: {exc}"
        raise FormatError(msg) from exc
    if raw is None:
        msg = f"{path}: DICOM has no Pixel Data (7FE0,0010); SOP class {sop} is not an image"
        raise FormatError(msg)
    return ds, raw


def _layout(ds: Any, path: str) -> dict[str, Any]:
    """Geometry and word type of the stored pixels, from the Image Pixel module."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        photometric = str(ds.get("PhotometricInterpretation", ""))
        planar = int(ds.get("PlanarConfiguration", 0) or 0)
        syntax = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta else ""
    except (AttributeError, TypeError, ValueError) as exc:
        msg = f"{path}: DICOM Image Pixel module is incomplete: {exc}"
        raise FormatError(msg) from exc
    if bits not in (8, 16):
        msg = f"{path}: BitsAllocated {bits} is not supported (only 8 and 16)"
        raise FormatError(msg)
    if photometric.endswith(("_422", "_420")):
        msg = f"{path}: chroma-subsampled {photometric} pixel data is not supported"
        raise FormatError(msg)
    order = ">" if syntax == _BIG_ENDIAN else "<"
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")
    return {
        "frames": frames,
        "rows": rows,
        "columns": cols,
        "samples": spp,
        "planar": planar,
        "dtype": dtype.str,
        "bits_stored": int(ds.get("BitsStored", bits) or bits),
        "transfer_syntax": syntax,
    }


def _nbytes(layout: dict[str, Any]) -> int:
    n = layout["frames"] * layout["rows"] * layout["columns"] * layout["samples"]
    return n * np.dtype(layout["dtype"]).itemsize


def _words_to_planes(words: np.ndarray, layout: dict[str, Any]) -> np.ndarray:
    """Stored words in file order -> (frames * samples, rows, columns), native byte order."""
    f, r, c, s = layout["frames"], layout["rows"], layout["columns"], layout["samples"]
    if s == 1:
        stack = words.reshape(f, r, c)
    elif layout["planar"] == 0:
        stack = np.moveaxis(words.reshape(f, r, c, s), -1, 1).reshape(f * s, r, c)
    else:
        stack = words.reshape(f * s, r, c)
    return np.ascontiguousarray(stack, dtype=stack.dtype.newbyteorder("="))


def _split(path: str) -> tuple[bytes, bytes, bytes, dict[str, Any]]:
    """Return ``(head, pixel_bytes, tail, layout)`` for a native (uncompressed) DICOM file."""
    data = read_bytes(path)
    ds, raw = _read(data, path)
    layout = _layout(ds, path)
    if raw.length == _UNDEFINED:
        msg = (
            f"{path}: Pixel Data is encapsulated ({layout['transfer_syntax']}); compressed DICOM is "
            "archived verbatim, not recoded (use formats.planes to read its pixels)"
        )
        raise EncapsulatedPixelDataError(msg, transfer_syntax=layout["transfer_syntax"])
    start, need = raw.value_tell, _nbytes(layout)
    if start + raw.length > len(data):
        msg = f"{path}: file is truncated: Pixel Data needs {raw.length} bytes at offset {start}, file has {len(data) - start}"
        raise FormatError(msg)
    if raw.length < need:
        msg = f"{path}: Pixel Data has {raw.length} bytes but Rows/Columns/Frames/Samples/BitsAllocated need {need}"
        raise FormatError(msg)
    return data[:start], data[start : start + need], data[start + need :], layout


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read the stored words: (H, W), (frames, H, W), or (frames * samples, H, W) for colour.

    No modality LUT, no unused-bit masking: bits above BitsStored travel as they are.
    """
    head, pixels, tail, layout = _split(os.fspath(path))
    stack = _words_to_planes(np.frombuffer(pixels, layout["dtype"]), layout)
    array = stack[0] if stack.shape[0] == 1 else stack
    return Loaded(
        array, pack("dicom", {"layout": layout}, {"head": head, "tail": tail}), "dicom", "bytes"
    )


def save(
    path: str | os.PathLike[str], array: np.ndarray, info: dict[str, Any], blobs: dict[str, bytes]
) -> None:
    """Write head + stored words (re-interleaved to the original planar configuration) + tail."""
    layout = info["layout"]
    f, r, c, s = layout["frames"], layout["rows"], layout["columns"], layout["samples"]
    arr = np.asarray(array)
    if arr.size != f * r * c * s:
        msg = f"array has {arr.size} values; the DICOM layout needs {f}x{s}x{r}x{c}"
        raise FormatError(msg)
    stack = arr.reshape(f, s, r, c)
    if s > 1 and layout["planar"] == 0:
        stack = np.moveaxis(stack, 1, -1)
    pixels = np.ascontiguousarray(stack).astype(layout["dtype"]).tobytes()
    write_atomic(path, [blobs["head"], pixels, blobs["tail"]])


def _decode_encapsulated(ds: Any, layout: dict[str, Any], path: str) -> np.ndarray:
    """Stored values of a compressed source as (frames * samples, H, W)."""
    pydicom = import_optional("pydicom", "dicom")
    name = _DECODERS.get(layout["transfer_syntax"])
    try:
        if name is None:  # RLE and others that pydicom decodes itself
            arr = pydicom.pixels.pixel_array(ds, raw=True, correct_unused_bits=False)
            frames = list(
                arr.reshape(layout["frames"], *arr.shape[-3 if layout["samples"] > 1 else -2 :])
            )
        else:
            codecs = import_optional("imagecodecs", "bench")
            gen = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=layout["frames"])
            frames = [getattr(codecs, name)(frame) for frame in gen]
    except Exception as exc:  # decoder plugins raise many types
        msg = f"{path}: cannot decode {layout['transfer_syntax']} pixel data: {exc}"
        raise FormatError(msg) from exc
    dtype = np.dtype(layout["dtype"]).newbyteorder("=")
    out = []
    for frame in frames:
        planes_ = np.moveaxis(frame, -1, 0) if frame.ndim == 3 else frame[None]
        if dtype.kind == "i" and planes_.dtype.kind == "u":
            # Codecs hand back BitsStored-bit two's complement as unsigned: sign-extend.
            bs = layout["bits_stored"]
            wide = planes_.astype(np.int32)
            planes_ = np.where(wide >= 1 << (bs - 1), wide - (1 << bs), wide)
        out.append(planes_.astype(dtype))
    return np.concatenate(out)


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Stored-value planes ``f<frame>`` (gray) or ``f<frame>/s<sample>`` (colour), compressed or not."""
    p = os.fspath(path)
    try:
        _, pixels, _, layout = _split(p)
        stack = _words_to_planes(np.frombuffer(pixels, layout["dtype"]), layout)
    except EncapsulatedPixelDataError:
        ds, _ = _read(read_bytes(p), p)
        layout = _layout(ds, p)
        stack = _decode_encapsulated(ds, layout, p)
    s = layout["samples"]
    if s == 1:
        return [(f"f{i}", stack[i]) for i in range(stack.shape[0])]
    return [(f"f{i // s}/s{i % s}", stack[i]) for i in range(stack.shape[0])]
