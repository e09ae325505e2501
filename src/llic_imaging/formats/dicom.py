"""DICOM adapter (pydicom): the file is split at the Pixel Data value into head, stored words
and tail, so restore is byte-identical; encapsulated (compressed) sources are refused by ``load``
and taken by ``load_encapsulated`` only when their fragments can be rebuilt byte for byte.
"""

from __future__ import annotations

import io
import os
import struct
from importlib.metadata import version
from typing import Any

import numpy as np

from llic_imaging._fileio import write_atomic
from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, read_bytes

__all__ = [
    "EncapsulatedPixelDataError",
    "NoPixelDataError",
    "load",
    "load_encapsulated",
    "planes",
    "save",
    "sniff",
]

_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
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
# Encapsulated transfer syntaxes ``load_encapsulated`` can re-encode, and the distribution whose
# encoder it uses: pydicom's own RLE, CharLS through pyjpegls, libjpeg-turbo through imagecodecs.
_RECODERS = {
    "1.2.840.10008.1.2.5": "pydicom",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.57": "imagecodecs",
    "1.2.840.10008.1.2.4.70": "imagecodecs",
}
_ITEM, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)


class EncapsulatedPixelDataError(FormatError):
    """The Pixel Data is already compressed (JPEG, JPEG-LS, JPEG 2000, RLE, ..., or inside a
    deflated dataset).

    Such files cannot be split into stored words without losing the original codestream, so
    callers (``llic-dicom``) catch this and archive the file verbatim, or recode it with
    :func:`load_encapsulated` where that rebuilds the original bytes.
    """

    def __init__(self, message: str, *, transfer_syntax: str = ""):
        super().__init__(message)
        self.transfer_syntax = transfer_syntax


class NoPixelDataError(FormatError):
    """A DICOM instance without Pixel Data (SR, KO, PR, RT plan): nothing to code.

    Callers that must keep a whole study (``llic-dicom``) catch this and store the file verbatim;
    ``sop_class`` is the instance's SOP Class UID.
    """

    def __init__(self, message: str, *, sop_class: str):
        super().__init__(message)
        self.sop_class = sop_class


def sniff(head: bytes) -> bool:
    """True if ``head`` has the Part 10 preamble marker ``DICM`` at offset 128."""
    return head[128:132] == b"DICM"


def _read(data: bytes, path: str) -> tuple[Any, Any]:
    """Parse the dataset without reading Pixel Data; return ``(dataset, raw pixel element)``."""
    pydicom = import_optional("pydicom", "dicom")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=256, force=not sniff(data))
        raw = ds.get_item(_PIXEL_DATA, keep_deferred=True) if _PIXEL_DATA in ds else None
        sop = ds.get("SOPClassUID")
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct/ValueError
        msg = f"{path}: not a readable DICOM file: {exc}"
        raise FormatError(msg) from exc
    if raw is None:
        msg = f"{path}: DICOM has no Pixel Data (7FE0,0010); SOP class {sop or 'unknown'} is not an image"
        # Without a SOP class it is no DICOM instance at all (e.g. a forced read of garbage).
        raise NoPixelDataError(msg, sop_class=str(sop)) if sop else FormatError(msg)
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
    if layout["transfer_syntax"] == _DEFLATED:
        msg = (
            f"{path}: the Deflated Explicit VR Little Endian transfer syntax ({_DEFLATED}) is not "
            "supported: everything after the file meta information is zlib-compressed, so the "
            "Pixel Data cannot be split out of the file bytes"
        )
        raise EncapsulatedPixelDataError(msg, transfer_syntax=_DEFLATED)
    if raw.length == _UNDEFINED:
        msg = (
            f"{path}: Pixel Data is encapsulated ({layout['transfer_syntax']}); load_encapsulated "
            "recodes it where the original bytes can be rebuilt, formats.planes reads its pixels"
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
    """Write head + stored words (re-interleaved to the original planar configuration) + tail,
    or, for a :func:`load_encapsulated` envelope, the skeleton with every frame re-encoded."""
    layout = info["layout"]
    f, r, c, s = layout["frames"], layout["rows"], layout["columns"], layout["samples"]
    arr = np.asarray(array)
    if arr.size != f * r * c * s:
        msg = f"array has {arr.size} values; the DICOM layout needs {f}x{s}x{r}x{c}"
        raise FormatError(msg)
    if "encapsulated" in info:
        write_atomic(path, _splice(arr.reshape(f * s, r, c), info, blobs["skeleton"]))
        return
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


def _frame_fragments(
    data: bytes, start: int, frames: int, path: str
) -> list[list[tuple[int, int]]]:
    """``(offset, length)`` in the file of each frame's fragments, from the Pixel Data items.

    The first item is the Basic Offset Table. One frame owns every fragment; several frames
    must have one fragment each (other layouts are refused rather than guessed).
    """
    items: list[tuple[int, int]] = []
    pos = start
    while True:
        if pos + 8 > len(data):
            msg = f"{path}: encapsulated Pixel Data is truncated"
            raise FormatError(msg)
        group, element, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if (group, element) == _SEQUENCE_END:
            break
        if (group, element) != _ITEM or pos + length > len(data):
            msg = f"{path}: encapsulated Pixel Data has a bad item at offset {pos - 8}"
            raise FormatError(msg)
        items.append((pos, length))
        pos += length
    fragments = items[1:]
    if frames == 1 and fragments:
        return [fragments]
    if len(fragments) == frames:
        return [[fragment] for fragment in fragments]
    msg = f"{path}: {len(fragments)} fragments for {frames} frames; only one fragment per frame is rebuilt"
    raise FormatError(msg)


def _jpeg_header(codestream: bytes) -> tuple[int, int, int]:
    """``(P, Ss, Se)`` of a lossless JPEG or JPEG-LS codestream: the sample precision from the
    frame header; from the scan header the predictor (JPEG) or NEAR and ILV (JPEG-LS)."""
    precision, pos = None, 2
    while pos + 4 <= len(codestream) and codestream[pos] == 0xFF:
        marker = codestream[pos + 1]
        (length,) = struct.unpack_from(">H", codestream, pos + 2)
        segment = codestream[pos + 4 : pos + 2 + length]
        if marker in (0xC3, 0xF7):  # SOF3 (lossless JPEG), SOF55 (JPEG-LS)
            precision = segment[0]
        elif marker == 0xDA and precision is not None:  # SOS: Ns, Ns component specs, Ss, Se
            ns = segment[0]
            return precision, segment[1 + 2 * ns], segment[2 + 2 * ns]
        pos += 2 + length
    msg = "no lossless frame and scan header before the entropy-coded data"
    raise FormatError(msg)


def _params(encoder: str, ds: Any, codestream: bytes) -> dict[str, Any]:
    """What the encoder needs besides the pixels, read from the dataset or the first codestream."""
    if encoder == "pydicom":
        return {"photometric": str(ds.get("PhotometricInterpretation", ""))}
    precision, ss, se = _jpeg_header(codestream)
    return {"precision": precision, "ss": ss, "se": se}


def _encode_frame(planes: np.ndarray, recipe: dict[str, Any]) -> bytes:
    """One frame's codestream from its (samples, H, W) stored values, with ``recipe``'s encoder."""
    encoder, params = recipe["encoder"], recipe["params"]
    samples, rows, columns = planes.shape
    if encoder == "pydicom":
        pydicom = import_optional("pydicom", "dicom")
        bits = planes.dtype.itemsize * 8  # RLE codes whole bytes: BitsStored changes nothing
        pixels = planes[0] if samples == 1 else np.moveaxis(planes, 0, -1)
        rle = pydicom.pixels.get_encoder(pydicom.uid.RLELossless)
        return bytes(
            rle.encode(
                pixels,
                encoding_plugin="pydicom",
                rows=rows,
                columns=columns,
                samples_per_pixel=samples,
                bits_allocated=bits,
                bits_stored=bits,
                pixel_representation=int(planes.dtype.kind == "i"),
                photometric_interpretation=params["photometric"],
                planar_configuration=0,
                number_of_frames=1,
            )
        )
    # The JPEG codestreams hold unsigned P-bit samples; signed values as P-bit two's complement.
    precision = params["precision"]
    words = (planes.astype(np.int32) & ((1 << precision) - 1)).astype(
        "<u2" if precision > 8 else "u1"
    )
    if encoder == "pyjpegls":  # ILV 0: by plane, 1: by line, 2: by pixel
        jpeg_ls = import_optional("jpeg_ls", "bench")
        ilv = params["se"]
        src = words.transpose({0: (0, 1, 2), 1: (1, 0, 2), 2: (1, 2, 0)}[ilv]).tobytes()
        return bytes(
            jpeg_ls.encode_buffer(src, rows, columns, samples, precision, params["ss"], ilv)
        )
    codecs = import_optional("imagecodecs", None)
    pixels = words[0] if samples == 1 else np.moveaxis(words, 0, -1)
    return bytes(
        codecs.jpeg8_encode(pixels, lossless=True, predictor=params["ss"], bitspersample=precision)
    )


def load_encapsulated(path: str | os.PathLike[str]) -> Loaded:
    """Decode a compressed source for transcoding, only if :func:`save` rebuilds it byte for byte.

    The array holds the decoded stored values (as :func:`planes` has them). The envelope keeps
    the *skeleton* (the file minus each frame's codestream: head, item tags, offset table,
    fragment padding, tail) and the encoder settings read from the first codestream. Every frame
    is re-encoded from the array here and must give back its original codestream exactly, so
    files from other encoders (another RLE or JPEG-LS implementation, SPIFF or comment markers,
    JPEG 2000, lossy JPEG) are refused. ``save`` re-encodes with the installed encoder, which
    must produce the bytes of the one the envelope names.

    Raises
    ------
    FormatError
        Saying why: Pixel Data not encapsulated, no encoder here for the transfer syntax,
        fragments not one per frame, a decoder or encoder error, or a frame that re-encodes
        to other bytes.
    """
    p = os.fspath(path)
    data = read_bytes(p)
    ds, raw = _read(data, p)
    layout = _layout(ds, p)
    syntax = layout["transfer_syntax"]
    name = import_optional("pydicom", "dicom").uid.UID(syntax).name or syntax
    if raw.length != _UNDEFINED:
        msg = f"{p}: Pixel Data is not encapsulated"
        raise FormatError(msg)
    if syntax not in _RECODERS:
        msg = f"{p}: no encoder here rebuilds {name} fragments byte for byte"
        raise FormatError(msg)
    frames = _frame_fragments(data, raw.value_tell, layout["frames"], p)
    stack = _decode_encapsulated(ds, layout, p)
    s = layout["samples"]
    recipe: dict[str, Any] = {"encoder": _RECODERS[syntax]}
    skeleton: list[bytes] = []
    spans: list[list[tuple[int, int]]] = []
    pos = size = 0
    for k, fragments in enumerate(frames):
        original = b"".join(data[o : o + n] for o, n in fragments)
        try:
            if k == 0:
                recipe["params"] = _params(recipe["encoder"], ds, original)
            codestream = _encode_frame(stack[k * s : (k + 1) * s], recipe)
        except Exception as exc:  # header parsing and encoder plugins raise many types
            msg = f"{p}: cannot re-encode {name} frame {k}: {exc}"
            raise FormatError(msg) from exc
        if k == 0:  # the encoder is installed: name its version
            recipe["version"] = version(recipe["encoder"])
        # An odd-length codestream is padded to an even fragment; the pad stays in the skeleton.
        if not original.startswith(codestream) or len(original) - len(codestream) > 1:
            msg = (
                f"{p}: cannot rebuild the original {name} fragments byte for byte: "
                f"{recipe['encoder']} {recipe['version']} encodes frame {k} differently"
            )
            raise FormatError(msg)
        left, frame_spans = len(codestream), []
        for offset, n in fragments:
            take = min(n, left)
            skeleton.append(data[pos:offset])
            size += offset - pos
            frame_spans.append((size, take))
            pos, left = offset + take, left - take
        spans.append(frame_spans)
    skeleton.append(data[pos:])
    recipe["spans"] = spans
    array = stack[0] if stack.shape[0] == 1 else stack
    info = {"layout": layout, "encapsulated": recipe}
    return Loaded(array, pack("dicom", info, {"skeleton": b"".join(skeleton)}), "dicom", "bytes")


def _splice(stack: np.ndarray, info: dict[str, Any], skeleton: bytes) -> list[bytes]:
    """The file of a :func:`load_encapsulated` envelope: each frame re-encoded into its spans."""
    recipe, s = info["encapsulated"], info["layout"]["samples"]
    parts, pos = [], 0
    for k, spans in enumerate(recipe["spans"]):
        codestream = _encode_frame(stack[k * s : (k + 1) * s], recipe)
        if len(codestream) != sum(n for _, n in spans):
            msg = (
                f"re-encoding frame {k} gave {len(codestream)} bytes, not the original "
                f"{sum(n for _, n in spans)}; it was transcoded with "
                f"{recipe['encoder']} {recipe['version']}: restore it with that version"
            )
            raise FormatError(msg)
        for offset, n in spans:
            parts += [skeleton[pos:offset], codestream[:n]]
            codestream, pos = codestream[n:], offset
    parts.append(skeleton[pos:])
    return parts


def extensions(info: dict[str, Any], blobs: dict[str, bytes]) -> tuple[str, ...]:
    """Any name: DICOM files are often named ``IM0001`` or by UID, and readers sniff ``DICM``."""
    return ()


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
