"""HPAC network: masked, gated convolutional AR model with integer-exact inference.

After Li et al., "Rethinking Autoregressive Models for Lossless Image Compression via
Hierarchical Parallelism and Progressive Adaptation" (HPAC, arXiv 2511.10991) and its
predecessor CALLIC's gated block. Our reconstruction (the paper body was not available):

    pixels --mask-A 7x7 taps (difference to a MED anchor, two scales, availability)--> embed 1x1
    N x [ x += W_O( swish(dw_maskB(W_A x)) * W_V x );  x += W_2 gelu(W_1 x) ]
    head 1x1 -> (mean offset, log2 scale) of one discretised logistic per pixel

Two paths give *identical* integers: :meth:`HpacNet.dense` (teacher forcing: training and the
encoder, one pass over all pixels) and :meth:`HpacNet.step` (Cache-then-Select Inference: the
decoder computes only the positions of the current step and reads earlier positions' features
from caches). On the CPU the codec runs a third implementation of the same integers,
``model.cpu_kernel`` (faster); these two serve training and the GPU. ``tests/model`` asserts the
equality of all three and the causality.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llic_imaging.codec.schedule import Geometry, mask_taps
from llic_imaging.model import quant

__all__ = [
    "Caches",
    "HpacConfig",
    "HpacNet",
    "Prediction",
    "TileParams",
    "TorchSteps",
    "accumulator_bounds",
    "difference_inputs",
    "require_exact",
]

N_SCALES = 160  # must match codec.intcdf.N_SCALES
SCALE_BIAS = 32  # j = 32 is a 1-pixel scale
HEAD_MU_SHIFT = 2  # mean offset keeps 8 fractional bits before the 2**sh rescale
HEAD_S_SHIFT = 7  # log-scale output in 1/8 octave
_FOLD = 2.0**-quant.W_FRAC  # weights and biases carry the accumulator's requantisation shift


@dataclass(frozen=True)
class HpacConfig:
    """Architecture hyper-parameters (stored next to the weights and hashed with them)."""

    channels: int = 32
    blocks: int = 3
    mlp_ratio: int = 2
    embed_kernel: int = 7
    dw_kernel: int = 3
    # 1: the tile's input shift is an embedding input (flat areas of busy tiles)
    shift_input: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HpacConfig:
        return cls(**{k: int(v) for k, v in d.items()})


@dataclass
class TileParams:
    """Per-patch side information (broadcast from per-tile values): all integer tensors (NP,)."""

    shift: torch.Tensor  # sh: input differences are divided by 2**sh, outputs rescaled back
    mid: torch.Tensor  # anchor of a patch's first pixel (no causal neighbour)
    vmax: torch.Tensor  # R: values are in [0, R]


@dataclass
class Prediction:
    """Integer distribution parameters: mean in 1/16 px, scale level index (see codec.intcdf)."""

    mu16: torch.Tensor
    scale: torch.Tensor


def difference_inputs(d: torch.Tensor, s0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences ``d`` as the embedding takes them: scaled by ``s0`` (``2**-shift``), and by
    ``s0 / 16`` for the coarse copy that still resolves edges beyond the fine one's clamp."""
    fine = torch.clamp(torch.round(d * s0), -quant.ACT_MAX, quant.ACT_MAX)
    coarse = torch.clamp(torch.round(d * (s0 * 2.0**-4)), -quant.ACT_MAX, quant.ACT_MAX)
    return fine, coarse


class QLinear(nn.Module):
    """1x1 layer with integer weights; returns the integer accumulator."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) * (0.5 / np.sqrt(cin)))
        self.bias = nn.Parameter(torch.zeros(cout))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer weights and bias pre-scaled by ``2**-W_FRAC`` (see :meth:`HpacNet.qparams`)."""
        return quant.quant_weight(self.weight) * _FOLD, quant.quant_bias(self.bias) * _FOLD


class Block(nn.Module):
    """Content-aware gated block (masked depthwise conv gate) followed by an MLP."""

    def __init__(self, c: int, mlp_ratio: int, n_taps: int):
        super().__init__()
        self.wa = QLinear(c, c)
        self.wv = QLinear(c, c)
        self.dw = nn.Parameter(torch.randn(n_taps, c) * (0.5 / np.sqrt(n_taps)))
        self.dw_bias = nn.Parameter(torch.zeros(c))
        self.wo = QLinear(c, c)
        self.w1 = QLinear(c, c * mlp_ratio)
        self.w2 = QLinear(c * mlp_ratio, c)


def _residual(x: torch.Tensor, r: torch.Tensor, lim: int) -> torch.Tensor:
    """Clamped residual update; in place when no gradient is recorded (inference)."""
    if torch.is_grad_enabled():
        return (x + r).clamp(-lim, lim)
    return x.add_(r).clamp_(-lim, lim)


def _addcmul(acc: torch.Tensor, t: torch.Tensor, w: torch.Tensor, *, fresh: bool) -> torch.Tensor:
    """``acc + t * w``; in place (unless ``acc`` is a shared view) when no gradient is recorded."""
    if fresh or torch.is_grad_enabled():
        return torch.addcmul(acc, t, w)
    return acc.addcmul_(t, w)


def _mm(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Channels-last 1x1: (..., cin) @ (cout, cin)^T + bias."""
    w, b = wb
    lead = x.shape[:-1]
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w.t()).reshape(*lead, -1)


class HpacNet(nn.Module):
    """The probability model. See module docstring for the layout."""

    def __init__(self, config: HpacConfig | None = None):
        super().__init__()
        self.config = cfg = config or HpacConfig()
        self.taps_a = mask_taps(cfg.embed_kernel, include_current=False)
        self.taps_b = mask_taps(cfg.dw_kernel, include_current=True)
        ta = len(self.taps_a)
        self.embed = QLinear(3 * ta + cfg.shift_input, cfg.channels)
        self.blocks = nn.ModuleList(
            Block(cfg.channels, cfg.mlp_ratio, len(self.taps_b)) for _ in range(cfg.blocks)
        )
        self.head = QLinear(cfg.channels, 2)
        # indices of W, N, NW among mask-A taps (for the MED anchor)
        tl = [tuple(t) for t in self.taps_a.tolist()]
        self._iw, self._in, self._inw = tl.index((0, -1)), tl.index((-1, 0)), tl.index((-1, -1))

    # ------------------------------------------------------------------ shared integer pieces
    def _inputs(
        self, nb: torch.Tensor, avail: torch.Tensor, shift: torch.Tensor, mid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding inputs from causal neighbours.

        ``nb``/``avail``: (..., T) neighbour values (0 where unavailable) and 0/1 availability;
        ``shift``/``mid``: broadcastable to ``nb[..., 0]``. Returns (inputs (..., 3T), anchor).
        """
        w, n, nw = nb[..., self._iw], nb[..., self._in], nb[..., self._inw]
        aw, an = avail[..., self._iw] > 0, avail[..., self._in] > 0
        mx, mn = torch.maximum(w, n), torch.minimum(w, n)
        med = torch.where(nw >= mx, mn, torch.where(nw <= mn, mx, w + n - nw))
        anchor = torch.where(aw & an, med, torch.where(aw, w, torch.where(an, n, mid)))
        d = (nb - anchor[..., None]) * avail
        fine, coarse = difference_inputs(d, torch.exp2(-shift.to(d.dtype))[..., None])
        flag = avail * float(1 << quant.A_FRAC)
        parts = [fine, coarse, flag]
        if self.config.shift_input:  # lets flat contexts predict a small scale whatever sh is
            sh = (shift.to(d.dtype) * float(1 << (quant.A_FRAC - 1)))[..., None]
            parts.append(sh.expand(*d.shape[:-1], 1))
        return torch.cat(parts, dim=-1), anchor

    def _head(self, acc: torch.Tensor, anchor: torch.Tensor, p: TileParams) -> Prediction:
        """Map head outputs (..., 2) to integer (mu16, scale level); ``p`` broadcasts to ``anchor``."""
        o_mu = quant.round_ste(acc[..., 0] * 2.0 ** (quant.W_FRAC - HEAD_MU_SHIFT))
        o_s = quant.round_ste(acc[..., 1] * 2.0 ** (quant.W_FRAC - HEAD_S_SHIFT))
        shift = p.shift.to(acc.dtype)
        mu16 = anchor * 16.0 + o_mu * torch.exp2(shift)
        mu16 = torch.minimum(torch.clamp(mu16, min=0.0), p.vmax.to(acc.dtype) * 16.0)
        scale = torch.clamp(o_s + 8.0 * shift + SCALE_BIAS, 0, N_SCALES - 1)
        return Prediction(mu16, scale)

    def _gate_inputs(self, x: torch.Tensor, qb: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_A x, W_V x)`` requantised to activations, from one matmul."""
        av = quant.requant(_mm(x, qb["wav"]), 0, quant.ACT_MAX)
        c = av.shape[-1] // 2
        return av[..., :c], av[..., c:]

    def _block_tail(
        self, x: torch.Tensor, v: torch.Tensor, dwacc: torch.Tensor, q: dict
    ) -> torch.Tensor:
        """Everything of a block after the masked depthwise accumulation (position-wise).

        Accumulators arrive pre-scaled (folded weights), so requantising them is round + clamp.
        """
        lim = quant.RES_MAX
        g = quant.lut(quant.requant(dwacc, 0, quant.LUT_MAX), "swish", 2.0**-quant.A_FRAC)
        h = quant.requant(g * v, 0, quant.ACT_MAX)
        x = _residual(x, quant.requant(_mm(h, q["wo"]), 0, lim), lim)
        u = quant.lut(quant.requant(_mm(x, q["w1"]), 0, quant.LUT_MAX), "gelu")
        return _residual(x, quant.requant(_mm(u, q["w2"]), 0, lim), lim)

    def qparams(self) -> dict[str, Any]:
        """Integer weights of every layer, pre-scaled by ``2**-W_FRAC`` (compute once per pass).

        Folding the power-of-two requantisation scale into weights and biases keeps every
        product and sum exact (the scale only moves the exponent) and saves a multiply per
        layer output. ``wav`` stacks W_A over W_V so the gate inputs take one matmul.
        """
        blocks = []
        for b in self.blocks:
            (wa, ba), (wv, bv) = b.wa.qparams(), b.wv.qparams()
            blocks.append(
                {
                    "wav": (torch.cat([wa, wv]), torch.cat([ba, bv])),
                    "dw": quant.quant_weight(b.dw) * _FOLD,
                    "dw_bias": quant.quant_bias(b.dw_bias) * _FOLD,
                    "wo": b.wo.qparams(),
                    "w1": b.w1.qparams(),
                    "w2": b.w2.qparams(),
                }
            )
        return {"embed": self.embed.qparams(), "head": self.head.qparams(), "blocks": blocks}

    # ------------------------------------------------------------------ dense (teacher forcing)
    def dense(self, u: torch.Tensor, inside: torch.Tensor, p: TileParams) -> Prediction:
        """Predict every position of (NP, P, P) patches from true pixels (training, encoder).

        Channels-last throughout: 1x1 layers are plain matmuls and the masked depthwise conv is
        a sum of shifted slices, the same arithmetic as :meth:`step` on all positions at once.
        """
        return self.head_prediction(*self.features(u, inside, p), p)

    def head_prediction(
        self, x: torch.Tensor, anchor: torch.Tensor, p: TileParams, head: QLinear | None = None
    ) -> Prediction:
        """(NP, P, P) integer predictions from :meth:`features`' output through ``head`` (the
        model's own by default; a variant measured on the same trunk otherwise)."""
        npatch, ps = x.shape[0], math.isqrt(x.shape[1])
        acc = _mm(x, (head or self.head).qparams()).reshape(npatch, ps, ps, 2)
        bshape = (-1, 1, 1)
        tp = TileParams(p.shift.reshape(bshape), p.mid, p.vmax.reshape(bshape))
        return self._head(acc, anchor.reshape(npatch, ps, ps), tp)

    def features(
        self,
        u: torch.Tensor,
        inside: torch.Tensor,
        p: TileParams,
        extra: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's input (NP, P*P, C) and the MED anchors (NP, P*P) of :meth:`dense`.

        ``extra(anchor)``, if given, returns an accumulator (NP, P*P, C) added to the
        embedding's: how a variant measured on this trunk feeds it more inputs (the plane
        conditioning ablation's previous plane, relative to the anchor).
        """
        q = self.qparams()
        npatch, ps, _ = u.shape
        nb = self._shifted(u)  # (NP, P*P, T)
        av = self._shifted(inside)
        inp, anchor = self._inputs(nb, av, p.shift[:, None], p.mid[:, None].to(u.dtype))
        acc = _mm(inp, q["embed"])
        if extra is not None:
            acc = acc + extra(anchor)
        x = quant.requant(acc, 0, quant.RES_MAX)  # (NP, P*P, C)
        keep = inside.reshape(npatch, ps * ps, 1)
        h = self.config.dw_kernel // 2
        for qb in q["blocks"]:
            a, v = self._gate_inputs(x, qb)
            c = a.shape[-1]
            ap = F.pad((a * keep).reshape(npatch, ps, ps, c), (0, 0, h, h, h, h))
            dwacc = qb["dw_bias"].expand(npatch, ps, ps, c)
            for t, (dr, dc) in enumerate(self.taps_b.tolist()):
                tap = ap[:, h + dr : h + dr + ps, h + dc : h + dc + ps]
                dwacc = _addcmul(dwacc, tap, qb["dw"][t], fresh=t == 0)
            x = self._block_tail(x, v, dwacc.reshape(npatch, ps * ps, c), qb)
        return x, anchor

    def _shifted(self, t: torch.Tensor) -> torch.Tensor:
        """(NP, P, P) -> (NP, P*P, T): value at each mask-A tap offset, zero outside the patch."""
        npatch, ps, _ = t.shape
        h = self.config.embed_kernel // 2
        tp = F.pad(t, (h, h, h, h))
        cols = [
            tp[:, h + dr : h + dr + ps, h + dc : h + dc + ps] for dr, dc in self.taps_a.tolist()
        ]
        return torch.stack(cols, dim=-1).reshape(npatch, ps * ps, -1)

    # ------------------------------------------------------------------ step-wise (CSI)
    def new_caches(self, inside: torch.Tensor) -> Caches:
        """Decoder state for (NP, P, P) patches; ``inside`` marks positions inside the tile."""
        return Caches(self, inside)

    def step(self, caches: Caches, s: int, p: TileParams, q: dict) -> Prediction:
        """Predict the positions of step ``s`` of every patch, ``(NP, rows)``, from the caches.

        ``p`` holds per-patch side information shaped ``(NP, 1)``. Positions outside the tile
        are computed too (their features are zeroed before caching) and ignored by the caller.
        """
        nb = torch.stack([caches.at(caches.pixels, s, *t) for t in caches.taps_a], dim=-1)
        av = torch.stack([caches.at(caches.inside, s, *t) for t in caches.taps_a], dim=-1)
        inp, anchor = self._inputs(nb, av, p.shift, p.mid.to(nb.dtype))
        x = quant.requant(_mm(inp, q["embed"]), 0, quant.RES_MAX)
        keep = caches.at(caches.inside, s)[..., None]
        for cache, qb in zip(caches.feats, q["blocks"], strict=True):
            a, v = self._gate_inputs(x, qb)
            a = caches.at(cache, s).copy_(a * keep)
            dwacc = qb["dw_bias"].expand_as(a).clone()
            for t, tap in enumerate(caches.taps_b):  # masked depthwise over cached steps
                dwacc.addcmul_(caches.at(cache, s, *tap), qb["dw"][t])
            x = self._block_tail(x, v, dwacc, qb)
        return self._head(_mm(x, q["head"]), anchor, p)


def accumulator_bounds(net: HpacNet) -> dict[str, int]:
    """Worst-case magnitude of every layer's accumulator (integer units), by layer name.

    Per output channel: the largest input the layer can receive times the sum of its absolute
    integer weights, plus its absolute bias. That bounds every partial sum in any order, so
    float32 sums (threads, BLAS kernels, GPUs) are exact while it stays at most
    ``quant.EXACT_MAX``. Inputs: 8-bit (``ACT_MAX``) into the embedding, ``W_O``, ``W_2`` and the
    depthwise taps; the 11-bit residual (``RES_MAX``) into ``W_A``, ``W_V``, ``W_1`` and the head.
    """

    def worst(weight: torch.Tensor, bias: torch.Tensor, amax: int) -> int:
        w = quant.quant_weight(weight.detach()).double()
        b = quant.quant_bias(bias.detach()).double()
        return int((w.abs().sum(1) * amax + b.abs()).max())

    act, res = quant.ACT_MAX, quant.RES_MAX
    out = {"embed": worst(net.embed.weight, net.embed.bias, act)}
    for i, blk in enumerate(net.blocks):
        for name, amax in (("wa", res), ("wv", res), ("wo", act), ("w1", res), ("w2", act)):
            layer = getattr(blk, name)
            out[f"blocks.{i}.{name}"] = worst(layer.weight, layer.bias, amax)
        out[f"blocks.{i}.dw"] = worst(blk.dw.t(), blk.dw_bias, act)
    out["head"] = worst(net.head.weight, net.head.bias, res)
    return out


def require_exact(net: HpacNet, error: type[Exception], what: str) -> None:
    """Raise ``error`` about ``what`` if some accumulator of ``net`` can pass 2**24: float32 would
    round its sums, differently on other machines, and streams would not decode."""
    layer, bound = max(accumulator_bounds(net).items(), key=lambda kv: kv[1])
    if bound > quant.EXACT_MAX:
        msg = (
            f"{what}: layer {layer} can accumulate {bound:,} > 2**24 integer units, beyond "
            "float32's exact integers (too wide a layer or too large weights)"
        )
        raise error(msg)


class TorchSteps:
    """Decoder interface of the torch step path (GPU): the same as ``cpu_kernel.CpuSteps``."""

    def __init__(self, net: HpacNet, inside: torch.Tensor, p: TileParams):
        self.net, self.q = net, net.qparams()
        self.caches = net.new_caches(inside)
        self.p = TileParams(p.shift[:, None], p.mid[:, None], p.vmax[:, None])

    def predict(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mu16, scale)`` of step ``s``'s positions, ``(NP, rows)`` each."""
        pred = self.net.step(self.caches, s, self.p, self.q)
        return pred.mu16.cpu().numpy(), pred.scale.cpu().numpy()

    def write(self, s: int, values: np.ndarray) -> None:
        """The decoded values of step ``s``, ``(NP, rows)``."""
        dst = self.caches.at(self.caches.pixels, s)
        dst.copy_(torch.from_numpy(np.asarray(values, np.float32)).to(dst.device))


class Caches:
    """Decoder state for Cache-then-Select Inference, stored step by step.

    Step ``s`` of a P x P patch holds the positions ``(r, s - 2r)`` for a band of rows; a
    neighbour at ``(dr, dc)`` of all of them is the same band shifted by ``dr`` rows in step
    ``s + dc + 2 dr``. So each step keeps one ``(NP, rows[, C])`` block: its band plus the zero
    rows its later readers reach beyond it (and steps before 0 are all zeros). Every read is a
    row slice of a block written in the last few steps, which stays in cache; no gathers.
    ``pixels`` holds decoded values, ``feats[i]`` the gate inputs ``W_A x`` of block ``i``;
    both are zero outside the tile.
    """

    def __init__(self, net: HpacNet, inside: torch.Tensor):
        cfg = net.config
        npatch, p, _ = inside.shape
        geo = Geometry(p, p, p)
        self.band = [geo.step_rows(s) for s in range(geo.steps)]
        taps = sorted({(dr, dc) for dr, dc in np.concatenate([net.taps_a, net.taps_b]).tolist()})
        self.lead = lead = max(-(dc + 2 * dr) for dr, dc in taps)  # zero steps before step 0
        lo = [f for f, _ in self.band]
        hi = [f + n for f, n in self.band]
        for s, (first, n) in enumerate(self.band):  # widen sources to every row a reader asks for
            for dr, dc in taps:
                src = s + dc + 2 * dr
                if src >= 0:
                    lo[src], hi[src] = min(lo[src], first + dr), max(hi[src], first + n + dr)
        self.base = [-lead] * lead + lo  # first stored row of every block, zero blocks first
        rows = [1] * lead + [h - b for h, b in zip(hi, lo, strict=True)]
        dev = inside.device
        self.pixels = [torch.zeros(npatch, r, device=dev) for r in rows]
        self.inside = [torch.zeros(npatch, r, device=dev) for r in rows]
        for s in range(geo.steps):
            r, c = (torch.from_numpy(i).to(dev) for i in geo.step_cells(s))
            self.at(self.inside, s).copy_(inside[:, r, c])
        self.feats = [
            [torch.zeros(npatch, r, cfg.channels, device=dev) for r in rows]
            for _ in range(cfg.blocks)
        ]
        self.taps_a = [tuple(t) for t in net.taps_a.tolist()]
        self.taps_b = [tuple(t) for t in net.taps_b.tolist()]

    def at(self, blocks: list[torch.Tensor], s: int, dr: int = 0, dc: int = 0) -> torch.Tensor:
        """The neighbours at ``(dr, dc)`` of step ``s``'s positions: a ``(NP, rows[, C])`` view."""
        first, n = self.band[s]
        src = s + dc + 2 * dr
        if src < 0:
            block = blocks[src + self.lead]
            return block[:, :1].expand(block.shape[0], n, *block.shape[2:])
        start = first + dr - self.base[src + self.lead]
        return blocks[src + self.lead][:, start : start + n]
