"""Codec engine: planes -> tiles -> batched network passes -> range-coded chunk payloads, and back.

The encoder runs the teacher-forced dense pass (all pixels at once); the decoder runs the
step-wise Cache-then-Select path. Both produce the same integers (``tests/model``), so every
frequency table the decoder builds is the encoder's. Tiles of equal size are batched across
planes; each tile is an independently decodable chunk with its own small header.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from llic_imaging.codec import focus
from llic_imaging.codec.entropy import ChunkDecoders, encode_chunk
from llic_imaging.codec.schedule import Geometry
from llic_imaging.errors import StreamError
from llic_imaging.model.cpu_kernel import CpuSteps
from llic_imaging.model.hpac import TileParams, TorchSteps

__all__ = [
    "ChunkParams",
    "probe_bits",
    "probe_refs",
    "TileRef",
    "chunk_params",
    "decode_tiles",
    "encode_tiles",
    "rate_tiles",
    "tile_grid",
]

_CHUNK_HEADER = struct.Struct("<BiIBI")  # kind, vmin, vmax, shift, mid
_KIND_CONSTANT, _KIND_CODED = 0, 1
MAX_SHIFT = 12
_BATCH_PIXELS = 1 << 18  # pixels per batch of tiles: the decoder caches ~600 bytes per pixel
_DENSE_PIXELS = 1 << 14  # pixels per dense network call: cache-sized on CPU


@dataclass(frozen=True)
class TileRef:
    """Where a tile sits: plane index and pixel window."""

    plane: int
    y: int
    x: int
    h: int
    w: int


@dataclass(frozen=True)
class ChunkParams:
    """Per-chunk side information written before the range-coded words."""

    kind: int
    vmin: int
    vmax: int  # range R of the shifted values u = v - vmin
    shift: int
    mid: int

    def pack(self) -> bytes:
        return _CHUNK_HEADER.pack(self.kind, self.vmin, self.vmax, self.shift, self.mid)

    @classmethod
    def unpack(cls, payload: bytes) -> tuple[ChunkParams, bytes]:
        if len(payload) < _CHUNK_HEADER.size:
            msg = f"chunk payload has {len(payload)} bytes, shorter than its {_CHUNK_HEADER.size}-byte header"
            raise StreamError(msg)
        p = cls(*_CHUNK_HEADER.unpack_from(payload))
        if (
            p.kind not in (_KIND_CONSTANT, _KIND_CODED)
            or p.vmax > 0xFFFF
            or p.vmin < -0x8000
            or p.vmin + p.vmax > 0xFFFF
            or p.shift > MAX_SHIFT
            or p.mid > p.vmax
        ):
            msg = f"chunk header is invalid: {p}"
            raise StreamError(msg)
        return p, payload[_CHUNK_HEADER.size :]


def tile_grid(shape: tuple[int, int, int], tile: int) -> list[TileRef]:
    """Tiles of an (N, H, W) stack in storage order: plane, then row, then column."""
    n, h, w = shape
    return [
        TileRef(k, y, x, min(tile, h - y), min(tile, w - x))
        for k in range(n)
        for y in range(0, h, tile)
        for x in range(0, w, tile)
    ]


def _med_residual_shift(u: np.ndarray) -> int:
    """Input scale 2**-sh so that typical neighbour differences land near 16 (one unit)."""
    if u.shape[0] < 2 or u.shape[1] < 2:
        return 0
    w, n, nw = u[1:, :-1], u[:-1, 1:], u[:-1, :-1]
    mx, mn = np.maximum(w, n), np.minimum(w, n)
    med = np.where(nw >= mx, mn, np.where(nw <= mn, mx, w + n - nw))
    mar = int(np.abs(u[1:, 1:] - med).sum()) // med.size
    return int(min(MAX_SHIFT, max(0, mar.bit_length() - 5)))


def chunk_params(tile: np.ndarray) -> ChunkParams:
    """Side information of one tile: value range, input shift and first-pixel anchor."""
    vmin, vmax = int(tile.min()), int(tile.max())
    if vmin == vmax:
        return ChunkParams(_KIND_CONSTANT, vmin, 0, 0, 0)
    u = tile.astype(np.int64) - vmin
    mid = int(np.median(u))
    return ChunkParams(_KIND_CODED, vmin, vmax - vmin, _med_residual_shift(u), mid)


def _batches(refs: list[TileRef], patch: int) -> Iterator[tuple[Geometry, list[int]]]:
    """Group coded tiles by size, then cut groups so a batch stays under _BATCH_PIXELS."""
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, r in enumerate(refs):
        by_size[(r.h, r.w)].append(i)
    for (h, w), idx in by_size.items():
        geo = Geometry(h, w, patch)
        per = max(1, _BATCH_PIXELS // (geo.n_patches * patch * patch))
        for k in range(0, len(idx), per):
            yield geo, idx[k : k + per]


def _tile_params(geo: Geometry, params: list[ChunkParams], device: torch.device) -> TileParams:
    rep = geo.n_patches

    def col(name: str) -> torch.Tensor:
        v = torch.tensor([getattr(p, name) for p in params], dtype=torch.float32)
        return v.repeat_interleave(rep).to(device)

    return TileParams(shift=col("shift"), mid=col("mid"), vmax=col("vmax"))


def _dense(net, geo: Geometry, tiles: list[np.ndarray], params: list[ChunkParams], device):
    """Teacher-forced prediction for a batch of equal-size tiles -> (mu16, scale, u) per tile.

    On CPU the compiled kernel runs every step over the known pixels. Elsewhere the torch
    dense pass runs over cache-sized groups of patches (patches are independent): whole-image
    tensors are several times slower (allocation and memory traffic dominate).
    """
    u = np.stack(
        [geo.to_patches(t.astype(np.int64) - p.vmin) for t, p in zip(tiles, params, strict=True)]
    )
    u = u.reshape(-1, geo.patch, geo.patch).astype(np.float32)
    if device.type == "cpu":
        k = _stepper(net, geo, params, device)
        k.pixels[:] = u
        mu, sc = k.dense()
    else:
        tp = _tile_params(geo, params, device)
        inside = np.tile(geo.inside, (len(tiles), 1, 1)).astype(np.float32)
        ut, it = torch.from_numpy(u).to(device), torch.from_numpy(inside).to(device)
        mu, sc = torch.empty_like(ut), torch.empty_like(ut)
        step = max(1, _DENSE_PIXELS // (geo.patch * geo.patch))
        for k in range(0, ut.shape[0], step):
            sl = slice(k, k + step)
            pred = net.dense(ut[sl], it[sl], TileParams(tp.shift[sl], tp.mid[sl], tp.vmax[sl]))
            mu[sl], sc[sl] = pred.mu16, pred.scale
        mu, sc = mu.cpu().numpy(), sc.cpu().numpy()
    shape = (len(tiles), -1)
    return tuple(a.reshape(shape).astype(np.int64) for a in (mu, sc, u))


def _side_info(
    stack: np.ndarray, refs: list[TileRef]
) -> tuple[list[np.ndarray], list[ChunkParams], list[int]]:
    """Every tile's pixels and side information, and the indices of the coded (non-constant) ones."""
    tiles = [stack[r.plane, r.y : r.y + r.h, r.x : r.x + r.w] for r in refs]
    params = [chunk_params(t) for t in tiles]
    return tiles, params, [i for i, p in enumerate(params) if p.kind == _KIND_CODED]


def _predictions(
    net,
    tiles: list[np.ndarray],
    params: list[ChunkParams],
    refs: list[TileRef],
    coded: list[int],
    patch: int,
    device: torch.device,
) -> Iterator[tuple[Geometry, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Teacher-forced ``(geometry, tile index, mu16, scale, u)`` of the ``coded`` tiles, batch
    by batch: the shared front half of encoding and of the rate map."""
    for geo, sub in _batches([refs[i] for i in coded], patch):
        idx = [coded[i] for i in sub]
        mu, sc, u = _dense(net, geo, [tiles[i] for i in idx], [params[i] for i in idx], device)
        for b, i in enumerate(idx):
            yield geo, i, mu[b], sc[b], u[b]


def encode_tiles(
    net,
    stack: np.ndarray,
    refs: list[TileRef],
    *,
    patch: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> list[bytes]:
    """Chunk payloads (header + range-coded words) of every tile in ``refs``, in order."""
    tiles, params, coded = _side_info(stack, refs)
    payloads: list[bytes] = [p.pack() for p in params]
    if progress:
        progress(len(refs) - len(coded))
    for geo, i, mu, sc, u in _predictions(net, tiles, params, refs, coded, patch, device):
        pos, sizes = geo.stream_order, geo.step_sizes
        payloads[i] += encode_chunk(mu[pos], sc[pos], u[pos], params[i].vmax, sizes)
        if progress:
            progress(1)
    return payloads


def _stepper(net, geo: Geometry, params: list[ChunkParams], device: torch.device):
    """Step-wise predictor of a batch: the compiled kernel on CPU, torch elsewhere (same integers)."""
    tp = _tile_params(geo, params, device)
    inside = np.tile(geo.inside, (len(params), 1, 1))
    if device.type == "cpu":
        side = (t.numpy() for t in (tp.shift, tp.mid, tp.vmax))
        return CpuSteps(net, inside.astype(np.float32), *side)
    return TorchSteps(net, torch.from_numpy(inside).to(device), tp)


def decode_tiles(
    net,
    refs: list[TileRef],
    payloads: list[bytes],
    out: np.ndarray,
    *,
    patch: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Decode chunk payloads into ``out`` (an (N, H, W) array of the stored dtype) at their tiles."""
    parsed = [ChunkParams.unpack(p) for p in payloads]
    lim = np.iinfo(out.dtype)
    for p, _ in parsed:
        if p.vmin < lim.min or p.vmin + p.vmax > lim.max:
            msg = (
                f"chunk value range [{p.vmin}, {p.vmin + p.vmax}] does not fit {out.dtype}: corrupt"
            )
            raise StreamError(msg)
    coded = []
    for i, (p, _) in enumerate(parsed):
        r = refs[i]
        if p.kind == _KIND_CONSTANT:
            out[r.plane, r.y : r.y + r.h, r.x : r.x + r.w] = p.vmin
        else:
            coded.append(i)
    if progress:
        progress(len(refs) - len(coded))

    for geo, sub in _batches([refs[i] for i in coded], patch):
        idx = [coded[i] for i in sub]
        params = [parsed[i][0] for i in idx]
        _decode_batch(net, geo, idx, params, [parsed[i][1] for i in idx], refs, out, device)
        if progress:
            progress(len(idx))


def _decode_batch(
    net,
    geo: Geometry,
    idx: list[int],
    params: list[ChunkParams],
    words: list[bytes],
    refs: list[TileRef],
    out: np.ndarray,
    device: torch.device,
) -> None:
    """Decode one batch of equal-size tiles, step by step, into ``out``."""
    decoders = ChunkDecoders(words, [p.vmax for p in params])
    steps = _stepper(net, geo, params, device)
    patch = geo.patch
    pixels = np.zeros((len(idx) * geo.n_patches, patch, patch), np.float32)
    for s, mask in enumerate(geo.step_inside):
        mu, sc = (
            np.asarray(t).astype(np.int64).reshape(len(idx), *mask.shape)[:, mask]
            for t in steps.predict(s)
        )
        step_vals = np.zeros((len(idx), *mask.shape), np.float32)
        step_vals[:, mask] = decoders.decode_step(mu, sc)
        step_vals = step_vals.reshape(-1, mask.shape[1])
        steps.write(s, step_vals)
        pixels[:, *geo.step_cells(s)] = step_vals
    pixels = pixels.astype(np.int64).reshape(len(idx), geo.n_patches, patch, patch)
    for b, i in enumerate(idx):
        r = refs[i]
        out[r.plane, r.y : r.y + r.h, r.x : r.x + r.w] = (
            geo.from_patches(pixels[b]) + params[b].vmin
        )


def _tile_bits(
    net, stack: np.ndarray, refs: list[TileRef], patch: int, device: torch.device
) -> Iterator[tuple[TileRef, np.ndarray]]:
    """Bits of every pixel of each coded tile under the integer tables, ``(ref, (h, w))``."""
    tiles, params, coded = _side_info(stack, refs)
    for geo, i, mu, sc, u in _predictions(net, tiles, params, refs, coded, patch, device):
        bits = focus.code_lengths(mu, sc, u, params[i].vmax)
        yield refs[i], geo.from_patches(bits.reshape(geo.n_patches, patch, patch))


def rate_tiles(
    net,
    stack: np.ndarray,
    refs: Iterable[TileRef],
    *,
    patch: int,
    device: torch.device,
) -> np.ndarray:
    """Bits per sample of every pixel under the integer tables (float32, shape of ``stack``)."""
    rates = np.zeros(stack.shape, np.float32)
    for r, bits in _tile_bits(net, stack, list(refs), patch, device):
        rates[r.plane, r.y : r.y + r.h, r.x : r.x + r.w] = bits
    return rates


def probe_refs(stack: np.ndarray, tile: int, *, count: int = 4, side: int = 128) -> list[TileRef]:
    """A cheap rate probe: the central ``side`` x ``side`` windows of up to ``count`` textured
    tiles spread evenly over the stack (constant tiles cost nothing under any model)."""
    textured = [
        r
        for r in tile_grid(stack.shape, tile)
        if np.ptp(stack[r.plane, r.y : r.y + r.h, r.x : r.x + r.w]) > 0
    ]
    pick = [textured[int(k)] for k in np.linspace(0, len(textured) - 1, count)] if textured else []
    out = []
    for r in dict.fromkeys(pick):  # unique, in order
        h, w = min(side, r.h), min(side, r.w)
        out.append(TileRef(r.plane, r.y + (r.h - h) // 2, r.x + (r.w - w) // 2, h, w))
    return out


def probe_bits(net, stack: np.ndarray, refs: list[TileRef], *, patch: int, device) -> float:
    """Total code length in bits of the windows ``refs`` (see :func:`probe_refs`)."""
    return float(sum(bits.sum() for _, bits in _tile_bits(net, stack, refs, patch, device)))
