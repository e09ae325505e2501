"""Codec engine: planes -> tiles -> batched network passes -> range-coded chunk payloads, and back.

The encoder runs the teacher-forced dense pass (all pixels at once); the decoder runs the
step-wise Cache-then-Select path. Both produce the same integers (``tests/model``), so every
frequency table the decoder builds is the encoder's. Tiles of equal size are batched across
planes; each tile is a chunk with its own small header.

Plane context: with ``context = K > 1`` the encoder may code a tile of plane ``k`` (``k % K``
not 0) in terms of the same tile of plane ``k - 1`` (slices of a volume, bands of a raster):
as its difference (a ``delta`` chunk; a cheap MED estimate preselects the candidates), or as
itself with every prediction refined by the reference's prediction error at the same pixel (a
``resid`` chunk), whichever the network codes in the fewest bits. Such chunks decode after
their reference, so a tile needs at most ``K - 1`` others; every other chunk decodes on its
own. Design and measurements: docs/design.md ("Context across planes").

Feedback: any coded tile may also refine its means with its own errors at causal neighbours
(a ``feedback`` chunk; docs/design.md, "Feedback chunks"), where the encoder finds that it
saves bits. Refinements are integer arithmetic on the network's integer predictions
(:func:`_refine`), so encoder and decoder stay bit-exact.

Value maps (codec format 5): a tile that leaves values of its range unused (thresholded
micro-CT, ultrasound, nodata beside terrain) may be coded as the ranks of its values
among those it uses, the unused runs listed in its chunk header (docs/design.md, "Value maps").

Linear feedback (codec format 6): a feedback chunk may instead carry integer weights, fitted
by the encoder, over the tile's causal values and errors (:mod:`linear`; docs/design.md,
"Linear feedback").

Flat flags (codec format 7): where its four causal neighbours share a value, a pixel may first
code whether it has that value too (:mod:`flat`; docs/design.md, "Flat flags").
"""

from __future__ import annotations

import struct
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numba
import numpy as np
import torch

from llic_imaging.codec import flat, focus, intcdf, linear
from llic_imaging.codec.entropy import ChunkDecoders, encode_chunk
from llic_imaging.codec.schedule import Geometry
from llic_imaging.errors import StreamError
from llic_imaging.model.cpu_kernel import CpuSteps
from llic_imaging.model.hpac import TileParams, TorchSteps

__all__ = [
    "ChunkParams",
    "add_references",
    "probe_bits",
    "probe_refs",
    "TileRef",
    "chunk_params",
    "decode_tiles",
    "encode_tiles",
    "rate_tiles",
    "tile_grid",
]

_CHUNK_HEADER = struct.Struct("<BiIBI")  # codec formats 1-2: kind, vmin, vmax, shift, mid
_KIND_CONSTANT, _KIND_CODED = 0, 1
_DELTA = 2  # kind flag: the values are differences to the same tile of the previous plane
# kind flags of refined chunks (format 3): predictions add gain/64 of a prediction error, and the
# scale level drops by ``tighten`` (docs/design.md). The error is the previous plane's at the
# same pixel (resid) or a weighted mean of the tile's own at causal neighbours (feedback).
_RESID, _FEEDBACK = 4, 8
_KINDS = (_KIND_CONSTANT, _KIND_CODED, _DELTA, _DELTA | _KIND_CODED)
_KINDS_FORMAT3 = (*_KINDS, _RESID | _KIND_CODED, _FEEDBACK | _KIND_CODED)
# feedback taps: weights (summing to 8) of the errors at W, N, NE and NW, chosen per chunk
_TAPS = ((2, 2, 2, 2), (8, 0, 0, 0), (0, 8, 0, 0), (4, 4, 0, 0))
_TIGHTEN = (0, 2, 4, 6, 8, 10)  # the encoder's search: see _best_refinement
# a resid chunk must save this share of the tile's own bits: below it, the dependency (reading
# the tile decodes its reference too) is not worth it, and noise cannot pick it by chance
_RESID_MARGIN = 0.01
_FEEDBACK_MARGIN = 64  # bits a feedback chunk must save: its header's extra bytes, and more
_LINEAR_FIT, _LINEAR_PICK = 4, 8  # linear feedback: every 4th position fits, every 8th picks
_LINEAR_MIN = 16 * _FEEDBACK_MARGIN  # bits: below, 11 weights and the margin take a fifth
_LINEAR_CLEAR = 4  # plain feedback is searched unless linear saves this many times its header
# a value map is tried (one more network pass) where ranks make the cheap MED cost 1 % smaller
# (on the validation tiles: 48 of the 421 with unused values tried, 13.2 of the 16.4 KiB that
# trying every one would save) or where one unused run spans a quarter of the range (nodata,
# padding, thresholds: the DEM and MR4, which the cost misses); docs/design.md, "Value maps"
_MAP_TRY = 0.99
_MAP_RUN = 0.25
MAPPED_FORMAT = 5  # codec format whose coded chunk headers end with a value map
LINEAR_FORMAT = 6  # format 5's headers, and feedback chunks may be linear (taps >= len(_TAPS))
FLAT_FORMAT = 7  # format 6's headers, and every coded chunk says whether it has flat flags
# The encoder weighs formats 3, 6 (which holds every option format 5 does, in the same
# headers) and 7 against each other and records the oldest format that holds the stream it keeps.
FORMATS = (3, LINEAR_FORMAT, FLAT_FORMAT)
_FLAT_MARGIN = 16  # bits flat flags must save in a chunk (noise in the estimate, not the header)
_ESTIMATE_SLACK = 128  # bits two formats' words of a chunk may differ beyond their estimates
MAX_SHIFT = 12
# pixels per batch of tiles: every step of a batch costs ~1 ms of Python whatever its size, and
# the CPU path keeps only a ring of four steps' features (8192^2 uint16 peaks at ~0.8 GB
# with 2^18 or 2^20; docs/design.md, "Runtime defaults")
_BATCH_PIXELS = 1 << 20
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
    gain: int = 0  # refined chunks: share of the prediction error added, in 1/64
    tighten: int = 0  # refined chunks: scale levels (1/8 octave) taken off the prediction
    taps: int = 0  # feedback chunks: which neighbour weights (index into _TAPS), or from
    # len(_TAPS) on a linear feedback chunk's tap set (linear.SETS[taps - len(_TAPS)])
    weights: tuple[int, ...] = ()  # linear feedback chunks: one integer weight per tap
    # mapped chunks: the runs (start, length) of values of [0, span] the tile does not use;
    # the chunk codes each value's rank among the used ones (so vmax is the largest rank)
    gaps: tuple[tuple[int, int], ...] = ()
    flat: int = 0  # coded chunks in format 7: 1 if positions with agreeing neighbours carry flags

    @property
    def span(self) -> int:
        """Range of the tile's values above ``vmin`` (``vmax`` plus the unused runs)."""
        return self.vmax + sum(n for _, n in self.gaps)

    def values(self, coded: np.ndarray) -> np.ndarray:
        """Values above ``vmin`` of decoded symbols: ranks through the value map, if any."""
        if not self.gaps:
            return coded
        used = np.ones(self.span + 1, bool)
        for start, n in self.gaps:
            used[start : start + n] = False
        return np.flatnonzero(used)[coded]

    @property
    def coded(self) -> bool:
        """Range-coded (else constant: every value is ``vmin``)."""
        return bool(self.kind & _KIND_CODED)

    @property
    def delta(self) -> bool:
        """Values are differences to the same tile of the previous plane."""
        return bool(self.kind & _DELTA)

    @property
    def resid(self) -> bool:
        """Predictions are refined by the previous plane's prediction error (see :func:`_refine`)."""
        return bool(self.kind & _RESID)

    @property
    def feedback(self) -> bool:
        """Predictions are refined by the tile's own errors at causal neighbours."""
        return bool(self.kind & _FEEDBACK)

    @property
    def linear(self) -> bool:
        """A feedback chunk whose means are refined by fitted weights (:mod:`linear`)."""
        return self.feedback and self.taps >= len(_TAPS)

    @property
    def format(self) -> int:
        """The oldest codec format whose headers can carry this chunk."""
        if self.flat:
            return FLAT_FORMAT
        return LINEAR_FORMAT if self.linear else MAPPED_FORMAT if self.gaps else 3

    @property
    def needs_reference(self) -> bool:
        """Decodes only after the same tile of the previous plane."""
        return self.delta or self.resid

    def pack(self, fmt: int = 3) -> bytes:
        """The compact header (codec formats 3-4): one byte ``kind | shift << 4``, then LEB128
        varints of zigzag(vmin), for a coded chunk vmax and mid, for a refined chunk gain and
        tighten, for a feedback chunk taps: 2-14 bytes (an 8-bit tile's coded header 5) instead
        of formats 1-2's fixed 14, 0.3 % of an 8-bit CT slice's stream. Format 5 adds to every
        coded chunk its value map: the number of unused runs, then for each the used values
        before it (at least 1, less 1) and its length (less 1), from the end of the last.
        Format 6 is format 5 whose linear feedback chunks add their weights after ``taps``;
        format 7 adds to every coded chunk, after its map, ``flat`` (0 or 1)."""
        out = bytearray([self.kind | self.shift << 4])
        fields = [_zigzag(self.vmin)]
        fields += [self.vmax, self.mid] if self.coded else []
        fields += [self.gain, self.tighten] if self.resid or self.feedback else []
        fields += [self.taps] if self.feedback else []
        fields += [_zigzag(w) for w in self.weights]
        fields += _map_fields(self.gaps) if self.coded and fmt >= MAPPED_FORMAT else []
        fields += [self.flat] if self.coded and fmt >= FLAT_FORMAT else []
        for value in fields:
            while value >= 0x80:
                out.append(value & 0x7F | 0x80)
                value >>= 7
            out.append(value)
        return bytes(out)

    @classmethod
    def unpack(cls, payload: bytes, *, fmt: int = 3) -> tuple[ChunkParams, bytes]:
        """Header and range-coded words of a payload in codec format ``fmt``: fixed headers
        (1-2), compact ones (3-4), compact ones with value maps (5), linear feedback (6) and
        flat flags (7)."""
        compact = fmt >= 3
        if compact:
            p, size = cls._unpack_compact(payload, fmt)
        else:
            if len(payload) < _CHUNK_HEADER.size:
                msg = f"chunk payload has {len(payload)} bytes, shorter than its {_CHUNK_HEADER.size}-byte header"
                raise StreamError(msg)
            p, size = cls(*_CHUNK_HEADER.unpack_from(payload)), _CHUNK_HEADER.size
        if (
            p.kind not in (_KINDS_FORMAT3 if compact else _KINDS)
            or p.gain > 255
            or p.tighten > 15
            or p.taps >= len(_TAPS) + (len(linear.SETS) if fmt >= LINEAR_FORMAT else 0)
            or (p.linear and p.gain)
            or any(abs(w) > linear.MAX_WEIGHT for w in p.weights)
            or p.vmax > 0xFFFF
            or p.vmin < (-0xFFFF if p.delta else -0x8000)
            or p.vmin + p.span > 0xFFFF
            or p.shift > MAX_SHIFT
            or p.mid > p.vmax
            or (p.gaps and p.needs_reference)
            or p.flat > 1
        ):
            msg = f"chunk header is invalid: {p}"
            raise StreamError(msg)
        return p, payload[size:]

    @classmethod
    def _unpack_compact(cls, payload: bytes, fmt: int) -> tuple[ChunkParams, int]:
        """A format 3-7 header (see :meth:`pack`) and its length in bytes; checked here only
        as far as reading it needs."""
        if not payload:
            msg = "chunk payload is empty; it has no header"
            raise StreamError(msg)
        kind, shift = payload[0] & 15, payload[0] >> 4
        coded, refined = bool(kind & _KIND_CODED), bool(kind & (_RESID | _FEEDBACK))
        names = ["vmin", *["vmax", "mid"] * coded, *["gain", "tighten"] * refined]
        names += ["taps"] * bool(kind & _FEEDBACK)
        fields, pos = {}, 1
        for name in names:
            fields[name], pos = _read_varint(payload, pos)
        fields["vmin"] = _unzigzag(fields["vmin"])
        fields.setdefault("vmax", 0)
        fields.setdefault("mid", 0)
        linear_set = fields.get("taps", 0) - len(_TAPS)
        if fmt >= LINEAR_FORMAT and 0 <= linear_set < len(linear.SETS):
            weights = []
            for _ in linear.SETS[linear_set]:
                w, pos = _read_varint(payload, pos)
                weights.append(_unzigzag(w))
            fields["weights"] = tuple(weights)
        if fmt >= MAPPED_FORMAT and coded:
            fields["gaps"], pos = _read_map(payload, pos, fields["vmax"])
        if fmt >= FLAT_FORMAT and coded:
            fields["flat"], pos = _read_varint(payload, pos)
        return cls(kind, shift=shift, **fields), pos


def _unzigzag(v: int) -> int:
    return v >> 1 ^ -(v & 1)


def _zigzag(v: int) -> int:
    """Signed -> unsigned so that small magnitudes take one varint byte."""
    return v << 1 if v >= 0 else (-v << 1) - 1


def _map_fields(gaps: tuple[tuple[int, int], ...]) -> list[int]:
    """A value map's header fields (see :meth:`ChunkParams.pack`)."""
    fields, end = [len(gaps)], 0
    for start, n in gaps:
        fields += [start - end - 1, n - 1]
        end = start + n
    return fields


def _read_map(data: bytes, pos: int, vmax: int) -> tuple[tuple[tuple[int, int], ...], int]:
    """A value map (see :meth:`ChunkParams.pack`) of a chunk whose largest rank is ``vmax``.
    Every run follows a used value, so a well-formed map has at most ``vmax`` runs."""
    count, pos = _read_varint(data, pos)
    if count > vmax:
        msg = f"chunk header's value map has {count} unused runs for {vmax + 1} values: corrupt"
        raise StreamError(msg)
    gaps, end, used = [], 0, 0
    for _ in range(count):
        before, pos = _read_varint(data, pos)
        n, pos = _read_varint(data, pos)
        used += before + 1
        if used > vmax:  # the largest value must follow the last run
            msg = f"chunk header's value map uses more than {vmax + 1} values: corrupt"
            raise StreamError(msg)
        start = end + before + 1
        gaps.append((start, n + 1))
        end = start + n + 1
    return tuple(gaps), pos


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """One LEB128 value of at most 3 bytes (chunk header fields are below 2**17)."""
    value = 0
    for k in range(3):
        if pos + k >= len(data):
            msg = "chunk header is truncated"
            raise StreamError(msg)
        value |= (data[pos + k] & 0x7F) << 7 * k
        if not data[pos + k] & 0x80:
            return value, pos + k + 1
    msg = "chunk header has a varint longer than 3 bytes: corrupt"
    raise StreamError(msg)


def tile_grid(shape: tuple[int, int, int], tile: int) -> list[TileRef]:
    """Tiles of an (N, H, W) stack in storage order: plane, then row, then column."""
    n, h, w = shape
    return [
        TileRef(k, y, x, min(tile, h - y), min(tile, w - x))
        for k in range(n)
        for y in range(0, h, tile)
        for x in range(0, w, tile)
    ]


def _med_residuals(u: np.ndarray) -> np.ndarray:
    """|value - MED prediction| of every pixel with a west, north and north-west neighbour."""
    u = u.astype(np.int64)
    w, n, nw = u[1:, :-1], u[:-1, 1:], u[:-1, :-1]
    mx, mn = np.maximum(w, n), np.minimum(w, n)
    med = np.where(nw >= mx, mn, np.where(nw <= mn, mx, w + n - nw))
    return np.abs(u[1:, 1:] - med)


def _med_residual_shift(u: np.ndarray) -> int:
    """Input scale 2**-sh so that typical neighbour differences land near 16 (one unit)."""
    if u.shape[0] < 2 or u.shape[1] < 2:
        return 0
    r = _med_residuals(u)
    mar = int(r.sum()) // r.size
    return int(min(MAX_SHIFT, max(0, mar.bit_length() - 5)))


def _cost(values: np.ndarray) -> float:
    """A cheap estimate of a tile's bits: sum of log2(1 + |MED residual|), plus its range for
    tiles too small to have residuals."""
    if values.shape[0] < 2 or values.shape[1] < 2:
        return float(np.ptp(values))
    return float(np.log2(1.0 + _med_residuals(values)).sum())


def chunk_params(tile: np.ndarray, *, delta: bool = False) -> ChunkParams:
    """Side information of one tile: value range, input shift and first-pixel anchor."""
    flag = _DELTA if delta else 0
    vmin, vmax = int(tile.min()), int(tile.max())
    if vmin == vmax:
        return ChunkParams(_KIND_CONSTANT | flag, vmin, 0, 0, 0)
    u = tile.astype(np.int64) - vmin
    mid = int(np.median(u))
    return ChunkParams(_KIND_CODED | flag, vmin, vmax - vmin, _med_residual_shift(u), mid)


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
    return tiles, params, [i for i, p in enumerate(params) if p.coded]


def _deltas(
    stack: np.ndarray, refs: list[TileRef], tiles: list[np.ndarray], context: int
) -> dict[int, np.ndarray]:
    """Tiles of plane k (``k % context`` > 0) whose difference to plane k - 1 fits a chunk and
    looks cheaper than the tile by :func:`_cost`: the candidates for delta chunks."""
    out = {}
    for i, r in enumerate(refs):
        if context > 1 and r.plane % context:
            d = tiles[i].astype(np.int64) - stack[r.plane - 1, r.y : r.y + r.h, r.x : r.x + r.w]
            if np.ptp(d) <= 0xFFFF and _cost(d) < _cost(tiles[i]):
                out[i] = d
    return out


def _refine(
    mu16: np.ndarray, scale: np.ndarray, error16: np.ndarray, p: ChunkParams
) -> tuple[np.ndarray, np.ndarray]:
    """A resid chunk's integer predictions: the network's mean plus ``gain / 64`` of the
    reference tile's prediction error at the same pixels (1/16 px), the scale ``tighten``
    levels smaller. Encoder and decoder both call this on int64 arrays (floor shifts)."""
    return _shifted(mu16, scale, (p.gain * error16 + 32) >> 6, p)


def _shifted(
    mu16: np.ndarray, scale: np.ndarray, add: np.ndarray, p: ChunkParams
) -> tuple[np.ndarray, np.ndarray]:
    """Means moved by ``add`` (1/16 px) into the chunk's range, scales ``p.tighten`` smaller.
    (``minimum``/``maximum``, not ``np.clip``: the decoder calls this per chunk and step, on a
    few hundred values, where ``np.clip``'s Python wrapper costs more than the arithmetic.)"""
    mu = np.minimum(np.maximum(mu16 + add, 0), 16 * p.vmax)
    return mu, np.minimum(np.maximum(scale - p.tighten, 0), intcdf.N_SCALES - 1)


def _resid_refs(
    refs: list[TileRef], params: list[ChunkParams], intra: list[ChunkParams], context: int
) -> dict[int, int]:
    """Tile -> reference tile, for the tiles that may be coded as resid chunks: coded as
    themselves (not a constant delta), in a context group after its first plane, with a coded
    reference (whose prediction error exists)."""
    if context < 2:
        return {}
    return {
        i: j
        for i, j in enumerate(_previous(refs))
        if j is not None and refs[i].plane % context and params[i].coded and intra[j].coded
        if params[i] is intra[i] and params[j] is intra[j]  # both have an intra prediction
    }


def _best_refinement(
    pred: tuple[np.ndarray, np.ndarray, np.ndarray], options: list[tuple[ChunkParams, np.ndarray]]
) -> tuple[float, ChunkParams, tuple]:
    """The best refined option of a tile: ``(bits, params, refined prediction)``.

    ``options`` pairs a header template (kind, taps) with its error in stream order. The search
    runs on every 8th pixel: gains 16, 32 and 48 at tighten 2 for every option, then every
    tighten at the best gain and its neighbours 8 apart (30 trials for one option)."""
    mu, sc, u = pred
    sub = slice(None, None, 8)

    def cost(q: ChunkParams, e: np.ndarray, k: slice) -> float:
        return float(focus.code_lengths(*_refine(mu[k], sc[k], e[k], q), u[k], q.vmax).sum())

    trials = [(replace(t, gain=g, tighten=2), e) for t, e in options for g in (16, 32, 48)]
    q, e = min(trials, key=lambda t: cost(*t, sub))
    near = [q.gain - 8, q.gain, q.gain + 8]
    q = min(
        (replace(q, gain=g, tighten=t) for g in near for t in _TIGHTEN),
        key=lambda q: cost(q, e, sub),
    )
    return cost(q, e, slice(None)), q, (*_refine(mu, sc, e, q), u)


def _padded(errors: np.ndarray) -> np.ndarray:
    """(n_patches, P, P) errors in a zero frame (one row above, one column each side), so that
    every causal neighbour read is in bounds and reads 0 outside the patch."""
    n, p, _ = errors.shape
    out = np.zeros((n, p + 1, p + 2), np.int64)
    out[:, 1:, 1:-1] = errors
    return out


def _neighbour_errors(padded: np.ndarray, at: tuple, taps: int) -> np.ndarray:
    """Weighted mean of the errors at W, N, NE and NW of the positions ``at`` (patch, row,
    column index arrays, broadcast together) from :func:`_padded` errors; floor of sum / 8."""
    k, r, c = at
    w = _TAPS[taps]
    acc = w[0] * padded[k, r + 1, c] + w[1] * padded[k, r, c + 1]
    acc += w[2] * padded[k, r, c + 2] + w[3] * padded[k, r, c]
    return acc >> 3


def _feedback_option(
    geo: Geometry, dense: tuple[np.ndarray, np.ndarray, np.ndarray], p: ChunkParams, own: float
) -> tuple[float, ChunkParams, tuple]:
    """A coded tile's best feedback refinement, ``(bits, params, refined prediction)``, from its
    teacher-forced ``(mu16, scale, u)`` (patch layout) and its own bits ``own``. The bits are
    infinite unless they save ``_FEEDBACK_MARGIN``: then the tile is better coded as itself."""
    mu, sc, u = dense
    errors = _padded(_own_errors(geo, mu, u))
    pos = geo.stream_order
    at = _stream_positions(geo)
    template = replace(p, kind=p.kind | _FEEDBACK)
    options = [
        (replace(template, taps=t), _neighbour_errors(errors, at, t)) for t in range(len(_TAPS))
    ]
    bits, q, refined = _best_refinement((mu[pos], sc[pos], u[pos]), options)
    return (bits if bits < own - _FEEDBACK_MARGIN else np.inf), q, refined


def _own_errors(geo: Geometry, mu: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The network's errors ``16 u - mu16`` of a tile (patch layout, flat) as ``(n_patches,
    P, P)``, 0 outside the tile: what feedback and linear chunks read at causal neighbours."""
    shape = (geo.n_patches, geo.patch, geo.patch)
    return np.where(geo.inside.reshape(-1), 16 * u - mu, 0).reshape(shape)


def _stream_positions(geo: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patch, row, column) of every position in stream order."""
    return tuple(np.concatenate(a) for a in zip(*geo.step_at, strict=True))


def _linear_option(
    geo: Geometry, dense: tuple[np.ndarray, np.ndarray, np.ndarray], p: ChunkParams, own: float
) -> tuple[float, ChunkParams, tuple]:
    """A coded tile's best linear feedback, ``(bits, params, refined prediction)`` as
    :func:`_feedback_option`: weights of every tap set fitted on every 4th position, the set
    and ``tighten`` chosen on every 8th, the weights' header bytes counted. Infinite bits
    unless it saves ``_FEEDBACK_MARGIN`` over the tile as itself; not tried on tiles that
    cost less than ``_LINEAR_MIN`` bits (their headers could not pay)."""
    if own < _LINEAR_MIN:
        return np.inf, p, ()
    mu, sc, u = dense
    values = geo.framed(u)
    errors = _own_errors(geo, mu, u)
    at = _stream_positions(geo)
    pos = geo.stream_order
    m, s, v = mu[pos], sc[pos], u[pos]
    fit = slice(None, None, _LINEAR_FIT)
    fitted = linear.fit(values, errors, tuple(a[fit] for a in at), m[fit], s[fit])
    pick = slice(None, None, _LINEAR_PICK)
    sub = tuple(a[pick] for a in at)
    base = replace(p, kind=p.kind | _FEEDBACK)

    def cost(q: ChunkParams, add: np.ndarray) -> float:
        bits = float(focus.code_lengths(*_shifted(m[pick], s[pick], add, q), v[pick], p.vmax).sum())
        return _LINEAR_PICK * bits + 8 * len(q.pack())

    trials = []  # each set at tighten 2, then every tighten for the best set
    for k, w in enumerate(fitted):
        q = replace(base, taps=len(_TAPS) + k, tighten=2, weights=tuple(int(x) for x in w))
        add = linear.correction(values, errors, sub, m[pick], k, w)
        trials.append((cost(q, add), q, add))
    _, q, add = min(trials, key=lambda t: t[0])
    q = min((replace(q, tighten=t) for t in _TIGHTEN), key=lambda q: cost(q, add))
    add = linear.correction(values, errors, at, m, q.taps - len(_TAPS), q.weights)
    refined = (*_shifted(m, s, add, q), v)
    bits = float(focus.code_lengths(*refined, p.vmax).sum())
    extra = 8 * (len(q.pack()) - len(p.pack()))
    return (bits if bits + extra < own - _FEEDBACK_MARGIN else np.inf), q, refined


def _predictions(
    net, jobs: list[tuple[TileRef, np.ndarray, ChunkParams]], patch: int, device: torch.device
) -> Iterator[tuple[int, Geometry, np.ndarray, np.ndarray, np.ndarray]]:
    """Teacher-forced ``(job index, geometry, mu16, scale, u)`` of coded tiles ``(ref, values,
    params)``, batch by batch, in job order within each tile size: the shared front half of
    encoding and of the rate map."""
    for geo, sub in _batches([ref for ref, _, _ in jobs], patch):
        mu, sc, u = _dense(net, geo, [jobs[i][1] for i in sub], [jobs[i][2] for i in sub], device)
        for b, i in enumerate(sub):
            yield i, geo, mu[b], sc[b], u[b]


def _value_map(tile: np.ndarray, p: ChunkParams) -> tuple[np.ndarray, ChunkParams] | None:
    """A coded tile as the ranks of its values among those it uses (plus ``vmin``, as the
    network's input expects) and its mapped header, where the tile leaves values of its range
    unused and :func:`_cost` finds the ranks cheaper by ``_MAP_TRY``; else None."""
    u = tile.astype(np.int64) - p.vmin
    used, ranks = np.unique(u, return_inverse=True)
    if len(used) == p.vmax + 1:
        return None
    ranks = ranks.reshape(u.shape)
    steps = np.diff(used)
    if steps.max() <= _MAP_RUN * p.vmax and _cost(ranks) >= _MAP_TRY * _cost(u):
        return None
    runs = np.flatnonzero(steps > 1)
    gaps = tuple((int(used[k]) + 1, int(used[k + 1] - used[k]) - 1) for k in runs)
    q = ChunkParams(
        p.kind, p.vmin, len(used) - 1, _med_residual_shift(ranks), int(np.median(ranks)), gaps=gaps
    )
    return ranks + p.vmin, q


@dataclass(frozen=True)
class _Choice:
    """How a coded tile is coded: its header and its predictions ``(mu16, scale, u)`` in
    stream order (``u``: what the chunk codes, ranks for a mapped chunk)."""

    params: ChunkParams
    pred: tuple[np.ndarray, np.ndarray, np.ndarray]
    geo: Geometry
    cost: float  # the model's bits for its words (their exact length is known once coded)
    flags: flat.Flags | None = None  # the flat flags it carries (set by :meth:`with_flags`)

    def bits(self) -> np.ndarray:
        """Code length of every position, in stream order, its flat flag included."""
        bits = focus.code_lengths(*self.pred, self.params.vmax)
        if self.flags is not None:
            bits[self.flags.hits] = 0
            bits[self.flags.at] += self.flags.bits()
        return bits

    def words(self) -> bytes:
        return encode_chunk(*self.pred, self.params.vmax, self.geo.step_sizes, self.flags)

    def with_flags(self) -> _Choice:
        """This choice with flat flags (:mod:`flat`) where they save ``_FLAT_MARGIN`` bits,
        else itself."""
        geo = self.geo
        steps = np.repeat(np.arange(len(geo.step_sizes)), geo.step_sizes)
        u = np.zeros(geo.n_patches * geo.patch * geo.patch, np.int64)
        u[geo.stream_order] = self.pred[2]
        f = flat.flags(geo.framed(u), _stream_positions(geo), steps)
        if not f.hits.size:
            return self
        saved = focus.code_lengths(*(a[f.hits] for a in self.pred), self.params.vmax).sum()
        saved -= f.bits().sum()
        if saved < _FLAT_MARGIN:
            return self
        return _Choice(replace(self.params, flat=1), self.pred, self.geo, self.cost - saved, f)


def _choices(
    net, stack: np.ndarray, refs: list[TileRef], *, patch: int, device: torch.device, context: int
) -> tuple[list[ChunkParams], Iterator[tuple[int, dict[int, _Choice]]]]:
    """Every tile's header as far as side information goes (final for constant tiles), and
    for each coded tile ``(index, {format: choice})``: for each codec format the encoder may
    write (:data:`FORMATS`), the option that format can carry in the fewest bits, its
    header's bytes counted (often one option for all); in format 7 that option with flat
    flags where they pay (:meth:`_Choice.with_flags`).

    Options: the tile as itself, as a feedback chunk (:func:`_feedback_option`) or as a
    linear feedback chunk (:func:`_linear_option`, format 6); the same for its value map
    (:func:`_value_map`, format 5); with ``context`` K > 1 also a delta chunk
    (:func:`_deltas`' candidates; a constant difference is taken at once) or a resid chunk
    (predictions refined by the previous plane's prediction error).
    """
    tiles, params, _ = _side_info(stack, refs)
    intra = list(params)
    deltas = {}
    for i, d in _deltas(stack, refs, tiles, context).items():
        dp = chunk_params(d, delta=True)
        if dp.coded:
            deltas[i] = (d, dp)
        else:  # a constant difference costs nothing more than its header
            tiles[i], params[i] = d, dp
    resid = _resid_refs(refs, params, intra, context)
    needed = set(resid.values())  # tiles whose prediction error a resid candidate reads
    jobs = []
    for i, (t, p) in enumerate(zip(tiles, params, strict=True)):
        if p.coded:
            jobs.append((i, t, p))
            if not p.delta and (mapped := _value_map(t, p)):
                jobs.append((i, *mapped))
        if i in deltas:
            jobs.append((i, *deltas[i]))
    passes: dict[int, int] = defaultdict(int)  # network passes still to come for each tile
    for i, _, _ in jobs:
        passes[i] += 1

    def options(
        j: int, geo: Geometry, *dense: np.ndarray
    ) -> list[tuple[float, ChunkParams, tuple]]:
        return _own_options(geo, dense, jobs[j][2])

    def decide() -> Iterator[tuple[int, dict[int, _Choice]]]:
        errors: dict[int, np.ndarray] = {}
        pending: dict[int, list] = defaultdict(list)
        predictions = _predictions(net, [(refs[i], t, p) for i, t, p in jobs], patch, device)
        for (j, geo, *_), own_options in _ahead(options, predictions, numba.get_num_threads()):
            i, _, p = jobs[j]
            found = pending[i]
            found.extend(own_options)
            own, _, pred = own_options[0]
            if not p.delta:
                if i in needed and not p.gaps:
                    errors[i] = 16 * pred[2] - pred[0]
                if i in resid and not p.gaps:
                    option = [(replace(p, kind=p.kind | _RESID), errors.pop(resid[i]))]
                    bits, q, refined = _best_refinement(pred, option)
                    # under the margin the dependency does not pay: never the cheapest then
                    found.append((bits if bits < (1 - _RESID_MARGIN) * own else np.inf, q, refined))
            passes[i] -= 1
            if passes[i]:
                continue
            del pending[i]
            choices = {}
            for fmt in FORMATS:
                # the fewest bits; the first option on a tie (intra first)
                cost = [
                    b + 8 * len(q.pack(fmt)) if q.format <= fmt else np.inf for b, q, _ in found
                ]
                k = int(np.argmin(cost))
                choices[fmt] = _Choice(found[k][1], found[k][2], geo, found[k][0])
            choices[FLAT_FORMAT] = choices[FLAT_FORMAT].with_flags()
            yield i, choices

    return params, decide()


def _own_options(
    geo: Geometry, dense: tuple[np.ndarray, np.ndarray, np.ndarray], p: ChunkParams
) -> list[tuple[float, ChunkParams, tuple]]:
    """A tile's options that need no other tile, ``(bits, params, prediction in stream
    order)``: itself first; then, unless it is a delta chunk, its linear feedback and, where
    that does not clearly win, its plain feedback."""
    mu, sc, u = dense
    pos = geo.stream_order
    pred = (mu[pos], sc[pos], u[pos])
    own = float(focus.code_lengths(*pred, p.vmax).sum())
    found = [(own, p, pred)]
    if p.delta:
        return found
    found.append(_linear_option(geo, dense, p, own))
    bits, q, _ = found[-1]
    # the plain weightings' 3-byte header may win where the weights' eats the gain
    if own - bits < _LINEAR_CLEAR * 8 * (len(q.pack()) - len(p.pack())):
        found.append(_feedback_option(geo, dense, p, own))
    return found


def _ahead(fn: Callable, items: Iterable[tuple], workers: int) -> Iterator[tuple[tuple, object]]:
    """``(item, fn(*item))`` for every item, in order. With ``workers`` > 1, ``fn`` runs on that
    many threads, up to ``workers`` items ahead of the consumer: the encoder's per-tile search
    is numpy and GIL-free numba, so tiles are searched side by side (and beside the next
    network batch) while the results, and so the stream, stay in tile order."""
    if workers < 2:
        for item in items:
            yield item, fn(*item)
        return
    window: deque = deque()
    with ThreadPoolExecutor(workers) as pool:
        for item in items:
            window.append((item, pool.submit(fn, *item)))
            if len(window) > workers:
                item, done = window.popleft()
                yield item, done.result()
        while window:
            item, done = window.popleft()
            yield item, done.result()


def encode_tiles(
    net,
    stack: np.ndarray,
    refs: list[TileRef],
    *,
    patch: int,
    device: torch.device,
    context: int = 1,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[bytes], int]:
    """Chunk payloads (header + range-coded words) of every tile in ``refs``, in order, and
    the codec format of their headers: 3 or, where value maps, linear feedback or flat flags
    save more than the bytes every coded header then carries, 5, 6 or 7 (:func:`_choices`
    says how each tile is coded in each; :func:`_contenders` which formats are still coded)."""
    params, decisions = _choices(net, stack, refs, patch=patch, device=device, context=context)
    chunks = {fmt: [(p, b"") for p in params] for fmt in FORMATS}
    if progress:
        progress(sum(not p.coded for p in params))
    live = list(FORMATS)  # formats still able to give the smallest stream
    estimate = dict.fromkeys(FORMATS, 0.0)  # each format's bits so far, by the model
    left, done = sum(p.coded for p in params), 0
    for i, choices in decisions:
        built: dict[int, tuple[ChunkParams, bytes]] = {}  # each distinct choice coded once
        for fmt in live:
            choice = choices[fmt]
            if id(choice.params) not in built:
                built[id(choice.params)] = (choice.params, choice.words())
            chunks[fmt][i] = built[id(choice.params)]
            estimate[fmt] += choice.cost + 8 * len(choice.params.pack(fmt))
        left, done = left - 1, done + 1
        live = _contenders(live, estimate, left, done)
        if progress:
            progress(1)
    size = {fmt: sum(len(p.pack(fmt)) + len(w) for p, w in chunks[fmt]) for fmt in live}
    kept = chunks[min(live, key=size.__getitem__)]
    fmt = max(p.format for p, _ in kept)
    if kept is not chunks[3]:
        fmt = max(fmt, MAPPED_FORMAT)
    return [p.pack(fmt) + w for p, w in kept], fmt


def _contenders(live: list[int], estimate: dict[int, float], left: int, done: int) -> list[int]:
    """The formats of ``live`` that may still code the smallest stream, from the model's bits
    so far (``estimate``) with ``left`` coded chunks to come and ``done`` coded: an older
    format than the leader can only catch up by its smaller headers (at most 2 bytes a chunk:
    the value map's and the flat field's), and the estimates are off from the coded words by
    less than ``_ESTIMATE_SLACK`` a chunk. Dropping the others early spares coding their
    words; the choice among the rest is still by exact bytes."""
    lead = min(live, key=estimate.__getitem__)
    slack = 16 * left + _ESTIMATE_SLACK * done
    return [f for f in live if f >= lead or estimate[f] - estimate[lead] <= slack]


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
    context: int = 1,
    fmt: int = 3,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Decode chunk payloads into ``out`` (an (N, H, W) array of the stored dtype) at their tiles.

    A delta chunk's reference (same tile, previous plane) must be among ``refs``; chunks decode
    in generations (0: no reference, g: reference in generation g - 1), each in batches.
    ``fmt``: the codec format of the payloads' chunk headers (:meth:`ChunkParams.unpack`).
    """
    parsed = [ChunkParams.unpack(p, fmt=fmt) for p in payloads]
    gens = _generations(refs, [p for p, _ in parsed], context)
    prev = _previous(refs)
    # tiles whose prediction errors a resid chunk reads: when they decode as themselves (not as
    # deltas), their own step predictions give the errors, which saves a pass over them later
    keep = {prev[i] for i, (p, _) in enumerate(parsed) if p.resid}
    errors: dict[int, np.ndarray] = {}
    lim = np.iinfo(out.dtype)
    for p, _ in parsed:
        if not p.delta and (p.vmin < lim.min or p.vmin + p.span > lim.max):
            msg = (
                f"chunk value range [{p.vmin}, {p.vmin + p.span}] does not fit {out.dtype}: corrupt"
            )
            raise StreamError(msg)
    for g in range(max(gens, default=-1) + 1):
        coded = []
        for i, (p, _) in enumerate(parsed):
            if gens[i] != g:
                continue
            if p.coded:
                coded.append(i)
            else:
                _place(out, refs[i], np.full((refs[i].h, refs[i].w), p.vmin, np.int64), p.delta)
                if progress:
                    progress(1)
        for geo, sub in _batches([refs[i] for i in coded], patch):
            idx = [coded[i] for i in sub]
            params = [parsed[i][0] for i in idx]
            words = [parsed[i][1] for i in idx]
            known = {
                b: errors.pop(prev[i])
                for b, i in enumerate(idx)
                if params[b].resid and prev[i] in errors
            }
            todo = [b for b, p in enumerate(params) if p.resid and b not in known]
            known |= _reference_errors(net, geo, [refs[idx[b]] for b in todo], out, device, todo)
            # a mapped tile's own errors are of its ranks: a resid chunk reads its values'
            record = [
                b
                for b, i in enumerate(idx)
                if i in keep and not params[b].delta and not params[b].gaps
            ]
            tiles = [refs[i] for i in idx]
            decoded, recorded = _decode_batch(net, geo, tiles, params, words, known, record, device)
            for i, values in zip(idx, decoded, strict=True):
                _place(out, refs[i], values, parsed[i][0].delta)
            errors |= {idx[b]: e for b, e in recorded.items()}
            if progress:
                progress(len(idx))


def _previous(refs: list[TileRef]) -> list[int | None]:
    """For every tile, the index in ``refs`` of the same tile one plane earlier (or None)."""
    where = {(r.plane, r.y, r.x, r.h, r.w): i for i, r in enumerate(refs)}
    return [where.get((r.plane - 1, r.y, r.x, r.h, r.w)) for r in refs]


def add_references(
    refs: list[TileRef],
    payloads: dict[int, bytes],
    read: Callable[[int], bytes],
    *,
    fmt: int = 3,
) -> None:
    """Add to ``payloads`` (chunk index -> payload) the chunks its delta chunks refer to,
    recursively, reading them with ``read``: decoding part of a stack with plane context
    decodes only what it needs."""
    prev = _previous(refs)
    todo = list(payloads)
    while todo:
        i = todo.pop()
        j = prev[i]
        if j is None or j in payloads:
            continue
        if ChunkParams.unpack(payloads[i], fmt=fmt)[0].needs_reference:
            payloads[j] = read(j)
            todo.append(j)


def _generations(refs: list[TileRef], params: list[ChunkParams], context: int) -> list[int]:
    """Decoding generation of every chunk; a delta chunk needs its reference among ``refs``."""
    prev = _previous(refs)
    gens = [0] * len(refs)
    for i in sorted(range(len(refs)), key=lambda i: refs[i].plane):
        r, ref = refs[i], prev[i]
        if not params[i].needs_reference:
            continue
        if context < 2 or r.plane % context == 0 or ref is None:
            msg = f"chunk at plane {r.plane} ({r.y}, {r.x}) refers to a plane outside its context group: corrupt"
            raise StreamError(msg)
        gens[i] = gens[ref] + 1
    return gens


def _place(out: np.ndarray, r: TileRef, values: np.ndarray, delta: bool) -> None:
    """Write a decoded tile (adding its reference tile for a delta chunk), range-checked."""
    window = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
    if delta:
        values = values + out[r.plane - 1][window]
        lim = np.iinfo(out.dtype)
        if values.min() < lim.min or values.max() > lim.max:
            msg = f"delta chunk at plane {r.plane} ({r.y}, {r.x}) leaves the {out.dtype} range: corrupt"
            raise StreamError(msg)
    out[r.plane][window] = values


def _reference_errors(
    net, geo: Geometry, refs: list[TileRef], out: np.ndarray, device: torch.device, at: list[int]
) -> dict[int, np.ndarray]:
    """The prediction errors (1/16 px) of the tiles one plane before ``refs``, already decoded
    into ``out``, keyed by ``at``: ``(n_patches, P, P)`` int64 each, from the same teacher-forced
    pass that gave the encoder its predictions. For references decoded as deltas, whose step
    predictions were of their difference."""
    if not refs:
        return {}
    tiles = [out[r.plane - 1, r.y : r.y + r.h, r.x : r.x + r.w] for r in refs]
    params = [chunk_params(t) for t in tiles]
    if not all(p.coded for p in params):
        msg = f"resid chunk at plane {refs[0].plane} refers to a constant tile: corrupt"
        raise StreamError(msg)
    mu, _, u = _dense(net, geo, tiles, params, device)
    shape = (geo.n_patches, geo.patch, geo.patch)
    return {b: (16 * u[k] - mu[k]).reshape(shape) for k, b in enumerate(at)}


def _decode_batch(
    net,
    geo: Geometry,
    tiles: list[TileRef],
    params: list[ChunkParams],
    words: list[bytes],
    errors: dict[int, np.ndarray],
    record: list[int],
    device: torch.device,
) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Decode one batch of equal-size tiles, step by step -> each tile's int64 values, and the
    prediction errors of the tiles at positions ``record`` (as :func:`_reference_errors`).

    ``errors``: the reference prediction errors of the batch's resid chunks (by position);
    ``tiles``: where the chunks sit (for errors). StreamError where a chunk does not end where
    its encoder ended it (:func:`_require_ended`)."""
    decoders = ChunkDecoders(words, [p.vmax for p in params])
    steps = _stepper(net, geo, params, device)
    patch, n = geo.patch, len(params)
    pixels = np.zeros((n * geo.n_patches, patch, patch), np.float32)
    # the network's own errors (against its mean before any refinement, as the encoder's),
    # kept for feedback chunks and for the tiles a resid chunk will read; 0 where not decoded.
    # Linear feedback chunks and chunks with flat flags also read their decoded values
    # (framed). Both are stacked with the linear chunks first: one call corrects those.
    lin = [b for b, p in enumerate(params) if p.linear]
    rest = sorted(({b for b, p in enumerate(params) if p.feedback} | set(record)) - set(lin))
    frame = geo.framed()  # nothing coded yet; errors use the same layout (see _padded)
    own_at = lin + rest
    own_stack = np.zeros((len(own_at), *frame.shape), np.int64)
    own = dict(zip(own_at, own_stack, strict=True))
    coded_at = lin + [b for b, p in enumerate(params) if p.flat and not p.linear]
    coded_stack = np.repeat(frame[None], len(coded_at), axis=0)
    coded = dict(zip(coded_at, coded_stack, strict=True))
    sets = [params[b].taps - len(_TAPS) for b in lin]
    weights = [params[b].weights for b in lin]
    counts = {b: [0, 0] for b, p in enumerate(params) if p.flat}  # flags so far: equal, seen
    for s, mask in enumerate(geo.step_inside):
        r, c = geo.step_cells(s)
        grid = [np.asarray(t).astype(np.int64).reshape(n, *mask.shape) for t in steps.predict(s)]
        mu, sc = (g[:, mask] for g in grid)
        where = geo.step_at[s]  # the step's positions, in the order of ``mu[b]``
        for b, e in errors.items():
            mu[b], sc[b] = _refine(mu[b], sc[b], e[where], params[b])
        if lin:
            k = len(lin)
            adds = linear.corrections(
                coded_stack[:k], own_stack[:k, :, 1:, 1:-1], where, mu[lin], sets, weights
            )
            for b, add in zip(lin, adds, strict=True):
                mu[b], sc[b] = _shifted(mu[b], sc[b], add, params[b])
        for b in rest:
            if (p := params[b]).feedback:
                mu[b], sc[b] = _refine(mu[b], sc[b], _neighbour_errors(own[b], where, p.taps), p)
        step_vals = np.zeros((n, *mask.shape), np.float32)
        step_vals[:, mask] = _step_values(decoders, mu, sc, coded, counts, where)
        got = step_vals.astype(np.int64)
        if own:
            own_stack[:, :, r + 1, c + 1] = np.where(mask, 16 * got[own_at] - grid[0][own_at], 0)
        if coded:
            coded_stack[:, :, r + 1, c + 1] = np.where(mask, got[coded_at], -1)
        step_vals = step_vals.reshape(-1, mask.shape[1])
        steps.write(s, step_vals)
        pixels[:, r, c] = step_vals
    _require_ended(decoders, tiles)
    pixels = pixels.astype(np.int64).reshape(n, geo.n_patches, patch, patch)
    values = [p.values(geo.from_patches(pixels[b])) + p.vmin for b, p in enumerate(params)]
    return values, {b: own[b][:, 1:, 1:-1].copy() for b in record}


def _require_ended(decoders: ChunkDecoders, tiles: list[TileRef]) -> None:
    """StreamError unless every chunk of a decoded batch ended where its encoder ended it.

    A decoder that computed other integers than the encoder (other weights, a platform that
    does not compute exactly) decodes other pixels from the same words: the per-chunk CRC-32
    cannot see it, and a window read has no digest of its pixels to catch it. Such a decoder
    almost never stops at the end of the words (``ChunkDecoders.misread``)."""
    if bad := decoders.misread():
        r = tiles[bad[0]]
        msg = (
            f"chunk at plane {r.plane} ({r.y}, {r.x}) did not end where the encoder ended it: "
            "decoded with other weights or on a platform that does not compute exactly"
        )
        raise StreamError(msg)


def _step_values(
    decoders: ChunkDecoders,
    mu: np.ndarray,
    sc: np.ndarray,
    coded: dict[int, np.ndarray],
    counts: dict[int, list[int]],
    where: tuple[np.ndarray, ...],
) -> np.ndarray:
    """One step's values ``(chunks, n)``: first the flat flags of the chunks that have them
    (the keys of ``counts``, their flags so far: updated here; ``coded``: their values so far,
    framed), then the values the flags did not give."""
    if not counts:
        return decoders.decode_step(mu, sc)
    given = np.zeros(mu.shape, bool)
    same = np.zeros(mu.shape, np.int64)
    for b in counts:
        ok, v = flat.candidates(coded[b], where)
        idx = np.flatnonzero(ok)
        if idx.size:
            equal = decoders.decode_flags(b, idx.size, flat.frequencies(*counts[b]))
            counts[b][0] += int(equal.sum())
            counts[b][1] += idx.size
            hit = idx[equal == 1]
            given[b, hit] = True
            same[b, hit] = v[hit]
    out = decoders.decode_step(mu, sc, ~given)
    out[given] = same[given]
    return out


def _tile_bits(
    net, stack: np.ndarray, refs: list[TileRef], patch: int, device: torch.device
) -> Iterator[tuple[TileRef, np.ndarray]]:
    """Bits of every pixel of each coded tile under the integer tables, ``(ref, (h, w))``, as
    the encoder codes it on its own (:func:`_choices` without plane context) in the newest
    format: a stream the encoder keeps in an older format instead (value maps, linear chunks
    or flat flags not paying for the bytes every coded header then carries) differs by about
    those bytes."""
    _, decisions = _choices(net, stack, refs, patch=patch, device=device, context=1)
    for i, choices in decisions:
        c = choices[FORMATS[-1]]
        bits = np.zeros(c.geo.n_patches * patch * patch)
        bits[c.geo.stream_order] = c.bits()
        yield refs[i], c.geo.from_patches(bits.reshape(c.geo.n_patches, patch, patch))


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
