"""Training objective: ideal code length (bits) of the discretised logistic the coder uses.

Uses the same integer mean (1/16 px) and scale level the integer tables are indexed with
(straight-through gradients), with the range tails folded into the end values as in coding.
This is the full-alphabet ideal: the coder's focus window (``codec.focus``) matches it to
~0.01 bit per pixel in the bulk of the distribution, but caps an outlier beyond the window at
escape + uniform value bits, which the logistic tail does not model. ``focus=True`` charges
what the coder charges there instead (:func:`bits`), so training does not widen every
prediction to hedge against edges that cost the file only a bounded escape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from llic_imaging.codec import intcdf
from llic_imaging.codec.focus import window_bounds

__all__ = ["bits"]

_LN2 = math.log(2.0)
_FLOOR = -float(
    np.log2(intcdf.TOTAL)
)  # log2 of the smallest table frequency: every symbol has >= 1


def bits(
    mu16: torch.Tensor,
    scale: torch.Tensor,
    v: torch.Tensor,
    vmax: torch.Tensor,
    *,
    focus: bool = False,
) -> torch.Tensor:
    """-log2 P(v) per pixel; all arguments broadcast to ``v``'s shape (result in ``v``'s dtype).

    ``focus=True``: the coder's cost instead. A value outside the focus window of its scale
    level costs the escape (the window's outside mass within the range, at least one table
    count) plus ``log2(R + 1)``; any symbol costs at most ``log2 TOTAL`` bits.

    Computed in float64 and on the tail side of the distribution: in float32, the bin mass
    ``sigmoid(a) - sigmoid(b)`` cancels for wide scales (thousands of pixels: 16-bit noise)
    and in the upper tail (both terms near 1), costing up to ~0.2 bit and ~20 % gradient error.
    """
    mu = mu16.double() / 16.0
    inv_s = torch.exp2(4.0 - scale.double() / 8.0)
    v64 = v.double()
    a = (v64 + 0.5 - mu) * inv_s  # bin edges in logistic units
    b = (v64 - 0.5 - mu) * inv_s
    # sigmoid(a) - sigmoid(b) == sigmoid(-b) - sigmoid(-a): take the side where both are small,
    # as log-sigmoids (no underflow), and the difference of nearly equal terms with expm1.
    up = b > 0
    hi = F.logsigmoid(torch.where(up, -b, a))
    lo = F.logsigmoid(torch.where(up, -a, b))
    logp = hi + torch.log(-torch.expm1(lo - hi))
    vmax = vmax.double()
    logp = torch.where(v64 <= 0, F.logsigmoid(a), torch.where(v64 >= vmax, F.logsigmoid(-b), logp))
    if not focus:
        return (-logp / _LN2).to(v.dtype)
    low, high = _window(mu16, scale)
    inf = torch.tensor(-math.inf, dtype=torch.float64, device=v.device)
    lo_tail = torch.where(low > 0, F.logsigmoid((low - 0.5 - mu) * inv_s), inf)
    hi_tail = torch.where(high < vmax, F.logsigmoid((mu - high - 0.5) * inv_s), inf)
    log_esc = torch.logaddexp(lo_tail, hi_tail)
    escaped = (v64 < low) | (v64 > high)
    log2p = torch.clamp(torch.where(escaped, log_esc, logp) / _LN2, min=_FLOOR)
    return (torch.where(escaped, torch.log2(vmax + 1.0), 0.0) - log2p).to(v.dtype)


def _window(mu16: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last value of the coder's focus window of every pixel (no gradient)."""
    as_np = lambda t: t.detach().cpu().numpy().astype(np.int64)  # noqa: E731
    low, high = window_bounds(as_np(mu16), as_np(scale))
    return tuple(torch.from_numpy(b).to(mu16.device, torch.float64) for b in (low, high))
