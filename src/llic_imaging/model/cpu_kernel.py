"""Step-wise CPU path of :class:`~llic_imaging.model.hpac.HpacNet`: the same integers, faster.

The torch step path spends most of a decode in per-operation overhead: a step codes only a few
thousand positions, and each of its ~150 small tensor operations costs more in dispatch than in
arithmetic. Here a step is about 25 calls over all positions of the batch: the 1x1 layers are
single BLAS products (torch), and everything between two products (tap gathers, the MED
anchor, requantisation, the masked depthwise conv, lookup-table activations, residuals) is one
compiled numba loop, parallel over patches (``numba.set_num_threads``; the codec sets it from
``numthreads``). Measured on a 512x512 CT slice: about 1.4x the torch path's decode speed on
one thread and 2x on two (docs/benchmarks.md).

The arithmetic is the torch path's, value for value: float32 holding integers below 2**24, so
summation order, BLAS kernels, threads and vector width cannot change a result; ``round`` is
``rint`` (half to even) and activations go through the shipped lookup tables.
``tests/model/test_cpu_kernel.py`` asserts equality with :meth:`HpacNet.dense` and
:meth:`HpacNet.step`.

Memory: pixels are kept per patch with a zero border (3 pixels for the 7x7 embedding taps);
the gate inputs ``W_A x`` of each block only in a ring of the last few steps per patch (the 3x3
depthwise taps of step ``s`` read steps ``s-3..s``: a ring of 4).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from llic_imaging.codec.schedule import Geometry
from llic_imaging.model import hpac, quant
from llic_imaging.model.runtime import launch_guard

__all__ = ["CpuSteps"]

_F = np.float32
_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
_PAR = dict(_JIT, parallel=True)


@numba.njit(inline="always", **_JIT)
def _clip(v, lim):
    """Clamp a float32 to [-lim, lim] (min/max: LLVM turns it into vector min/max)."""
    return min(max(v, -lim), lim)


@numba.njit(inline="always", **_JIT)
def _band(s, p):
    """First row and number of rows of step ``s`` in a P x P patch (``Geometry.step_rows``)."""
    first = max(0, (s - p + 2) // 2)
    return first, min(p - 1, s // 2) - first + 1


@numba.njit(**_JIT)
def _patch_inputs(s, first, rows, pa, pix, ins, mid, s0, sh, taps_a, med_taps, inp, anchor):
    """Embedding inputs of one patch's positions in step ``s`` (band rows ``first..``):
    differences to the MED anchor at two scales, availability flags and the tile's shift."""
    ta = taps_a.shape[0]
    iw, in_, inw = med_taps[0], med_taps[1], med_taps[2]
    a127 = _F(quant.ACT_MAX)
    s1 = s0 * _F(2.0**-4)
    for i in range(rows):
        ra = first + i + pa
        ca = s - 2 * (first + i) + pa
        w = pix[ra + taps_a[iw, 0], ca + taps_a[iw, 1]]
        nn = pix[ra + taps_a[in_, 0], ca + taps_a[in_, 1]]
        nw = pix[ra + taps_a[inw, 0], ca + taps_a[inw, 1]]
        aw = ins[ra + taps_a[iw, 0], ca + taps_a[iw, 1]] > 0
        an = ins[ra + taps_a[in_, 0], ca + taps_a[in_, 1]] > 0
        mx, mn = max(w, nn), min(w, nn)
        med = mn if nw >= mx else (mx if nw <= mn else w + nn - nw)
        anc = med if (aw and an) else (w if aw else (nn if an else mid))
        anchor[i] = anc
        for t in range(ta):
            y, x = ra + taps_a[t, 0], ca + taps_a[t, 1]
            a = ins[y, x]
            d = (pix[y, x] - anc) * a
            inp[i, t] = _clip(np.rint(d * s0), a127)
            inp[i, ta + t] = _clip(np.rint(d * s1), a127)
            inp[i, 2 * ta + t] = a * _F(1 << quant.A_FRAC)
        if 3 * ta < inp.shape[1]:  # the tile's shift, for models that take it
            inp[i, 3 * ta] = sh * _F(1 << (quant.A_FRAC - 1))


@numba.njit(**_JIT)
def _patch_gate(s, first, rows, pa, av, ins, ring, dw, dw_bias, taps_b, lut, out):
    """Gate of one block for one patch's positions of step ``s``: requantise
    ``[W_A x | W_V x]``, keep ``W_A x`` in the patch's ring, masked depthwise conv over the
    ring, swish table, times ``W_V x`` -> ``out``.

    A tap outside the patch or the tile is skipped (it is zero in the torch paths), so stale
    ring entries are never read and the ring needs no clearing.
    """
    c, depth = out.shape[1], ring.shape[0]
    a127 = _F(quant.ACT_MAX)
    lm = (lut.shape[0] - 1) // 2
    flm = _F(lm)
    slot = s % depth
    # one simple loop per stage, each over the channels: LLVM vectorises all but the table reads
    for i in range(rows):
        for j in range(2 * c):
            av[i, j] = _clip(np.rint(av[i, j]), a127)
        for j in range(c):
            ring[slot, first + i, j] = av[i, j]
    for i in range(rows):
        r = first + i
        for j in range(c):
            out[i, j] = dw_bias[j]
        for t in range(taps_b.shape[0]):  # tap (dr, dc) of (r, c): row r + dr of step s + dc + 2dr
            dr, dc = taps_b[t, 0], taps_b[t, 1]
            if ins[r + dr + pa, s - 2 * r + dc + pa] == 0:
                continue
            src = (s + dc + 2 * dr) % depth
            for j in range(c):
                out[i, j] += ring[src, r + dr, j] * dw[t, j]
        for j in range(c):
            out[i, j] = lut[np.int64(_clip(np.rint(out[i, j]), flm)) + lm]
        for j in range(c):
            out[i, j] = _clip(np.rint(out[i, j] * av[i, c + j]), a127)


@numba.njit(**_PAR)
def _inputs(s, pa, pix, ins, mid, down, shift, taps_a, med_taps, inp, anchor):
    """Embedding inputs of step ``s``, one row per position (patch-major); returns the count."""
    n_patch = pix.shape[0]
    first, rows = _band(s, pix.shape[1] - 2 * pa)
    for n in numba.prange(n_patch):
        sl = slice(n * rows, (n + 1) * rows)
        _patch_inputs(
            s, first, rows, pa, pix[n], ins[n], mid[n], down[n], shift[n], taps_a, med_taps,
            inp[sl], anchor[sl],
        )  # fmt: skip
    return n_patch * rows


@numba.njit(**_PAR)
def _gate(s, pa, av, ins, ring, dw, dw_bias, taps_b, lut, out):
    """One block's gate at every position of step ``s`` (see ``_patch_gate``)."""
    first, rows = _band(s, ring.shape[2])
    for n in numba.prange(ring.shape[0]):
        sl = slice(n * rows, (n + 1) * rows)
        _patch_gate(s, first, rows, pa, av[sl], ins[n], ring[n], dw, dw_bias, taps_b, lut, out[sl])


@numba.njit(**_PAR)
def _requant(x, lim):
    """``x = clamp(round(x), -lim, lim)``."""
    for q in numba.prange(x.shape[0]):
        for j in range(x.shape[1]):
            x[q, j] = _clip(np.rint(x[q, j]), lim)


@numba.njit(**_PAR)
def _residual(x, r):
    """``x = clamp(x + clamp(round(r)))`` on the residual range."""
    lim = _F(quant.RES_MAX)
    for q in numba.prange(x.shape[0]):
        for j in range(x.shape[1]):
            x[q, j] = _clip(x[q, j] + _clip(np.rint(r[q, j]), lim), lim)


@numba.njit(**_PAR)
def _activate(x, lut):
    """``x = lut(clamp(round(x)))`` (the GELU table of the MLP)."""
    lm = (lut.shape[0] - 1) // 2
    for q in numba.prange(x.shape[0]):
        for j in range(x.shape[1]):
            x[q, j] = lut[np.int64(_clip(np.rint(x[q, j]), _F(lm))) + lm]


@numba.njit(**_PAR)
def _head(s, x, hw, hb, anchor, up, shift, vmax, mu_out, sc_out):
    """The 1x1 head (``hw`` (2, C), ``hb`` (2,)) on the features ``x`` of step ``s`` -> integer
    ``(mu16, scale level)`` at the step's cells of ``mu_out``/``sc_out`` (NP, P, P); see
    ``HpacNet._head``. Two outputs are too few for BLAS (a call costs ~5x this loop)."""
    first, rows = _band(s, mu_out.shape[1])
    for n in numba.prange(mu_out.shape[0]):
        for i in range(rows):
            q = n * rows + i
            r, col = first + i, s - 2 * (first + i)
            o0, o1 = _dot2(x[q], hw, hb)
            o_mu = np.rint(o0 * _F(2.0 ** (quant.W_FRAC - hpac.HEAD_MU_SHIFT)))
            o_s = np.rint(o1 * _F(2.0 ** (quant.W_FRAC - hpac.HEAD_S_SHIFT)))
            mu = anchor[q] * _F(16.0) + o_mu * up[n]
            mu_out[n, r, col] = min(max(mu, _F(0.0)), vmax[n] * _F(16.0))
            sc = o_s + _F(8.0) * shift[n] + _F(hpac.SCALE_BIAS)
            sc_out[n, r, col] = min(max(sc, _F(0.0)), _F(hpac.N_SCALES - 1))


@numba.njit(fastmath={"reassoc", "contract"}, **_JIT)
def _dot2(v, hw, hb):
    """``hb + hw @ v`` for two outputs. Reassociation (vector sums) is exact here: every
    partial sum is an integer multiple of 2**-W_FRAC below 2**24 in magnitude."""
    a, b = hb[0], hb[1]
    for k in range(v.shape[0]):
        a += v[k] * hw[0, k]
        b += v[k] * hw[1, k]
    return a, b


def _mm(x: np.ndarray, wb: tuple[torch.Tensor, torch.Tensor], out: np.ndarray) -> None:
    """``out = b + x @ w`` (BLAS; exact, as every sum is an integer below 2**24)."""
    torch.addmm(wb[1], torch.from_numpy(x), wb[0], out=torch.from_numpy(out))


class CpuSteps:
    """Step-wise predictor of a batch of (NP, P, P) patches on the CPU (decoder and encoder).

    ``inside``: 0/1 positions inside the tile; ``shift``/``mid``/``vmax``: (NP,) per-patch side
    information (see :class:`~llic_imaging.model.hpac.TileParams`).
    """

    def __init__(
        self,
        net: hpac.HpacNet,
        inside: np.ndarray,
        shift: np.ndarray,
        mid: np.ndarray,
        vmax: np.ndarray,
    ):
        npatch, p, _ = inside.shape
        cfg = net.config
        self.geo = Geometry(p, p, p)
        self.w = _Weights(net)
        # zero border as wide as the widest kernel reaches; ring as deep as the depthwise taps
        self.pa = pa = max(cfg.embed_kernel, cfg.dw_kernel) // 2
        self.pix = np.zeros((npatch, p + 2 * pa, p + 2 * pa), _F)
        self.ins = np.zeros_like(self.pix)
        self.ins[:, pa:-pa, pa:-pa] = inside
        depth = 1 + max(-int(dc + 2 * dr) for dr, dc in net.taps_b)
        self.ring = np.zeros((cfg.blocks, npatch, depth, p, cfg.channels), _F)
        self.shift = np.asarray(shift, _F)
        self.mid, self.vmax = np.asarray(mid, _F), np.asarray(vmax, _F)
        self.down, self.up = np.exp2(-self.shift), np.exp2(self.shift)
        self.mu16, self.scale = np.zeros((2, npatch, p, p), _F)
        rows = npatch * (p // 2 + 1)  # most positions in one step
        c, m = cfg.channels, cfg.channels * cfg.mlp_ratio
        self.inp = np.zeros((rows, self.w.embed[0].shape[0]), _F)
        self.x, self.h, self.r = (np.zeros((rows, c), _F) for _ in range(3))
        self.av, self.u = np.zeros((rows, 2 * c), _F), np.zeros((rows, m), _F)
        self.anchor = np.zeros(rows, _F)

    @property
    def pixels(self) -> np.ndarray:
        """(NP, P, P) view of the pixel state: known (encoder) or decoded (decoder) values."""
        return self.pix[:, self.pa : -self.pa, self.pa : -self.pa]

    def _run(self, s: int) -> None:
        """The network at every position of step ``s`` -> :attr:`mu16`, :attr:`scale`."""
        with launch_guard():
            self._layers(s)

    def _layers(self, s: int) -> None:
        w = self.w
        n = _inputs(
            s, self.pa, self.pix, self.ins, self.mid, self.down, self.shift, w.taps_a, w.med,
            self.inp, self.anchor,
        )  # fmt: skip
        x, h, r, av, u = self.x[:n], self.h[:n], self.r[:n], self.av[:n], self.u[:n]
        _mm(self.inp[:n], w.embed, x)
        _requant(x, _F(quant.RES_MAX))
        for b, blk in enumerate(w.blocks):
            _mm(x, blk["wav"], av)
            _gate(
                s, self.pa, av, self.ins, self.ring[b], w.dw[b], w.dw_bias[b], w.taps_b, w.swish, h
            )
            _mm(h, blk["wo"], r)
            _residual(x, r)
            _mm(x, blk["w1"], u)
            _activate(u, w.gelu)
            _mm(u, blk["w2"], r)
            _residual(x, r)
        _head(s, x, *w.head, self.anchor, self.up, self.shift, self.vmax, self.mu16, self.scale)

    def predict(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoder: ``(mu16, scale)`` of step ``s``'s positions, ``(NP, rows)`` float32 each.

        Steps must be predicted in order (the ring holds the last few); a position's context
        is whatever :attr:`pixels` holds for earlier steps.
        """
        self._run(s)
        cells = self.geo.step_cells(s)
        return self.mu16[:, *cells], self.scale[:, *cells]

    def write(self, s: int, values: np.ndarray) -> None:
        """Decoder: the decoded values of step ``s``, ``(NP, rows)``."""
        self.pixels[:, *self.geo.step_cells(s)] = values

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """Encoder: ``(mu16, scale)`` of every position, ``(NP, P, P)``, from :attr:`pixels`."""
        for s in range(self.geo.steps):
            self._run(s)
        return self.mu16, self.scale


class _Weights:
    """The folded integer weights of a network as the CPU path reads them: (cin, cout) torch
    matrices for the 1x1 layers, numpy arrays for the compiled loops."""

    def __init__(self, net: hpac.HpacNet):
        with torch.no_grad():
            q = net.qparams()

        def lin(wb: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return wb[0].t().contiguous(), wb[1].contiguous()

        self.embed = lin(q["embed"])
        self.head = tuple(t.numpy().astype(_F) for t in q["head"])  # (2, C), (2,) for _head
        self.blocks = [{k: lin(b[k]) for k in ("wav", "wo", "w1", "w2")} for b in q["blocks"]]
        self.dw = np.stack([b["dw"].numpy() for b in q["blocks"]]).astype(_F)
        self.dw_bias = np.stack([b["dw_bias"].numpy() for b in q["blocks"]]).astype(_F)
        self.taps_a = np.ascontiguousarray(net.taps_a, np.int64)
        self.taps_b = np.ascontiguousarray(net.taps_b, np.int64)
        self.med = np.array([net._iw, net._in, net._inw], np.int64)  # W, N, NW among taps_a
        luts = quant.lut_tables()
        self.swish = (luts["swish"] * 2.0**-quant.A_FRAC).astype(_F)
        self.gelu = luts["gelu"].astype(_F)
