"""MetaImage (.mha/.mhd) and NRRD adapter: an uncompressed single file is split into text header
and raw voxels (byte-identical restore); other layouts go through SimpleITK (pixels+metadata).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from llic_imaging._fileio import atomic_path, write_atomic
from llic_imaging.errors import FormatError
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, read_bytes, unpack
from llic_imaging.planes import SUPPORTED_DTYPES

__all__ = ["data_files", "extensions", "load", "planes", "save", "sniff"]

_META_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2"}
_NRRD_TYPES = {
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(
        ("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"
    ),
}
_HEADER_LIMIT = 1 << 16
_DETACHED = re.compile(rb"^(ElementDataFile *= *(?!LOCAL\b)\S|data ?file *:)", re.M | re.I)
_COMPRESSED = re.compile(
    rb"^(CompressedData *= *True|encoding: *(gz|gzip|bz2|bzip2)) *\r?$", re.M | re.I
)
_METAIMAGE, _NRRD = (".mha", ".mhd"), (".nrrd", ".nhdr")
# SimpleITK's data file beside a detached header, uncompressed and compressed: b.mhd -> b.zraw.
_DATA_FILES = {".mhd": (".raw", ".zraw"), ".nhdr": (".raw", ".raw.gz")}


def sniff(head: bytes) -> bool:
    """True for an NRRD magic or a MetaImage text header."""
    return head.startswith((b"NRRD", b"ObjectType", b"NDims"))


def _split_raw(data: bytes) -> tuple[int, dict[str, Any]] | None:
    """``(data offset, layout)`` for an uncompressed single-file MHA/NRRD, else None."""
    if data.startswith(b"NRRD"):
        end = data.find(b"\n\n", 0, _HEADER_LIMIT)
        if end < 0:
            return None
        fields = dict(
            line.split(":", 1)
            for line in data[:end].decode("latin1").splitlines()[1:]
            if ":" in line and not line.startswith("#")
        )
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        if fields.get("encoding") != "raw" or "data file" in fields or "datafile" in fields:
            return None
        code = _NRRD_TYPES.get(fields.get("type", ""))
        sizes = [int(s) for s in fields.get("sizes", "").split()]
        order = ">" if fields.get("endian") == "big" else "<"
        offset, channels = end + 2, 1
    else:
        match = re.search(rb"^ElementDataFile *= *LOCAL *\r?\n", data[:_HEADER_LIMIT], re.MULTILINE)
        if match is None:
            return None
        text = data[: match.start()].decode("latin1")
        fields = {
            k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines())
        }
        if fields.get("CompressedData", "False").lower() == "true":
            return None
        code = _META_TYPES.get(fields.get("ElementType", ""))
        sizes = [int(s) for s in fields.get("DimSize", "").split()]
        msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False"))
        order = ">" if msb.lower() == "true" else "<"
        offset, channels = match.end(), int(fields.get("ElementNumberOfChannels", "1"))
    if code is None or len(sizes) < 2:
        return None
    return offset, {"dtype": order + code, "sizes": sizes, "channels": channels}


def _to_planes(values: np.ndarray, sizes: list[int], channels: int) -> np.ndarray:
    """x-fastest voxels (with interleaved channels) -> (slices * channels, y, x)."""
    x, y = sizes[0], sizes[1]
    if channels == 1:
        return values.reshape(-1, y, x)
    return np.moveaxis(values.reshape(-1, y, x, channels), -1, 1).reshape(-1, y, x)


def _from_planes(array: np.ndarray, sizes: list[int], channels: int) -> np.ndarray:
    x, y = sizes[0], sizes[1]
    if channels == 1:
        return array.reshape(-1)
    return np.moveaxis(array.reshape(-1, channels, y, x), 1, -1).reshape(-1)


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read voxels as (y, x) or (slices * channels, y, x) stored values."""
    p = os.fspath(path)
    data = read_bytes(p)
    found = _split_raw(data)
    if found is not None:
        offset, layout = found
        dtype = np.dtype(layout["dtype"])
        count = int(np.prod(layout["sizes"])) * layout["channels"]
        if len(data) < offset + count * dtype.itemsize:
            msg = f"{p}: voxel data is truncated ({len(data) - offset} of {count * dtype.itemsize} bytes)"
            raise FormatError(msg)
        values = np.frombuffer(data, dtype, count, offset).astype(dtype.newbyteorder("="))
        stack = _to_planes(values, layout["sizes"], layout["channels"])
        end = offset + count * dtype.itemsize
        meta = pack("itk", {"raw": layout}, {"head": data[:offset], "tail": data[end:]})
        return Loaded(stack[0] if stack.shape[0] == 1 else stack, meta, "itk", "bytes")
    return _load_sitk(p)


def _load_sitk(path: str) -> Loaded:
    if _DETACHED.search(read_bytes(path)[:_HEADER_LIMIT]):
        msg = f"{path}: header with a detached data file (.mhd/.nhdr) is not supported; use .mha or .nrrd"
        raise FormatError(msg)
    sitk = import_optional("SimpleITK", "itk")
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        msg = f"{path}: SimpleITK cannot read this image: {exc}"
        raise FormatError(msg) from exc
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype.name not in SUPPORTED_DTYPES:
        msg = f"{path}: voxel type {arr.dtype} is not one of {', '.join(SUPPORTED_DTYPES)}"
        raise FormatError(msg)
    channels = image.GetNumberOfComponentsPerPixel()
    sizes = list(image.GetSize())
    stack = _to_planes(arr.reshape(-1), sizes, channels)
    info = {
        "sitk": {
            "sizes": sizes,
            "channels": channels,
            "dtype": arr.dtype.name,
            "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection()),
            "keys": {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()},
            "compressed": _COMPRESSED.search(read_bytes(path)[:_HEADER_LIMIT]) is not None,
        }
    }
    return Loaded(
        stack[0] if stack.shape[0] == 1 else stack, pack("itk", info), "itk", "pixels+metadata"
    )


def save(
    path: str | os.PathLike[str],
    array: np.ndarray,
    info: dict[str, Any],
    blobs: dict[str, bytes],
    *,
    compression: bool | None = None,
) -> None:
    """Rebuild the file: header + voxels + tail, or a SimpleITK write with the same geometry.

    ``compression`` forces SimpleITK's ``useCompression`` on the pixels+metadata path.
    """
    arr = np.asarray(array)
    if "raw" in info:
        layout = info["raw"]
        values = _from_planes(arr, layout["sizes"], layout["channels"]).astype(layout["dtype"])
        write_atomic(path, [blobs["head"], values.tobytes(), blobs["tail"]])
        return
    sitk = import_optional("SimpleITK", "itk")
    meta = info["sitk"]
    values = _from_planes(arr, meta["sizes"], meta["channels"]).astype(meta["dtype"])
    shape = meta["sizes"][::-1] + ([meta["channels"]] if meta["channels"] > 1 else [])
    image = sitk.GetImageFromArray(values.reshape(shape), isVector=meta["channels"] > 1)
    image.SetSpacing(meta["spacing"])
    image.SetOrigin(meta["origin"])
    image.SetDirection(meta["direction"])
    for key, value in meta["keys"].items():
        image.SetMetaData(key, value)
    _write_sitk(path, image, meta["compressed"] if compression is None else compression)


def extensions(info: dict[str, Any], blobs: dict[str, bytes]) -> tuple[str, ...]:
    """The file name extensions a restore of this envelope can be read back from.

    SimpleITK picks its reader by the extension. A raw envelope restores its header verbatim,
    so a MetaImage header is only readable as ``.mha``/``.mhd`` and an NRRD header only as
    ``.nrrd``/``.nhdr``; the SimpleITK path writes whichever the name asks for.
    """
    if "raw" not in info:
        return _METAIMAGE + _NRRD
    return _NRRD if blobs["head"].startswith(b"NRRD") else _METAIMAGE


def data_files(path: str | os.PathLike[str]) -> list[Path]:
    """The data files SimpleITK may write beside ``path`` when it is a detached header
    (``b.mhd``: ``b.raw`` or ``b.zraw``; ``b.nhdr``: ``b.raw`` or ``b.raw.gz``); none otherwise.

    SimpleITK replaces them without asking, so whoever checks that a restore overwrites nothing
    must check these names too; :func:`save` refuses to write any other file.
    """
    p = Path(path)
    return [p.with_name(p.stem + ext) for ext in _DATA_FILES.get(p.suffix.lower(), ())]


def _write_sitk(path: str | os.PathLike[str], image: Any, compression: bool) -> None:
    """Write ``image`` with SimpleITK, each file atomically under its final name.

    A detached header (``.mhd``, ``.nhdr``) names its data file after itself (``b.mhd`` points
    at ``b.zraw``), so SimpleITK writes into a scratch folder beside ``path`` under the final
    names, and each file then moves into place through :func:`atomic_path`, the header last.
    The scratch header's extension is lower case: SimpleITK renames ``B.MHA`` to ``B.mhd`` plus
    ``B.zraw``, and treats ``B.NHDR`` as attached, unlike the lower-case names.
    """
    sitk = import_optional("SimpleITK", "itk")
    target = Path(path)
    header = target.stem + target.suffix.lower()
    allowed = {header, *(f.name for f in data_files(target))}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        sitk.WriteImage(image, str(Path(scratch, header)), useCompression=compression)
        written = sorted(Path(scratch).iterdir(), key=lambda f: f.name == header)
        names = {f.name for f in written}
        if header not in names or not names <= allowed:  # data_files() must know every name
            wrote = ", ".join(sorted(names))
            msg = f"{target}: SimpleITK wrote {wrote}, not {header} and its data file"
            raise FormatError(msg)
        for f in written:
            with atomic_path(target if f.name == header else target.parent / f.name) as tmp:
                os.replace(f, tmp)


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Slices ``z<k>`` (or ``z<k>/s<channel>`` for vector images) of the volume."""
    loaded = load(path)
    stack = loaded.array.reshape(-1, *loaded.array.shape[-2:])
    info = unpack(loaded.metadata)[1]
    channels = (info.get("raw") or info["sitk"])["channels"]
    if channels == 1:
        return [(f"z{k}", stack[k]) for k in range(stack.shape[0])]
    return [(f"z{k // channels}/s{k % channels}", stack[k]) for k in range(stack.shape[0])]
