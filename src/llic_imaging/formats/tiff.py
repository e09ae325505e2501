"""Plain TIFF adapter (tifffile): uncompressed strips restore byte-identically from the file
skeleton; compressed or tiled sources are rewritten with the same tags and compression.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from llic_imaging._fileio import atomic_path, write_atomic
from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, read_bytes, reading
from llic_imaging.planes import SUPPORTED_DTYPES

__all__ = [
    "GEO_TAGS",
    "check_exact",
    "first_page_tags",
    "load",
    "open_tiff",
    "planes",
    "save",
    "skeleton",
    "sniff",
    "splice",
]

GEO_TAGS = frozenset({33550, 33922, 34264, 34735, 50844})  # GeoTIFF keys, tie points, RPCs
_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Tags that tifffile derives from its write() arguments; everything else is copied verbatim.
_STRUCTURAL = frozenset(
    {254, 256, 257, 258, 259, 262, 273, 277, 278, 279, 282, 283, 284, 296, 305, 317, 320}
    | {322, 323, 324, 325, 338, 339, 347, 530, 50674}  # 50674: LercParameters
)
_POINTERS = frozenset({330, 34665, 34853, 40965})  # SubIFDs / EXIF / GPS: offsets, not values
# Compressions that always give back every stored value: none, LZW, Adobe deflate, PackBits,
# deflate, LZMA, zstd (two codes). JPEG, WebP, JPEG XL, JPEG 2000, ... are or can be lossy.
_LOSSLESS = frozenset({1, 5, 8, 32773, 32946, 34925, 34926, 50000})
_LERC = 34887
_LERC_PARAMETERS = 50674  # (version, extra compression: 0 none, 1 deflate, 2 zstd)
_LERC_LOSSLESS = 0.5  # LERC stores integers with MaxZError 0.5 when asked for 0 (lossless)


def sniff(head: bytes) -> bool:
    """True if ``head`` starts with a classic or BigTIFF header."""
    return head[:4] in _MAGICS


@contextmanager
def open_tiff(path: str) -> Iterator[Any]:
    """The open file; tifffile's errors in the block are FormatErrors (:func:`reading`)."""
    tifffile = import_optional("tifffile", None)
    with reading(path, "TIFF"), tifffile.TiffFile(path) as tif:
        yield tif


def _page_planes(page: Any, path: str) -> np.ndarray:
    """Decode one page as (S, H, W) stored values."""
    try:
        arr = page.asarray()
    except Exception as exc:
        msg = f"{path}: page {page.index} cannot be decoded: {exc}"
        raise FormatError(msg) from exc
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and page.planarconfig == 1:
        return np.moveaxis(arr, -1, 0)
    if arr.ndim == 3:
        return arr
    msg = f"{path}: page {page.index} has shape {arr.shape}; only 2D gray or multi-sample pages are supported"
    raise FormatError(msg)


_DESCRIPTION = 270  # ImageDescription


def _tag_value(tag: Any) -> list[Any]:
    """JSON form of a tag value: ``[kind, payload]`` that :func:`_extratag` turns back."""
    value = tag.value
    if isinstance(value, bytes):
        return ["b", value.hex()]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, tuple | list):
        return ["n", [float(v) if isinstance(v, float) else int(v) for v in value]]
    return ["n", [float(value) if isinstance(value, float) else int(value)]]


def _extratag(code: int, dtype: int, count: int, value: list[Any]) -> tuple[Any, ...]:
    kind, payload = value
    if kind == "b":
        return (code, dtype, count, bytes.fromhex(payload), True)
    if kind == "s":
        return (code, dtype, 0, payload, True)
    return (code, dtype, count, payload, True)


def _page_info(page: Any) -> dict[str, Any]:
    """What tifffile needs to write an equivalent page (pixels+metadata path)."""
    tags = page.tags
    info: dict[str, Any] = {
        "photometric": int(page.photometric),
        "planarconfig": int(page.planarconfig),
        "compression": int(page.compression),
        "predictor": int(page.predictor),
        "subfiletype": int(tags[254].value) if 254 in tags else None,
        "software": tags[305].value if 305 in tags else False,
        "extrasamples": [int(v) for v in page.extrasamples] or None,
        "tile": [int(page.tilelength), int(page.tilewidth)] if page.is_tiled else None,
        "rowsperstrip": None if page.is_tiled else int(page.rowsperstrip),
        "resolution": None,
        "tags": [],
    }
    if 282 in tags and 283 in tags:
        info["resolution"] = [list(tags[282].value), list(tags[283].value)]
        info["resolutionunit"] = int(tags[296].value) if 296 in tags else 2
    for tag in tags.values():
        if tag.code not in _STRUCTURAL | _POINTERS:
            info["tags"].append([tag.code, int(tag.dtype), int(tag.count), _tag_value(tag)])
    if 320 in tags:
        info["colormap"] = np.asarray(tags[320].value).tolist()
    return info


def _segments(tif: Any, size: int) -> list[list[int]] | None:
    """Pixel segments ``[offset, length]`` in array order, or None if a skeleton cannot work."""
    segs = []
    for page in tif.pages:
        expected = int(np.prod(page.shape)) * page.dtype.itemsize
        if (
            page.compression != 1
            or page.is_tiled
            or page.bitspersample != page.dtype.itemsize * 8
            or sum(page.databytecounts) != expected
        ):
            return None
        segs.extend(
            [int(o), int(n)] for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)
        )
    end = 0
    for off, n in sorted(segs):
        if off < end or off + n > size:
            return None
        end = off + n
    return segs


def _layout(tif: Any) -> dict[str, Any]:
    first = tif.pages.first
    return {
        "pages": len(tif.pages),
        "samples": int(first.samplesperpixel),
        "planarconfig": int(first.planarconfig),
        "dtype": first.dtype.newbyteorder(tif.byteorder).str,
    }


def skeleton(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes] | None:
    """``(info, skeleton bytes)`` when every page is uncompressed strips of one shape, else None.

    The skeleton is the file minus its pixel segments, so splicing stored values back into it
    rebuilds the file byte for byte. The GeoTIFF adapter uses this for uncompressed rasters.
    """
    p = os.fspath(path)
    with open_tiff(p) as tif:
        pages = list(tif.pages)
        if not pages or any(
            pg.shape != pages[0].shape or pg.dtype != pages[0].dtype for pg in pages
        ):
            return None
        data = read_bytes(p)
        segs = _segments(tif, len(data))
        if segs is None:
            return None
        return {"layout": _layout(tif), "segments": segs}, b"".join(_gaps(data, segs))


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read every page as planes: (H, W) for one gray page, else (pages * samples, H, W)."""
    p = os.fspath(path)
    with open_tiff(p) as tif:
        pages = list(tif.pages)
        if not pages:
            msg = f"{p}: TIFF has no pages"
            raise FormatError(msg)
        first = pages[0]
        for page in pages:
            if page.shape != first.shape or page.dtype != first.dtype:
                msg = (
                    f"{p}: page {page.index} has shape {page.shape} {page.dtype}, page 0 has "
                    f"{first.shape} {first.dtype}; pyramids and mixed pages are not supported"
                )
                raise FormatError(msg)
        if first.dtype is None or first.dtype.name not in SUPPORTED_DTYPES:
            msg = f"{p}: TIFF sample type {first.dtype} is not one of {', '.join(SUPPORTED_DTYPES)}"
            raise FormatError(msg)
        for page in pages:
            check_exact(page, p)
        stack = np.concatenate([_page_planes(page, p) for page in pages])
        rewrite = {
            "layout": _layout(tif),
            "bigtiff": bool(tif.is_bigtiff),
            "byteorder": tif.byteorder,
            "pages": [_page_info(page) for page in pages],
        }
    found = skeleton(p)
    if found is not None:
        meta, exact = pack("tiff", found[0], {"skeleton": found[1]}), "bytes"
    else:
        meta, exact = pack("tiff", rewrite), "pixels+metadata"
    array = stack[0] if stack.shape[0] == 1 else stack
    return Loaded(np.ascontiguousarray(array), meta, "tiff", exact)


def check_exact(page: Any, path: str) -> None:
    """Refuse a page whose stored values a restore could not give back bit for bit.

    The restore writes whole 8/16-bit samples and re-encodes with the source's compression, so
    packed samples would come back widened and a lossy codec would change the pixels again.
    """
    _refuse_packed(page, path)
    _refuse_lossy(page, path)


def _refuse_packed(page: Any, path: str) -> None:
    bits, width = int(page.bitspersample), page.dtype.itemsize * 8
    if bits != width:
        msg = (
            f"{path}: page {page.index} has packed {bits}-bit samples; they would be restored "
            f"as {width}-bit, so packed bit depths are not supported"
        )
        raise FormatError(msg)


def _refuse_lossy(page: Any, path: str) -> None:
    code = int(page.compression)
    if code in _LOSSLESS:
        return
    name = getattr(page.compression, "name", str(code))
    if code != _LERC:
        msg = (
            f"{path}: the source is lossy or may be: page {page.index} is {name}-compressed, "
            "and a restore would re-encode the pixels with it; only lossless compressions "
            "(none, LZW, deflate, PackBits, LZMA, zstd, LERC with MaxZError 0) are supported"
        )
        raise FormatError(msg)
    error = _lerc_max_error(page)
    if error > _LERC_LOSSLESS:
        msg = (
            f"{path}: the source is lossy: page {page.index} is LERC-compressed with MaxZError "
            f"{error}; only LERC with MaxZError 0 is supported"
        )
        raise FormatError(msg)


def _lerc_max_error(page: Any) -> float:
    """The largest MaxZError in the headers of the page's LERC segments."""
    extra = page.tags.valueof(_LERC_PARAMETERS, (4, 0))[1]
    worst = 0.0
    for blob, _ in page.parent.filehandle.read_segments(page.dataoffsets, page.databytecounts):
        if not blob:  # a sparse tile
            continue
        if extra == 1:
            blob = zlib.decompressobj().decompress(blob, 128)
        elif extra == 2:
            blob = import_optional("imagecodecs", None).zstd_decode(blob)
        worst = max(worst, _lerc_header_error(blob))
    return worst


def _lerc_header_error(blob: bytes) -> float:
    """MaxZError of a Lerc2 blob, read at its place in the header for each Lerc2 version."""
    (version,) = struct.unpack_from("<i", blob, 6) if blob.startswith(b"Lerc2 ") else (0,)
    if not 2 <= version <= 6:  # a data problem; reading() names the file
        msg = f"LERC segment is not a Lerc2 blob of a known version (2-6): {blob[:10]!r}"
        raise ValueError(msg)
    ints = 8 if version >= 6 else 7 if version >= 4 else 6  # v4: nDepth; v6: nBlobsMore
    pos = 10 + 4 * (version >= 3) + 4 * ints + 4 * (version >= 6)  # checksum; v6: 4 flag bytes
    return struct.unpack_from("<d", blob, pos)[0]


def _gaps(data: bytes, segs: list[list[int]]) -> list[bytes]:
    """The file bytes between pixel segments (the skeleton), in file order."""
    out, pos = [], 0
    for off, n in sorted(segs):
        out.append(data[pos:off])
        pos = off + n
    out.append(data[pos:])
    return out


def _page_bytes(stack: np.ndarray, layout: dict[str, Any]) -> list[bytes]:
    """Pixel bytes of each page in storage order (contiguous samples are interleaved)."""
    dtype = np.dtype(layout["dtype"])
    pages = stack.reshape(layout["pages"], layout["samples"], *stack.shape[-2:])
    out = []
    for planes_ in pages:
        if layout["samples"] > 1 and layout["planarconfig"] == 1:
            out.append(np.moveaxis(planes_, 0, -1).astype(dtype).tobytes())
        else:
            out.append(planes_.astype(dtype).tobytes())
    return out


def save(
    path: str | os.PathLike[str],
    array: np.ndarray,
    info: dict[str, Any],
    blobs: dict[str, bytes],
    **options: Any,
) -> None:
    """Rebuild the TIFF: splice pixels into the skeleton, or rewrite pages with tifffile.

    ``options`` (for example ``compression="zstd"``) override the per-page write arguments and
    force a rewrite, so the bytes then differ from the original by design.
    """
    layout = info["layout"]
    stack = np.asarray(array).reshape(-1, *np.shape(array)[-2:])
    if stack.shape[0] != layout["pages"] * layout["samples"]:
        msg = f"array has {stack.shape[0]} planes; the TIFF layout needs {layout['pages'] * layout['samples']}"
        raise FormatError(msg)
    if "segments" in info and not options:
        splice(path, stack, info, blobs["skeleton"])
        return
    if "segments" in info:
        msg = "options need a rewritable TIFF; this one was loaded as a byte-exact skeleton"
        raise FormatError(msg)
    _rewrite(path, stack, info, options)


def splice(
    path: str | os.PathLike[str], stack: np.ndarray, info: dict[str, Any], skeleton: bytes
) -> None:
    """Write ``skeleton`` with the pixel bytes of ``stack`` put back at their segment offsets."""
    pixels = b"".join(_page_bytes(stack, info["layout"]))
    write_atomic(path, _spliced(skeleton, pixels, info["segments"]))


def _spliced(skeleton: bytes, pixels: bytes, segs: list[list[int]]) -> list[bytes]:
    """Put each segment's slice of ``pixels`` back at its file offset."""
    starts, pos = [], 0
    for _, n in segs:
        starts.append(pos)
        pos += n
    if pos != len(pixels):
        msg = f"pixel bytes ({len(pixels)}) do not fill the TIFF segments ({pos})"
        raise FormatError(msg)
    out, file_pos, skel_pos = [], 0, 0
    for (off, n), start in sorted(zip(segs, starts, strict=True)):
        gap = off - file_pos
        out += [skeleton[skel_pos : skel_pos + gap], pixels[start : start + n]]
        skel_pos += gap
        file_pos = off + n
    out.append(skeleton[skel_pos:])
    return out


def _rewrite(
    path: str | os.PathLike[str], stack: np.ndarray, info: dict[str, Any], options: dict[str, Any]
) -> None:
    tifffile = import_optional("tifffile", None)
    layout = info["layout"]
    dtype = np.dtype(layout["dtype"]).newbyteorder("=")
    pages = stack.reshape(layout["pages"], layout["samples"], *stack.shape[-2:]).astype(dtype)
    with (
        atomic_path(path) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=info["bigtiff"], byteorder=info["byteorder"]) as tw,
    ):
        for planes_, page in zip(pages, info["pages"], strict=True):
            contig = layout["samples"] > 1 and page["planarconfig"] == 1
            data = (
                np.moveaxis(planes_, 0, -1)
                if contig
                else (planes_ if layout["samples"] > 1 else planes_[0])
            )
            kwargs: dict[str, Any] = {
                "photometric": page["photometric"],
                "planarconfig": page["planarconfig"] if layout["samples"] > 1 else None,
                "compression": page["compression"],
                "predictor": page["predictor"] if page["predictor"] > 1 else None,
                "subfiletype": page["subfiletype"],
                "software": page["software"],
                "extrasamples": page["extrasamples"],
                "tile": page["tile"],
                "rowsperstrip": page["rowsperstrip"],
                "colormap": np.asarray(page["colormap"], np.uint16) if "colormap" in page else None,
                "metadata": None,
                "extratags": [_extratag(*t) for t in page["tags"] if t[0] != _DESCRIPTION],
            }
            # tifffile refuses ImageDescription as an extra tag (OME-XML, ImageJ headers)
            for _, _, _, (kind, value) in (t for t in page["tags"] if t[0] == _DESCRIPTION):
                kwargs["description"] = value if kind == "s" else bytes.fromhex(value)
            if page["resolution"] is not None:
                kwargs["resolution"] = tuple(tuple(r) for r in page["resolution"])
                kwargs["resolutionunit"] = page["resolutionunit"]
            kwargs.update(options)
            tw.write(data, **kwargs)


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Planes ``p<page>`` (one sample) or ``p<page>/s<sample>``."""
    p = os.fspath(path)
    out = []
    with open_tiff(p) as tif:
        for page in tif.pages:
            page_planes = _page_planes(page, p)
            if page_planes.dtype.name not in SUPPORTED_DTYPES:
                msg = f"{p}: TIFF sample type {page_planes.dtype} is not one of {', '.join(SUPPORTED_DTYPES)}"
                raise FormatError(msg)
            if page_planes.shape[0] == 1:
                out.append((f"p{page.index}", page_planes[0]))
            else:
                out.extend((f"p{page.index}/s{i}", pl) for i, pl in enumerate(page_planes))
    return out


def first_page_tags(path: str | os.PathLike[str]) -> set[int]:
    """Tag codes of the first page, for telling GeoTIFF from plain TIFF without GDAL."""
    p = os.fspath(path)
    with open_tiff(p) as tif:
        return set(tif.pages.first.tags.keys()) if len(tif.pages) else set()
