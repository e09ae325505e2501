"""The training loop: quantisation-aware, resumable, deterministic seeds, bits-per-sample log.

The forward pass is the codec's own dense integer path with straight-through gradients, so the
exported network is exactly the one that was trained. Checkpoints hold model, optimiser, sampler
RNG state and step; ``resume=True`` continues from the newest one.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llic_imaging.codec.schedule import Geometry
from llic_imaging.model import zoo
from llic_imaging.model.hpac import HpacConfig, HpacNet, TileParams
from llic_imaging.train.data import Batch, CropSampler
from llic_imaging.train.loss import bits

__all__ = ["TrainConfig", "batch_bits", "batch_tensors", "finetune", "lr_at", "train"]

PATCH = 32


@dataclass
class TrainConfig:
    name: str
    seed: int = 0
    steps: int = 1000
    batch: int = 12
    crop: int = 64
    context: int = 0  # side information from a window this large around each crop (0: the crop)
    loss: str = "logistic"  # "focus": charge outliers what the coder charges (escape + value)
    lr: float = 2e-3
    lr_final: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 25
    checkpoint_every: int = 250
    model: dict[str, int] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    # fine-tuning: start from an installed model's weights, train on some benchmark groups only
    init: str = ""
    groups: list[str] = field(default_factory=list)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        with open(path, "rb") as f:
            return cls(**tomllib.load(f))


def batch_bits(
    net: HpacNet, batch: Batch, device: torch.device, *, focus: bool = False
) -> tuple[torch.Tensor, int]:
    """Total bits of a batch of crops under the network, and the number of samples.

    ``focus``: the coder's cost of outliers (``train.loss.bits``) instead of the logistic tail.
    """
    u, inside, tp = batch_tensors(batch, device)
    pred = net.dense(u, inside, tp)
    total = bits(pred.mu16, pred.scale, u, tp.vmax[:, None, None], focus=focus) * inside
    return total.sum(), batch.u.size


def batch_tensors(
    batch: Batch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, TileParams]:
    """A batch of crops as the network's inputs: (NP, P, P) patches, their inside mask, and
    the per-patch side information."""
    b, h, w = batch.u.shape
    geo = Geometry(h, w, PATCH)
    u = torch.from_numpy(geo.to_patches(batch.u).reshape(-1, PATCH, PATCH).astype(np.float32)).to(
        device
    )
    inside = torch.from_numpy(np.tile(geo.inside, (b, 1, 1)).astype(np.float32)).to(device)
    rep = geo.n_patches

    def col(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32)).repeat_interleave(rep).to(device)

    return u, inside, TileParams(col(batch.shift), col(batch.mid), col(batch.vmax))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Cosine schedule from ``cfg.lr`` to ``cfg.lr_final`` over ``cfg.steps``."""
    t = min(1.0, step / max(1, cfg.steps))
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1.0 + math.cos(math.pi * t))


def finetune(
    params: Sequence[torch.nn.Parameter],
    cfg: TrainConfig,
    batch_loss: Callable[[], torch.Tensor],
    *,
    log: Callable[[int, float], bool | None] | None = None,
) -> None:
    """Train ``params`` for ``cfg.steps`` on ``batch_loss()`` with training's optimiser,
    schedule and clipping, without checkpoints: the loop of ablations and of per-image
    adaptation (``codec.adapt``). ``log`` gets every step's number (from 1) and loss, and
    ends the training early by returning True (adaptation's divergence check)."""
    opt = torch.optim.Adam(params, lr=cfg.lr)
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if log and log(step + 1, float(loss.detach())):
            return


def train(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    device: str = "cpu",
    resume: bool = True,
    sampler: CropSampler | None = None,
    max_steps: int | None = None,
) -> HpacNet:
    """Train (or continue training) and return the network; logs go to ``out_dir/log.jsonl``.

    ``sampler`` defaults to crops of the train split (``CropSampler.from_corpus``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    dev = torch.device(device)
    net = HpacNet(HpacConfig(**cfg.model)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = sampler or CropSampler.from_corpus(
        cfg.crop, cfg.augment, cfg.seed, context=cfg.context, groups=cfg.groups
    )
    step = 0
    ckpt = out_dir / "checkpoint.pt"
    if cfg.init:  # a checkpoint below replaces these when the run resumes
        start, info = zoo.load(cfg.init)
        if info.config != net.config.to_dict():
            msg = f"init model {cfg.init} has config {info.config}, this run {net.config.to_dict()}"
            raise ValueError(msg)
        net.load_state_dict(start.state_dict())
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sampler.rng.bit_generator.state = state["rng"]
        step = state["step"]
    last = min(cfg.steps, step + max_steps) if max_steps else cfg.steps
    t0 = time.time()
    log_path = out_dir / "log.jsonl"
    if step and log_path.exists():  # drop records of steps after the checkpoint (a crash)
        lines = log_path.read_text().splitlines(keepends=True)
        log_path.write_text("".join(r for r in lines if json.loads(r)["step"] <= step))
    # a run from step 0 starts a new log (--fresh used to append to the old run's records)
    with open(log_path, "a" if step else "w") as log:
        while step < last:
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step)
            total, n = batch_bits(net, sampler.batch(cfg.batch), dev, focus=cfg.loss == "focus")
            loss = total / n
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            if step % cfg.log_every == 0 or step == last:
                rec = {
                    "step": step,
                    "bps": round(float(loss.detach()), 4),
                    "lr": lr_at(cfg, step),
                    "s": round(time.time() - t0, 1),
                }
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if step % cfg.checkpoint_every == 0 or step == last:
                state = {
                    "model": net.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": sampler.rng.bit_generator.state,
                    "step": step,
                }
                torch.save(state, ckpt.with_suffix(".tmp"))
                ckpt.with_suffix(".tmp").replace(ckpt)
    return net
