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

from llic_imaging.train import loop
from llic_imaging.train.loop import TrainConfig


def finetune(
    model: nn.Module, cfg: TrainConfig, steps: int, batch_loss: Callable[[], torch.Tensor]
) -> float:
    """Train all of ``model``'s weights for ``steps`` on ``batch_loss()`` (bits per sample of
    a fresh batch); returns the seconds it took."""

    def log(step: int, loss: float) -> None:
        if step % 250 == 0:
            print(f"  step {step}: {loss:.4f} bps", flush=True)

    t0 = time.time()
    loop.finetune(list(model.parameters()), replace(cfg, steps=steps), batch_loss, log=log)
    return time.time() - t0
