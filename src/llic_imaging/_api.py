"""Public functions: join planes, codec engine and container (the only module that knows all three).

- ``encode(data, /, level=None, *, model=None, tile=None, patch=None, context=None,
  adapt=False, numthreads=None, device=None, metadata=None, progress=None) -> bytes``
- ``decode(data, /, index=None, *, numthreads=None, device=None, progress=None) -> np.ndarray``
- ``info(data, /) -> StreamInfo`` (header only, no model load), ``metadata(data, /) -> bytes``
- ``check(data, /) -> bool`` (magic only), ``rate_map(array, /, **options) -> np.ndarray``,
  ``version() -> str``
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llic_imaging import container
from llic_imaging.errors import ChecksumError, ModelError, StreamError, UnsupportedVersionError
from llic_imaging.planes import PlaneSpec, from_stack, to_stack

__all__ = [
    "StreamInfo",
    "check",
    "decode",
    "encode",
    "info",
    "metadata",
    "rate_map",
    "read_window",
    "version",
]

CODEC = "hpac"
FORMAT = 7  # newest codec payload format this library reads and writes:
# 1: chunk header, step order, focus coding, CDF grid v1, LUT v1; 2: 1 + delta chunks (context);
# 3: 2 with compact chunk headers (2-10 bytes instead of 14); 4: 3 + an adapter chunk (per-image
# adaptation, codec.adapt); 5: 4 + a value map in every coded chunk header (codec.engine);
# 6: 5 + linear feedback chunks (codec.linear); 7: 6 + a flat-flags field in every coded chunk
# header (codec.flat). A stream records the oldest format that holds it (3 unless it carries an
# adapter, value maps, linear feedback or flat flags, so older readers still read such
# streams), and all seven still decode.
ADAPTED_FORMAT = 4
MAX_CONTEXT = 1024
# Stacks default to context groups of 4 planes (session 7): RGB / RGBN rasters code 18-30 %
# smaller, an 8-bit MR volume 4 % (docs/benchmarks.md), while reading one plane decodes at most
# 3 earlier tiles per tile; the encoder only tries deltas a cheap cost estimate favours.
DEFAULT_CONTEXT = 4
DEFAULT_TILE = 256
# 64 since session 8: 0.5-1.6 % smaller than 32 on the 16-bit groups, and the 17 kMAC/px
# default network keeps the decode target (docs/benchmarks.md, "Number of coding steps").
DEFAULT_PATCH = 64
# 8-bit data (no speed target; 64 from session 3, 128 since session 11): 128 codes 0.2-2.4 %
# smaller than 64 on the 8-bit groups at about 0.75x the decode speed.
DEFAULT_PATCH_8BIT = 128
PATCHES = (16, 32, 64, 128)  # larger: fewer context-poor first rows/columns, more decoder steps
_MAX_PLANE_HASHES = 4096
# Plane hashes keep the first 16 bytes of each plane's sha256, as container v3 does for the
# array (docs/container.md): 32 hex digits per plane instead of 64; older streams carry 64.
DIGEST_BYTES = 16
# Streams name their weights by the first 16 hex digits of its sha256 (64 bits): enough to
# catch a different weights file (the zoo checks the full hash on load) at ~28 fewer bytes
# per stream than the full digest, which older streams carry and still decode with.
MODEL_HASH_HEX = 16
MAX_TILE = 4096
MAX_SAMPLES = 1 << 34  # decode refuses larger declared arrays before allocating

Progress = Callable[[int], None]


@dataclass(frozen=True)
class StreamInfo:
    """What a stream's header says (no pixels decoded, no model loaded)."""

    shape: tuple[int, ...]
    dtype: str
    bits_per_sample: int
    planes: int
    chunk_count: int
    tile: int
    patch: int
    model: str
    model_sha256: str  # the weights' sha256 prefix the stream records (MODEL_HASH_HEX digits)
    compressed_bytes: int
    container_version: int
    codec_format: int
    metadata_bytes: int
    level: int
    context: int = 1  # plane context group K (1: every tile decodes on its own)
    adapted: bool = False  # carries a per-image adapter (encode(..., adapt=True))

    @property
    def raw_bytes(self) -> int:
        return math.prod(self.shape) * self.bits_per_sample // 8

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.compressed_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["raw_bytes"] = self.raw_bytes
        d["ratio"] = round(self.ratio, 4)
        return d


def _array_sha256(a: np.ndarray) -> bytes:
    """SHA-256 of the array's values as little-endian C-order bytes (byte-order independent)."""
    return hashlib.sha256(
        np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    ).digest()


def _load_model(name: str | None, device: str | None):
    from llic_imaging.model import zoo
    from llic_imaging.model.runtime import resolve_device

    dev = resolve_device(device)
    net, minfo = zoo.load(name, str(dev))
    return net, minfo, dev


def encode(
    data: np.ndarray,
    /,
    level: int | None = None,
    *,
    model: str | None = None,
    tile: int | None = None,
    patch: int | None = None,
    context: int | None = None,
    adapt: bool | int = False,
    numthreads: int | None = None,
    device: str | None = None,
    metadata: bytes | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Compress an integer image losslessly.

    Parameters
    ----------
    data
        uint8/int8/uint16/int16 array, a (H, W) plane or an (N, H, W) stack (slices, bands).
    level
        Reserved for effort levels; only ``None``/1 exist today.
    model
        Installed model name; its name and SHA-256 go in the header. ``None`` or ``"auto"``
        (default): the default model (``model.zoo.DEFAULT_MODEL``), or a per-domain fine-tune
        for this bit depth (``model.zoo.auto_candidates``) where one codes a probe of up to four
        128x128 windows smaller. 16-bit data has no fine-tune today, so nothing is probed.
    tile
        Side of the independently decodable tiles in pixels (default 256, minimum 8).
    patch
        Side of the patches coded in parallel inside a tile (one of ``PATCHES``; default 64,
        128 for 8-bit data): the first row and column of a patch have little context, so larger
        patches code smaller (0.5-4 % from 32 to 64) but take ``3 * patch - 2`` decoder steps
        per tile.
    context
        Plane context group K for (N, H, W) stacks (default ``DEFAULT_CONTEXT`` = 4; 1 turns
        it off): inside each group of K planes a tile may be coded against the same tile of
        the previous plane, as its difference or with its predictions refined by that tile's
        prediction errors, where the network codes that in fewer bits (registered bands,
        MR volumes). Decoding one plane then decodes up to K - 1 earlier tiles at the
        same place. K is capped at the number of planes (a single plane's stream is the same
        for every K).
    adapt
        Per-image adaptation (``codec.adapt``): fine-tune the model on this image (``True``:
        ``codec.adapt.STEPS`` steps, an int: that many) and store the change in the stream
        where it saves more than it costs. Encoding takes a fitting (about 0.1 s per step)
        and a second coding pass; decoding costs the same. The fitting runs in float, so the
        adapted stream may differ between machines; every one decodes exactly anywhere.
    numthreads, device
        CPU threads (default 1) and ``"cpu"``/``"cuda"``; the stream does not depend on
        either.
    metadata
        Bytes stored verbatim (format adapters keep what they need to rebuild files there).
    progress
        Called with the number of tiles finished, for progress bars. With ``adapt`` the
        count goes on through the fitting, as one more pass over the tiles, and through the
        second coding pass if an adapter was fitted: three times the tiles in all.

    Raises
    ------
    FormatError
        If the array cannot be represented (dtype, dimensionality, empty).
    ModelError
        If the model is not installed or its weights are damaged.
    """
    from llic_imaging.codec.engine import encode_tiles, tile_grid
    from llic_imaging.model.runtime import deterministic

    stack, spec = to_stack(data)
    tile, patch = _tiling(tile, patch, spec)
    context = DEFAULT_CONTEXT if context is None else int(context)
    if not 1 <= context <= MAX_CONTEXT:
        msg = f"context must be 1 to {MAX_CONTEXT} planes, got {context}"
        raise ValueError(msg)
    context = min(context, stack.shape[0])  # a group never spans more than the stack
    if level not in (None, 1):
        msg = f"level must be None or 1, got {level!r}"
        raise ValueError(msg)
    if not isinstance(adapt, bool | int) or adapt < 0:
        msg = f"adapt must be True, False or a number of steps, got {adapt!r}"
        raise ValueError(msg)
    if metadata is not None and not isinstance(metadata, bytes | bytearray | memoryview):
        msg = f"metadata must be bytes, got {type(metadata).__name__}"
        raise TypeError(msg)
    with deterministic(numthreads):
        model = _choose_model(stack, spec, model, tile, patch, device)
        net, minfo, dev = _load_model(model, device)
        refs = tile_grid(stack.shape, tile)
        payloads, fmt = encode_tiles(
            net, stack, refs, patch=patch, device=dev, context=context, progress=progress
        )
        tuned = None
        if adapt:
            from llic_imaging.codec.adapt import STEPS

            steps = STEPS if adapt is True else int(adapt)
            tuned = _adapted_tiles(net, stack, refs, (tile, patch, context), dev, steps, progress)
    header: dict[str, Any] = {
        "codec": CODEC,
        "format": fmt,
        "spec": spec.to_dict(),
        "tile": tile,
        "patch": patch,
        "level": 1,
        "model": minfo.name,
        "model_sha256": minfo.sha256[:MODEL_HASH_HEX],
    }
    if context > 1:
        header["context"] = context
    if 1 < stack.shape[0] <= _MAX_PLANE_HASHES:  # one plane: the array hash covers it
        header["plane_sha256"] = [_array_sha256(p)[:DIGEST_BYTES].hex() for p in stack]
    keys = [container.ChunkKey(r.plane, r.y, r.x, r.h, r.w) for r in refs]
    options = {"metadata": bytes(metadata or b""), "array_sha256": _array_sha256(stack)}
    stream = container.write(header, list(zip(keys, payloads, strict=True)), **options)
    if tuned is not None:  # the MDL choice: the adapter's bytes count against what it saves
        adapter, payloads, fmt = tuned
        header = {**header, "format": max(fmt, ADAPTED_FORMAT), "adapter": 1}
        chunks = [*zip(keys, payloads, strict=True), (_adapter_key(stack.shape[0]), adapter)]
        adapted = container.write(header, chunks, **options)
        stream = adapted if len(adapted) < len(stream) else stream
    return stream


def _adapted_tiles(
    net,
    stack: np.ndarray,
    refs: list,
    layout: tuple[int, int, int],
    dev,
    steps: int,
    progress: Progress | None,
) -> tuple[bytes, list[bytes], int] | None:
    """The adapter fitted to ``stack`` and the tiles coded with it, with their chunk headers'
    codec format (None: nothing to fit).
    ``layout`` is (tile, patch, context). ``progress`` counts the fitting as one more pass over
    the tiles (it takes about as long as several), then the second pass's tiles."""
    from llic_imaging.codec import adapt
    from llic_imaging.codec.engine import encode_tiles

    tile, patch, context = layout
    sent = 0

    def fitting(step: int) -> None:
        nonlocal sent
        if progress and (ticks := step * len(refs) // steps - sent) > 0:
            progress(ticks)
            sent += ticks

    deltas = adapt.fit(net, stack, tile=tile, steps=steps, progress=fitting)
    fitting(steps)  # a fit that stopped early still completes its pass
    if deltas is None or not deltas.any():
        return None
    tuned = adapt.adapted(net, deltas)
    payloads, fmt = encode_tiles(
        tuned, stack, refs, patch=patch, device=dev, context=context, progress=progress
    )
    return adapt.pack(deltas), payloads, fmt


def _adapter_key(planes: int) -> container.ChunkKey:
    """Index record of the adapter chunk: after every tile, on a plane past the last one."""
    return container.ChunkKey(planes, 0, 0, 0, 0)


def _choose_model(
    stack: np.ndarray, spec: PlaneSpec, model: str | None, tile: int, patch: int, device: str | None
) -> str:
    """The named model, or for ``None``/``"auto"`` the candidate for this bit depth with the
    fewest bits on a small probe (ties: the default model). Call under ``deterministic``."""
    from llic_imaging.codec.engine import probe_bits, probe_refs
    from llic_imaging.model import zoo

    if model not in (None, zoo.AUTO):
        return model
    names = zoo.auto_candidates(spec.bits_per_sample)
    if len(names) == 1:
        return names[0]
    refs = probe_refs(stack, tile)
    if not refs:
        return names[0]
    costs = []
    for name in names:
        net, _, dev = _load_model(name, device)
        costs.append(probe_bits(net, stack, refs, patch=patch, device=dev))
    return names[int(np.argmin(costs))]


def _tiling(tile: int | None, patch: int | None, spec: PlaneSpec) -> tuple[int, int]:
    """Validated tile and patch sides (defaults for ``None``, by bit depth for the patch)."""
    tile = DEFAULT_TILE if tile is None else int(tile)
    if patch is None:
        patch = DEFAULT_PATCH_8BIT if spec.bits_per_sample <= 8 else DEFAULT_PATCH
    patch = int(patch)
    if not 8 <= tile <= MAX_TILE:
        msg = f"tile must be 8 to {MAX_TILE} pixels, got {tile}"
        raise ValueError(msg)
    if patch not in PATCHES:
        msg = f"patch must be one of {PATCHES}, got {patch}"
        raise ValueError(msg)
    return tile, patch


def _parse(c: container.Container) -> tuple[PlaneSpec, dict[str, Any]]:
    """Validate the codec header fields of a parsed container; the returned header always has
    an int ``"context"`` (1 where the stream has none)."""
    h = c.header
    if h.get("codec") != CODEC:
        msg = f"stream codec is {h.get('codec')!r}, expected {CODEC!r}"
        raise StreamError(msg)
    fmt = h.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        msg = f"stream header has an invalid codec format {fmt!r}"
        raise StreamError(msg)
    if fmt > FORMAT:
        msg = f"codec format {fmt!r} is newer than this library ({FORMAT}); upgrade llic-imaging"
        raise UnsupportedVersionError(msg)
    try:
        spec = PlaneSpec.from_dict(h["spec"])
        tile, patch = int(h["tile"]), int(h["patch"])
        context, level = int(h.get("context", 1)), int(h.get("level", 1))
        adapted = h.get("adapter", 0)
        model, model_hash = h["model"], h["model_sha256"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        msg = f"stream header is missing or has malformed codec fields: {exc}"
        raise StreamError(msg) from exc
    if not isinstance(model, str) or not isinstance(model_hash, str):
        msg = f"stream header's model {model!r} / model_sha256 {model_hash!r} are not strings"
        raise StreamError(msg)
    if not (8 <= tile <= MAX_TILE) or patch not in PATCHES or not 1 <= context <= MAX_CONTEXT:
        msg = f"stream header has unsupported tile {tile} / patch {patch} / context {context}"
        raise StreamError(msg)
    if not MODEL_HASH_HEX <= len(model_hash) <= 64:
        msg = f"stream header's model_sha256 has {len(model_hash)} hex digits, expected {MODEL_HASH_HEX} to 64"
        raise StreamError(msg)
    if adapted not in (0, 1) or (adapted and fmt < ADAPTED_FORMAT):
        msg = f"stream header has adapter {adapted!r} in codec format {fmt}"
        raise StreamError(msg)
    n, hgt, wid = spec.planes, *spec.shape[-2:]
    count = n * -(-hgt // tile) * -(-wid // tile)
    if count + adapted != len(c.chunks) or n * hgt * wid > MAX_SAMPLES:
        msg = f"chunk index has {len(c.chunks)} chunks; a {spec.shape} image in {tile}-pixel tiles has {count}"
        raise StreamError(msg)
    return spec, {**h, "context": context, "level": level, "adapter": bool(adapted)}


def _refs_of(c: container.Container, spec: PlaneSpec, tile: int, adapted: bool):
    """The container's chunk table must be exactly this shape's tile grid (its length and the
    declared size were checked by :func:`_parse`), followed by the adapter's record if the
    stream has one."""
    from llic_imaging.codec.engine import TileRef, tile_grid

    n, h, w = spec.planes, *spec.shape[-2:]
    count = len(c.chunks) - adapted
    expected = tile_grid((n, h, w), tile)
    found = [TileRef(e.plane, e.y, e.x, e.h, e.w) for e in c.chunks[:count]]
    if adapted and c.chunks[count].key != _adapter_key(n):
        msg = f"chunk index record {count} is not the adapter's"
        raise StreamError(msg)
    if found != expected:
        msg = f"chunk index does not match the {spec.shape} image cut into {tile}-pixel tiles"
        raise StreamError(msg)
    return expected


def decode(
    data: bytes,
    /,
    index: int | None = None,
    *,
    window: tuple[int, int, int, int] | None = None,
    numthreads: int | None = None,
    device: str | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Decompress a stream, or part of it, decoding only the tiles that are needed.

    Parameters
    ----------
    index
        One plane (slice, band) of an (N, H, W) stack; ``None`` decodes every plane.
    window
        ``(row, col, height, width)`` of a plane (``index``, default 0): only the tiles that
        touch it are decoded, and the window is returned.

    Raises
    ------
    StreamError, ChecksumError, UnsupportedVersionError
        If the stream is damaged, truncated or too new.
    ModelError
        If the stream was made with weights that are not installed here.
    """
    return _decode(
        container.read(data),
        index,
        window=window,
        numthreads=numthreads,
        device=device,
        progress=progress,
    )


def _decode(
    c: container.Container,
    index: int | None,
    *,
    window: tuple[int, int, int, int] | None = None,
    numthreads: int | None = None,
    device: str | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """``decode`` of a parsed container, which reads only the payloads of the chosen tiles."""
    from llic_imaging.codec.engine import add_references, decode_tiles

    spec, h = _parse(c)
    refs = _refs_of(c, spec, int(h["tile"]), h["adapter"])
    _check_model(h)
    n, hgt, wid = spec.planes, *spec.shape[-2:]
    if window is not None and index is None:
        index = 0
    if index is None:
        chosen = list(range(len(refs)))
    else:
        if not -n <= int(index) < n:
            msg = f"index {index} out of range for {n} planes"
            raise IndexError(msg)
        index = int(index) % n
        chosen = c.select(index)
    y0, x0, wh, ww = 0, 0, hgt, wid
    if window is not None:
        y0, x0, wh, ww = (int(v) for v in window)
        if wh < 1 or ww < 1 or y0 < 0 or x0 < 0 or y0 + wh > hgt or x0 + ww > wid:
            msg = f"window {window} is not inside the {hgt}x{wid} plane"
            raise ValueError(msg)
        chosen = [
            i
            for i in chosen
            if refs[i].y < y0 + wh
            and refs[i].y + refs[i].h > y0
            and refs[i].x < x0 + ww
            and refs[i].x + refs[i].w > x0
        ]
    payloads = {i: c.payload(i) for i in chosen}
    context, fmt = h["context"], h["format"]
    if index is not None and context > 1:
        add_references(refs, payloads, c.payload, fmt=fmt)
    chosen = sorted(payloads)
    plane0 = refs[chosen[0]].plane if index is not None and chosen else 0
    sel = [type(r)(r.plane - plane0, r.y, r.x, r.h, r.w) for r in (refs[i] for i in chosen)]
    # Decoded straight into the stored dtype: a corrupt tile that wraps around cannot pass the
    # SHA-256 checks below (or the per-chunk crc32 for windows), so no wider buffer is needed.
    shape = (n if index is None else index - plane0 + 1, hgt, wid)
    try:
        out = np.zeros(shape, spec.dtype)
    except MemoryError as exc:  # a tiny stream may declare a huge constant image
        gib = math.prod(shape) * np.dtype(spec.dtype).itemsize / 2**30
        msg = (
            f"stream declares a {spec.shape} {spec.dtype} image: cannot allocate its {gib:.1f} GiB"
        )
        raise StreamError(msg) from exc
    net, _, dev = _load_model(h["model"], device)
    if h["adapter"]:
        from llic_imaging.codec import adapt

        net = adapt.adapted(net, adapt.unpack(c.payload(len(refs)), net))
    with _runtime(numthreads):
        decode_tiles(
            net,
            sel,
            [payloads[i] for i in chosen],
            out,
            patch=int(h["patch"]),
            device=dev,
            context=context,
            fmt=fmt,
            progress=progress,
        )
    if index is None:
        arr = from_stack(out, spec)
        _verify(_array_sha256(arr), c.array_sha256, "array")
        return arr
    plane = out[-1]
    if window is not None:
        # no digest covers a window: its chunks were crc32-checked by the container, and each
        # decode ended where its encoder ended (engine._require_ended), which a decoder that
        # computes other integers almost never does
        return plane[y0 : y0 + wh, x0 : x0 + ww]
    hashes = h.get("plane_sha256")
    if n == 1:
        _verify(_array_sha256(plane.reshape(spec.shape)), c.array_sha256, "array")
    elif isinstance(hashes, list) and len(hashes) == n:
        _verify(_array_sha256(plane), _hex_digest(hashes[index]), f"plane {index}")
    return plane


def read_window(
    path: str | os.PathLike[str],
    window: tuple[int, int, int, int],
    /,
    index: int = 0,
    *,
    numthreads: int | None = None,
) -> np.ndarray:
    """Read ``(row, col, height, width)`` of plane/band ``index`` of a .llic file.

    Only the prelude, header, chunk index, metadata and the tiles the window touches are read
    from the file, checksummed and decoded, so a small window of a huge raster costs a few
    tiles of I/O and compute (GIS-style windowed reads).
    """
    with open(path, "rb") as f:
        return _decode(container.read_file(f), index, window=window, numthreads=numthreads)


def _check_model(h: dict[str, Any]) -> None:
    """Refuse a stream whose weights hash differs from the installed model's."""
    from llic_imaging.model import zoo

    minfo = zoo.model_info(h["model"])
    if not minfo.sha256.startswith(h["model_sha256"]):
        msg = (
            f"stream was made with model {h['model']} sha256 {h['model_sha256'][:16]}..., "
            f"installed weights are {minfo.sha256[:16]}...; decode with the llic-imaging version that wrote it"
        )
        raise ModelError(msg)


def _runtime(numthreads: int | None):
    """Exactness-preserving torch settings (lazy import keeps ``import llic_imaging`` light)."""
    from llic_imaging.model.runtime import deterministic

    return deterministic(numthreads)


def _hex_digest(value: object) -> bytes:
    """A stored plane hash; anything but hex digits reads as an empty (failing) digest."""
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return b""


def _verify(found: bytes, expected: bytes, what: str) -> None:
    """``expected`` is a full sha256 (older streams) or its first ``DIGEST_BYTES``."""
    if len(expected) < DIGEST_BYTES or found[: len(expected)] != expected:
        msg = f"{what} sha256 {found.hex()[:16]}... != stored {expected.hex()[:16]}...; the stream is corrupt"
        found = found[: len(expected)]
        raise ChecksumError(msg, segment=what, expected=expected.hex(), found=found.hex())


def info(data: bytes, /) -> StreamInfo:
    """Header summary of a stream (validates structure and checksums of header and index)."""
    c = container.read(data)
    spec, h = _parse(c)
    return StreamInfo(
        shape=spec.shape,
        dtype=spec.dtype,
        bits_per_sample=spec.bits_per_sample,
        planes=spec.planes,
        chunk_count=len(c.chunks),
        tile=int(h["tile"]),
        patch=int(h["patch"]),
        model=str(h["model"]),
        model_sha256=str(h["model_sha256"]),
        compressed_bytes=len(data),
        container_version=c.version,
        codec_format=int(h["format"]),
        metadata_bytes=len(c.metadata),
        level=h["level"],
        context=h["context"],
        adapted=h["adapter"],
    )


def metadata(data: bytes, /) -> bytes:
    """The metadata block stored by :func:`encode` (empty if none)."""
    return container.read(data).metadata


def check(data: object, /) -> bool:
    """Whether ``data`` starts like an LLIC stream (magic bytes only; never raises)."""
    return container.check(data)


def rate_map(
    array: np.ndarray,
    /,
    *,
    model: str | None = None,
    tile: int | None = None,
    patch: int | None = None,
    numthreads: int | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Bits per sample the codec spends on each pixel (float32, same shape as ``array``).

    Computed from the same integer tables the coder uses; its sum matches the payload size
    up to range-coder termination and chunk headers.
    """
    from llic_imaging.codec.engine import rate_tiles, tile_grid
    from llic_imaging.model.runtime import deterministic

    stack, spec = to_stack(array)
    tile, patch = _tiling(tile, patch, spec)
    refs = tile_grid(stack.shape, tile)
    with deterministic(numthreads):
        net, _, dev = _load_model(_choose_model(stack, spec, model, tile, patch, device), device)
        rates = rate_tiles(net, stack, refs, patch=patch, device=dev)
    return rates.reshape(spec.shape)


def version() -> str:
    """Versions of llic_imaging, its formats, torch, constriction and the installed models."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from llic_imaging import __version__
    from llic_imaging.model import zoo

    def v(name: str) -> str:
        try:
            return dist_version(name)
        except PackageNotFoundError:
            return "absent"

    return (
        f"llic_imaging {__version__} (container {container.VERSION}, codec format {FORMAT}); "
        f"torch {v('torch')}; constriction {v('constriction')}; models: {', '.join(zoo.available()) or 'none'}"
    )
