"""Integer-exact arithmetic for the network: fixed-point formats, requantisation, activation LUTs.

Tensors are float32 that hold integers. Every product and partial sum stays below 2**24, so any
summation order (threads, oneDNN on/off, batch grouping, GPU without TF32) gives the same
result. In training the same functions run with straight-through gradients, so the exported
integer network is exactly the network that was trained (quantisation-aware training).

Formats: weights are integers in [-127, 127] meaning ``w / 2**W_FRAC``; activations are
integers meaning ``a / 2**A_FRAC``; accumulators therefore carry ``W_FRAC + A_FRAC`` fractional
bits and a requantisation is a power-of-two shift with round-half-to-even and a clamp.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
import torch

__all__ = [
    "ACT_MAX",
    "A_FRAC",
    "BIAS_MAX",
    "EXACT_MAX",
    "LUT_MAX",
    "LUT_VERSION",
    "RES_MAX",
    "W_FRAC",
    "W_MAX",
    "generate_luts",
    "lut",
    "lut_tables",
    "quant_bias",
    "quant_weight",
    "requant",
    "round_ste",
]

LUT_VERSION = 1
W_FRAC = 6
A_FRAC = 4
W_MAX = 127
ACT_MAX = 127  # 8-bit activations feed every conv
RES_MAX = 1023  # residual stream and LUT inputs: 11 bits
LUT_MAX = RES_MAX
BIAS_MAX = 1 << 20
EXACT_MAX = 1 << 24  # float32 holds every integer up to here: the bound on every accumulator


def _swish(x: np.ndarray) -> np.ndarray:
    return x * 0.5 * (1.0 + np.tanh(0.5 * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


_SMOOTH = {
    "swish": torch.nn.functional.silu,
    "gelu": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
}


def generate_luts() -> dict[str, np.ndarray]:
    """Activation tables over integer inputs [-LUT_MAX, LUT_MAX] (offline; the shipped file rules)."""
    x = np.arange(-LUT_MAX, LUT_MAX + 1, dtype=np.float64) / (1 << A_FRAC)
    out = {}
    for name, fn in (("swish", _swish), ("gelu", _gelu)):
        y = np.rint(fn(x) * (1 << A_FRAC))
        out[name] = np.clip(y, -ACT_MAX, ACT_MAX).astype(np.int32)
    return out


@cache
def lut_tables() -> dict[str, np.ndarray]:
    """The shipped activation tables (int32 over [-LUT_MAX, LUT_MAX]), by name."""
    ref = resources.files("llic_imaging.model").joinpath(f"lut-v{LUT_VERSION}.npz")
    with resources.as_file(ref) as path, np.load(path) as z:
        return {k: z[k] for k in z.files}


_LUT_CACHE: dict[tuple[str, float, str], torch.Tensor] = {}


def lut(x: torch.Tensor, name: str, scale: float = 1.0) -> torch.Tensor:
    """Apply activation ``name`` through its integer table, times ``scale`` (a power of two).

    ``x`` must already be an integer in [-LUT_MAX, LUT_MAX] (output of :func:`requant`). A
    power-of-two ``scale`` is exact and lets the caller skip a later requantisation multiply.
    Training gets the smooth function's gradient.
    """
    key = (name, scale, str(x.device))
    table = _LUT_CACHE.get(key)
    if table is None:
        table = torch.from_numpy(lut_tables()[name].astype(np.float32) * scale).to(x.device)
        _LUT_CACHE[key] = table
    i = x.detach() + LUT_MAX if x.requires_grad else x.add_(LUT_MAX)  # inference: x is a temporary
    y = table.index_select(0, i.to(torch.int32).reshape(-1)).reshape(x.shape)
    if x.requires_grad:
        s = _SMOOTH[name](x / (1 << A_FRAC)) * ((1 << A_FRAC) * scale)
        y = y + (s - s.detach())
    return y


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even; identity gradient."""
    if not x.requires_grad:
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


class _Requant(torch.autograd.Function):
    """Round-and-clamp with a straight-through gradient inside the clamp range (one fused mask)."""

    @staticmethod
    def forward(ctx, acc: torch.Tensor, scale: float, limit: int) -> torch.Tensor:  # noqa: ANN001
        y = torch.round(acc * scale)
        inside = y.abs() <= limit
        ctx.save_for_backward(inside)
        ctx.scale = scale
        return y.clamp_(-limit, limit)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        (inside,) = ctx.saved_tensors
        return grad * inside * ctx.scale, None, None


def requant(acc: torch.Tensor, shift: int, limit: int) -> torch.Tensor:
    """``clamp(round(acc / 2**shift), -limit, limit)``: exact because the scale is a power of two.

    Without autograd the result is computed in place in ``acc`` (callers pass temporaries).
    """
    if acc.requires_grad:
        return _Requant.apply(acc, 2.0**-shift, limit)
    if shift:
        acc.mul_(2.0**-shift)
    return acc.round_().clamp_(-limit, limit)  # acc is always a fresh temporary


def quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Float master weight -> integer weight in [-W_MAX, W_MAX] (straight-through)."""
    return torch.clamp(round_ste(w * (1 << W_FRAC)), -W_MAX, W_MAX)


def quant_bias(b: torch.Tensor) -> torch.Tensor:
    """Float master bias -> integer in accumulator units (W_FRAC + A_FRAC fractional bits)."""
    return torch.clamp(round_ste(b * (1 << (W_FRAC + A_FRAC))), -BIAS_MAX, BIAS_MAX)
