"""The codecs ``llic bench`` compares: llic through the public API, classical ones as ``BASELINES.md``.

Classical codecs run single-threaded with the settings that produced ``baselines.tsv``, so numbers
from one run line up with that table plane for plane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

__all__ = ["CODECS", "DEFAULT_CODECS", "Codec", "Prepared", "bits_needed", "resolve"]

DEFAULT_CODECS: tuple[str, ...] = ("llic", "jxl_e7", "jpegls", "jpeg2k", "png", "zstd19")


@dataclass(frozen=True, eq=False)
class Prepared:
    """A plane as one codec sees it; preparing is not timed.

    ``array`` is what must come back bit for bit: the plane itself for llic, and for the classical
    codecs the plane shifted by ``min(plane.min(), 0)`` into a uint8 container when its maximum is
    below 256, else uint16 (``BASELINES.md``; the offset costs no bits). ``bits`` is the bit depth
    needed for ``array.max()``, at least 1.
    """

    array: np.ndarray
    bits: int


@dataclass(frozen=True)
class Codec:
    """One benchmarked codec: untimed ``prepare``, then timed ``encode`` and ``decode``."""

    name: str
    prepare: Callable[[np.ndarray], Prepared]
    encode: Callable[[Prepared], bytes]
    decode: Callable[[bytes, Prepared], np.ndarray]
    settings: str


def bits_needed(plane: np.ndarray) -> int:
    """Bits needed for the plane's values once negatives are shifted away (at least 1)."""
    return max(1, (int(plane.max()) - min(int(plane.min()), 0)).bit_length())


def prepare_unsigned(plane: np.ndarray) -> Prepared:
    """Shift negative values away and pick the smallest image container, as ``BASELINES.md``."""
    shifted = plane.astype(np.int32) - min(int(plane.min()), 0)
    bits = bits_needed(plane)
    return Prepared(shifted.astype(np.uint8 if bits <= 8 else np.uint16), bits)


def _le_bytes(a: np.ndarray) -> bytes:
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def _from_le(data: bytes | bytearray, like: Prepared) -> np.ndarray:
    dtype = like.array.dtype.newbyteorder("<")
    return np.frombuffer(data, dtype=dtype).reshape(like.array.shape)


def _j2k_resolutions(shape: tuple[int, ...]) -> int:
    # OpenJPEG needs 2**(resolutions - 1) <= the smaller side; BASELINES uses 6 on every real plane.
    return min(6, min(shape).bit_length())


def _imagecodecs() -> Any:
    import imagecodecs

    return imagecodecs


def _versions(*keys: str) -> str:
    v = _imagecodecs().version(dict)
    return ", ".join(f"{k} {v[k]}" for k in keys) + f" (imagecodecs {v['imagecodecs']})"


def _png() -> Codec:
    ic = _imagecodecs()
    return Codec(
        "png",
        prepare_unsigned,
        lambda p: ic.png_encode(p.array, level=9),
        lambda data, p: ic.png_decode(data),
        "libpng level 9, " + _versions("libpng"),
    )


def _zstd() -> Codec:
    ic = _imagecodecs()
    return Codec(
        "zstd19",
        prepare_unsigned,
        lambda p: ic.zstd_encode(_le_bytes(p.array), level=19),
        lambda data, p: _from_le(ic.zstd_decode(data), p),
        "level 19 on the little-endian container bytes, " + _versions("zstd"),
    )


def _jpeg2k() -> Codec:
    ic = _imagecodecs()

    def encode(p: Prepared) -> bytes:
        return ic.jpeg2k_encode(
            p.array,
            level=0,
            codecformat="J2K",
            reversible=True,
            bitspersample=p.bits,
            resolutions=_j2k_resolutions(p.array.shape),
            numthreads=1,
        )

    return Codec(
        "jpeg2k",
        prepare_unsigned,
        encode,
        lambda data, p: ic.jpeg2k_decode(data, numthreads=1),
        "raw J2K, reversible 5/3, 6 resolutions, " + _versions("openjpeg"),
    )


def _jxl() -> Codec:
    ic = _imagecodecs()
    return Codec(
        "jxl_e7",
        prepare_unsigned,
        lambda p: ic.jpegxl_encode(
            p.array, lossless=True, effort=7, bitspersample=p.bits, numthreads=1
        ),
        lambda data, p: ic.jpegxl_decode(data, numthreads=1),
        "lossless, effort 7, " + _versions("libjxl"),
    )


def _jpegls() -> Codec:
    # CharLS must be told the bits needed (its MAXVAL and thresholds follow them). pyjpegls can,
    # as in BASELINES; imagecodecs always signals the container depth, costing about 1 % more.
    try:
        import jpeg_ls
    except ImportError:
        ic = _imagecodecs()
        return Codec(
            "jpegls",
            prepare_unsigned,
            lambda p: ic.jpegls_encode(p.array),
            lambda data, p: ic.jpegls_decode(data),
            "CharLS told the container depth (pyjpegls missing), " + _versions("charls"),
        )

    def encode(p: Prepared) -> bytes:
        h, w = p.array.shape
        return bytes(jpeg_ls.encode_buffer(_le_bytes(p.array), h, w, 1, p.bits))

    return Codec(
        "jpegls",
        prepare_unsigned,
        encode,
        lambda data, p: _from_le(jpeg_ls.decode_buffer(data)[0], p),
        f"CharLS told the bits needed (pyjpegls {metadata.version('pyjpegls')})",
    )


def _llic(
    numthreads: int | None, model: str | None, patch: int | None = None, *, adapt: bool = False
) -> Codec:
    """llic as ``encode``/``decode`` run it; ``adapt``: with per-image adaptation
    (``llic_adapt``, not a default codec: it fits for about 30 s per plane)."""
    import llic_imaging
    from llic_imaging.model import zoo

    # Signed planes go in as they are: handling them is the codec's job.
    coding = (
        f"the automatic choice ({zoo.DEFAULT_MODEL}; 8-bit planes: the cheaper of "
        f"{', '.join(zoo.auto_candidates(8))} on a probe)"
        if model in (None, zoo.AUTO)
        else zoo.model_info(model).name
    )
    options = {"numthreads": numthreads, "model": model, "patch": patch, "adapt": adapt}
    return Codec(
        "llic_adapt" if adapt else "llic",
        lambda plane: Prepared(plane, bits_needed(plane)),
        lambda p: llic_imaging.encode(p.array, **options),
        lambda data, p: llic_imaging.decode(data, numthreads=numthreads),
        f"public API, {llic_imaging.version()}; coding with {coding}"
        f"{', adapted per image' if adapt else ''}, numthreads={numthreads}",
    )


_CLASSICAL: dict[str, Callable[[], Codec]] = {
    "jxl_e7": _jxl,
    "jpegls": _jpegls,
    "jpeg2k": _jpeg2k,
    "png": _png,
    "zstd19": _zstd,
}
#: Every codec name ``run`` accepts.
CODECS: tuple[str, ...] = ("llic", "llic_adapt", *_CLASSICAL)


def resolve(
    names: tuple[str, ...],
    numthreads: int | None,
    model: str | None = None,
    patch: int | None = None,
) -> list[Codec]:
    """Build the named codecs and prove each round-trips a tiny plane before a long run starts.

    The probe also takes first-use costs (imports, model load) out of the first plane's timing.

    Raises
    ------
    ValueError
        If a name is not in :data:`CODECS`.
    RuntimeError
        If a codec cannot run here (for example the llic engine is not built yet).
    """
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        msg = f"unknown codecs {unknown}; choose from {list(CODECS)}"
        raise ValueError(msg)
    # 64x64 like the smallest corpus slices: edge shapes are the codecs' own tests' business.
    probe = (np.arange(64 * 64, dtype=np.int16).reshape(64, 64) % 1000) - 24
    codecs = []
    for name in names:
        try:
            if name in ("llic", "llic_adapt"):
                codec = _llic(numthreads, model, patch, adapt=name == "llic_adapt")
            else:
                codec = _CLASSICAL[name]()
            prepared = codec.prepare(probe)
            ok = np.array_equal(codec.decode(codec.encode(prepared), prepared), prepared.array)
        except Exception as exc:
            msg = f"codec {name!r} is unavailable: {type(exc).__name__}: {exc}"
            raise RuntimeError(msg) from exc
        if not ok:
            msg = f"codec {name!r} does not round-trip a 64x64 int16 probe"
            raise RuntimeError(msg)
        codecs.append(codec)
    return codecs
