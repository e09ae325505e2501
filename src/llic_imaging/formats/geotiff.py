"""GeoTIFF adapter (rasterio): all bands as stored integers plus every georeferencing field;
uncompressed rasters restore byte for byte, compressed ones with equal pixels and metadata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from llic_imaging._fileio import atomic_path
from llic_imaging.errors import FormatError
from llic_imaging.formats import tiff
from llic_imaging.formats._deps import import_optional
from llic_imaging.formats.envelope import Loaded, pack, reading
from llic_imaging.planes import SUPPORTED_DTYPES

__all__ = ["describe", "load", "planes", "save"]

_DERIVED_NS = frozenset({"IMAGE_STRUCTURE", "DERIVED_SUBDATASETS", "RPC"})  # rebuilt by GDAL
_PHOTOMETRIC = {0: "MINISWHITE", 1: "MINISBLACK", 2: "RGB"}  # TIFF tag value -> GDAL option
_ALPHA = {0: "UNSPECIFIED", 1: "PREMULTIPLIED", 2: "YES"}  # ExtraSamples value -> GDAL ALPHA
_DERIVED_PAGE = 1 | 4  # NewSubfileType bits: reduced resolution (overview), transparency mask
_DOCUMENT_NS = "xml:"  # domains rasterio reads as one text, ``{ns: text}``, not key=value items


@contextmanager
def _open(path: str) -> Iterator[Any]:
    """The open dataset; rasterio's errors in the block are FormatErrors (:func:`reading`)."""
    rasterio = import_optional("rasterio", "geo")
    with reading(path, "GeoTIFF"), rasterio.open(path) as src:
        yield src


def _tags(src: Any, bidx: int = 0) -> dict[str, dict[str, str]]:
    """Tags of the dataset (``bidx=0``) or a band, in every namespace GDAL does not derive."""
    out = {"": src.tags(bidx)}
    for ns in src.tag_namespaces(bidx) or []:
        if ns not in _DERIVED_NS:
            out[ns] = src.tags(bidx, ns=ns)
    return out


def _colormaps(src: Any) -> dict[str, list[list[int]]]:
    out = {}
    for b in src.indexes:
        try:
            cmap = src.colormap(b)
        except ValueError:  # band has no colour table
            continue
        out[str(b)] = [[int(k), *map(int, v)] for k, v in sorted(cmap.items())]
    return out


def _has_internal_mask(src: Any) -> bool:
    """True when the dataset carries a per-dataset mask band that is not alpha or nodata."""
    mask_flags = import_optional("rasterio.enums", "geo").MaskFlags
    return all(
        mask_flags.per_dataset in flags
        and mask_flags.alpha not in flags
        and mask_flags.nodata not in flags
        for flags in src.mask_flag_enums
    )


def describe(src: Any) -> dict[str, Any]:
    """Everything rasterio reports about ``src`` except pixels: the fields a restore must match."""
    structure = src.tags(ns="IMAGE_STRUCTURE")
    gcps, gcp_crs = src.gcps
    return {
        "count": src.count,
        "width": src.width,
        "height": src.height,
        "dtype": src.dtypes[0],
        "crs": src.crs.to_wkt() if src.crs else None,
        "transform": list(src.transform)[:6],
        "gcps": [
            {"row": g.row, "col": g.col, "x": g.x, "y": g.y, "z": g.z, "id": g.id, "info": g.info}
            for g in gcps
        ],
        "gcp_crs": gcp_crs.to_wkt() if gcp_crs else None,
        "rpcs": src.rpcs.to_gdal() if src.rpcs else None,
        "tags": _tags(src),
        "band_tags": [_tags(src, b) for b in src.indexes],
        "descriptions": list(src.descriptions),
        "scales": list(src.scales),
        "offsets": list(src.offsets),
        "units": list(src.units),
        "colorinterp": [ci.name for ci in src.colorinterp],
        "colormaps": _colormaps(src),
        "nodata": src.nodata,
        "internal_mask": _has_internal_mask(src),
        "overviews": src.overviews(1),
        "compress": structure.get("COMPRESSION"),
        "predictor": int(structure.get("PREDICTOR", 1)),
        "interleave": structure.get("INTERLEAVE", "PIXEL").lower(),
        "layout": structure.get("LAYOUT"),
        "tiled": src.profile.get("tiled", False),
        "block": list(src.block_shapes[0]),
    }


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read all bands as (count, H, W) (a single band as (H, W)) with the dataset description.

    Uncompressed strip rasters also keep the TIFF skeleton, so :func:`save` is byte-identical.
    Refused: several full-resolution pages, and pages no restore gives back bit for bit
    (lossy compression, packed samples: :func:`tiff.check_exact`).
    """
    p = os.fspath(path)
    with _open(p) as src:
        if any(dt not in SUPPORTED_DTYPES for dt in src.dtypes) or len(set(src.dtypes)) > 1:
            msg = f"{p}: band types {src.dtypes} cannot be coded; expected one of {', '.join(SUPPORTED_DTYPES)}"
            raise FormatError(msg)
        with tiff.open_tiff(p) as tif:
            page = _image_page(tif, p)
            tiff.check_exact(page, p)
            structure = _tiff_structure(page)
        info = describe(src)
        _refuse_bare_documents(info, p)
        info["photometric"], info["alpha"] = structure
        stack = src.read()
        blobs = {}
        if info["internal_mask"]:
            blobs["mask"] = np.packbits(src.dataset_mask() > 0).tobytes()
    found = tiff.skeleton(p) if info["compress"] is None and not info["overviews"] else None
    exact = "pixels+metadata"
    if found is not None and found[0]["layout"]["pages"] == 1:
        info["skeleton"] = found[0]
        blobs["skeleton"] = found[1]
        exact = "bytes"
    array = stack[0] if stack.shape[0] == 1 else stack
    return Loaded(np.ascontiguousarray(array), pack("geotiff", info, blobs), "geotiff", exact)


def _image_page(tif: Any, path: str) -> Any:
    """The first page, the only one GDAL reads as the image; other full-resolution pages would
    be dropped without a word, so they are refused. Overviews and masks are rebuilt by save."""
    extra = [pg for pg in tif.pages[1:] if not int(pg.subfiletype) & _DERIVED_PAGE]
    if extra:
        msg = (
            f"{path}: GeoTIFF has {len(extra) + 1} full-resolution pages (IFDs); GDAL reads "
            "only the first, so multi-page GeoTIFFs are not supported"
        )
        raise FormatError(msg)
    return tif.pages.first


def _refuse_bare_documents(info: dict[str, Any], path: str) -> None:
    """Refuse an ``xml:`` domain without ``=``: rasterio can only write it back as ``text=``."""
    for domains in [info["tags"], *info["band_tags"]]:
        for ns, tags in domains.items():
            if ns.startswith(_DOCUMENT_NS) and "=" not in tags.get(ns, "="):
                msg = f"{path}: metadata domain {ns} is a text without '='; rasterio cannot write it back"
                raise FormatError(msg)


def _tiff_structure(page: Any) -> tuple[str | None, str | None]:
    """Photometric and alpha kind as GDAL creation options (rasterio does not report them)."""
    extra = [int(v) for v in page.extrasamples]
    return _PHOTOMETRIC.get(int(page.photometric)), _ALPHA.get(extra[-1]) if extra else None


def _profile(info: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """rasterio creation arguments: the source's structure, then the caller's overrides."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": info["count"],
        "width": info["width"],
        "height": info["height"],
        "dtype": info["dtype"],
        "nodata": info["nodata"],
        "interleave": info["interleave"],
        "tiled": info["tiled"],
    }
    if info["tiled"]:
        profile["blockysize"], profile["blockxsize"] = info["block"]
    else:
        profile["blockysize"] = info["block"][0]
    if info["compress"]:
        profile["compress"] = info["compress"].lower()
    if info["predictor"] > 1:
        profile["predictor"] = info["predictor"]
    if info["photometric"] and info["count"] >= (3 if info["photometric"] == "RGB" else 1):
        profile["photometric"] = info["photometric"]
    if info["alpha"]:
        profile["alpha"] = info["alpha"]
    if info["crs"] and not info["gcps"]:
        profile["crs"] = info["crs"]
    if not info["gcps"]:
        profile["transform"] = import_optional("affine", "geo").Affine(*info["transform"])
    profile.update(options)
    return profile


def _write(dst: Any, stack: np.ndarray, info: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """Write pixels and every described field into an open rasterio dataset."""
    rasterio = import_optional("rasterio", "geo")
    dst.write(stack)
    if info["gcps"]:
        gcps = [rasterio.control.GroundControlPoint(**g) for g in info["gcps"]]
        dst.gcps = (gcps, rasterio.crs.CRS.from_wkt(info["gcp_crs"]) if info["gcp_crs"] else None)
    if info["rpcs"]:
        dst.rpcs = rasterio.rpc.RPC.from_gdal(info["rpcs"])
    _write_tags(dst, 0, info["tags"])
    for b, band_tags in enumerate(info["band_tags"], start=1):
        _write_tags(dst, b, band_tags)
        if info["descriptions"][b - 1]:
            dst.set_band_description(b, info["descriptions"][b - 1])
        if info["units"][b - 1]:
            dst.set_band_unit(b, info["units"][b - 1])
    dst.scales = info["scales"]
    dst.offsets = info["offsets"]
    dst.colorinterp = [rasterio.enums.ColorInterp[name] for name in info["colorinterp"]]
    for b, entries in info["colormaps"].items():
        dst.write_colormap(int(b), {e[0]: tuple(e[1:]) for e in entries})
    if "mask" in blobs:
        bits = np.unpackbits(np.frombuffer(blobs["mask"], np.uint8), count=stack[0].size)
        dst.write_mask(bits.reshape(stack.shape[-2:]).astype(np.uint8) * 255)


def _write_tags(dst: Any, bidx: int, domains: dict[str, dict[str, str]]) -> None:
    """Write the dataset's (``bidx=0``) or a band's metadata domains.

    rasterio writes every domain as ``key=value`` items, while an ``xml:`` domain (XMP, ...) is
    one text that GDAL takes from the first item: the text is cut at its first ``=`` into a key
    and a value that GDAL joins back into the same text (:func:`_refuse_bare_documents`).
    """
    for ns, tags in domains.items():
        if tags and ns.startswith(_DOCUMENT_NS):
            key, _, value = tags[ns].partition("=")
            dst.update_tags(bidx, ns=ns, **{key: value})
        elif tags:
            dst.update_tags(bidx, ns=ns or None, **tags)


def save(
    path: str | os.PathLike[str],
    array: np.ndarray,
    info: dict[str, Any],
    blobs: dict[str, bytes],
    **options: Any,
) -> None:
    """Rebuild the GeoTIFF; ``options`` are GDAL creation options (``compress="zstd"``, ...)
    plus ``cog=True`` to lay the file out as a Cloud Optimized GeoTIFF.

    Without options an uncompressed source is spliced back byte for byte; otherwise rasterio
    writes a new file with the same profile and fields, and overviews are rebuilt with the
    source's factors (nearest resampling unless a ``rio_overview`` tag says otherwise).
    """
    stack = np.asarray(array).reshape(info["count"], info["height"], info["width"])
    force_cog = bool(options.pop("cog", False))
    if "skeleton" in info and not options and not force_cog:
        tiff.splice(path, stack, info["skeleton"], blobs["skeleton"])
        return
    rasterio = import_optional("rasterio", "geo")
    profile = _profile(info, options)
    env = {"GDAL_TIFF_INTERNAL_MASK": True} if "mask" in blobs else {}
    cog = force_cog or info["layout"] == "COG"
    with atomic_path(path) as tmp, rasterio.Env(**env), warnings.catch_warnings():
        # A GCP-referenced raster has no geotransform by design; rasterio warns about that.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        work = tmp.with_name(tmp.name + ".gtiff.tif") if cog else tmp
        try:
            with rasterio.open(work, "w", **profile) as dst:
                _write(dst, stack.astype(info["dtype"]), info, blobs)
                if info["overviews"]:
                    method = info["tags"].get("rio_overview", {}).get("resampling", "nearest")
                    dst.build_overviews(info["overviews"], rasterio.enums.Resampling[method])
            if cog:
                _copy_cog(work, tmp, profile, bool(info["overviews"]))
        finally:
            if cog:
                work.unlink(missing_ok=True)


def _copy_cog(
    src: os.PathLike[str], dst: os.PathLike[str], profile: dict[str, Any], overviews: bool
) -> None:
    """Re-lay a GTiff out as a Cloud Optimized GeoTIFF (GDAL's COG driver is copy-only)."""
    shutil = import_optional("rasterio.shutil", "geo")
    options = {
        "blocksize": profile.get("blockxsize", 512),
        "interleave": profile["interleave"],
        "overviews": "FORCE_USE_EXISTING" if overviews else "NONE",
    }
    for key in ("compress", "predictor"):
        if key in profile:
            options[key] = profile[key]
    shutil.copy(src, dst, driver="COG", **options)


def planes(path: str | os.PathLike[str]) -> list[tuple[str, np.ndarray]]:
    """Bands ``b<i>`` (0-based), skipping alpha bands, which carry a mask rather than an image."""
    rasterio = import_optional("rasterio", "geo")
    p = os.fspath(path)
    out = []
    with _open(p) as src:
        for i, (dtype, interp) in enumerate(zip(src.dtypes, src.colorinterp, strict=True)):
            if interp == rasterio.enums.ColorInterp.alpha:
                continue
            if dtype not in SUPPORTED_DTYPES:
                msg = (
                    f"{p}: band {i + 1} is {dtype}; only {', '.join(SUPPORTED_DTYPES)} can be coded"
                )
                raise FormatError(msg)
            out.append((f"b{i}", src.read(i + 1)))
    return out
