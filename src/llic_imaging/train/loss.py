"""Training objective: ideal code length (bits) of the discretised logistic the coder uses.

Uses the same integer mean (1/16 px) and scale level the integer tables are indexed with
(straight-through gradients), with the range tails folded into the end values as in coding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["bits"]


def bits(
    mu16: torch.Tensor, scale: torch.Tensor, v: torch.Tensor, vmax: torch.Tensor
) -> torch.Tensor:
    """-log2 P(v) per pixel; all arguments broadcast to ``v``'s shape."""
    mu = mu16 / 16.0
    inv_s = torch.exp2(4.0 - scale / 8.0)
    a = (v + 0.5 - mu) * inv_s
    b = (v - 0.5 - mu) * inv_s
    upper = F.logsigmoid(a)  # log P(x < v + 0.5)
    lower_c = F.logsigmoid(-b)  # log P(x > v - 0.5)
    delta = torch.sigmoid(a) - torch.sigmoid(b)
    z = (v - mu) * inv_s
    log_mid = z - 2.0 * F.softplus(z) + torch.log(inv_s)  # density at v times a unit bin
    logp = torch.where(delta > 1e-6, torch.log(delta.clamp_min(1e-12)), log_mid)
    logp = torch.where(v <= 0, upper, torch.where(v >= vmax, lower_c, logp))
    return -logp / math.log(2.0)
