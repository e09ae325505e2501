"""The fine-tuning loop the float ablations share (``mixture_ablation``, ``plane_conditioning``).

Every arm of an ablation is trained with its model's last-stage schedule (``train.loop``'s
cosine learning rate, Adam, gradient clipping) compressed to ``steps``, so arms differ only in
the variant they measure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from llic_imaging.train.loop import TrainConfig, lr_at


def finetune(
    model: nn.Module, cfg: TrainConfig, steps: int, batch_loss: Callable[[], torch.Tensor]
) -> float:
    """Train all of ``model``'s weights for ``steps`` on ``batch_loss()`` (bits per sample of
    a fresh batch); returns the seconds it took."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = replace(cfg, steps=steps)
    t0 = time.time()
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(sched, step)
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if (step + 1) % 250 == 0:
            print(f"  step {step + 1}: {float(loss.detach()):.4f} bps", flush=True)
    return time.time() - t0
