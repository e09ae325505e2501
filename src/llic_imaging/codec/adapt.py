"""Per-image adaptation: fine-tune the network on the image being coded and send the change.

The shipped network learned from a few dozen images; an image's own statistics (its noise,
texture, reconstruction kernel) are worth 2-10 % of its bits that no training set supplies
(``docs/design.md``, "Per-image adaptation"). The encoder fine-tunes a copy of the network on
crops of the image with the training loss, plus an MDL term that charges every unit of change
of an integer parameter, and sends the change: one integer delta per parameter, zigzag LEB128
varints under raw deflate. The decoder adds the deltas to the base model's integers, so the
adapted network is as integer-exact as the shipped one. Fitting runs in float and may differ
between machines; the stream carries its result, so decoding never depends on it.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Collection

import numpy as np
import torch

from llic_imaging.errors import StreamError
from llic_imaging.model import quant
from llic_imaging.model.hpac import HpacNet, require_exact
from llic_imaging.train.data import CropSampler
from llic_imaging.train.loop import TrainConfig, batch_bits, finetune

__all__ = ["STEPS", "adapted", "fit", "integers", "pack", "unpack"]

STEPS = 300  # measured: docs/benchmarks.md, "Per-image adaptation"
LR = 2e-3
MDL_BITS = 4.0  # bits charged per unit of integer change, spread over the image's samples
CROP = 64
BATCH = 8
SEED = 0
REGIONS = 64  # tiles the crops are drawn from (all of them in smaller images)
# The fit is checked every CHECK steps on HELD batches of crops it never trains on (another
# seed), by the training objective; it keeps the best check and stops once a check exceeds
# the best by DIVERGED. Without it the fit diverged on noweb.tif (held-out +225 % at step 100,
# the stream 33 % larger) where step 50 had been 2.2 % better (docs/benchmarks.md).
CHECK = 25
HELD = 4
DIVERGED = 1.10
_MAX_VARINT = 4  # bytes: zigzag deltas are below 2**22 (twice BIAS_MAX)


def _units(name: str) -> int:
    """Integer steps per float unit: biases live on the accumulator's finer grid."""
    return 1 << (quant.W_FRAC + quant.A_FRAC if name.endswith("bias") else quant.W_FRAC)


def _limit(name: str) -> int:
    return quant.BIAS_MAX if name.endswith("bias") else quant.W_MAX


def integers(net: HpacNet) -> dict[str, np.ndarray]:
    """Every parameter as the integer the coder uses, in ``state_dict`` order."""
    out = {}
    for name, p in net.state_dict().items():
        q = quant.quant_bias(p) if name.endswith("bias") else quant.quant_weight(p)
        out[name] = q.cpu().numpy().astype(np.int64)
    return out


def fit(
    net: HpacNet,
    stack: np.ndarray,
    *,
    tile: int,
    steps: int = STEPS,
    names: Collection[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray | None:
    """Integer deltas (one per parameter, ``state_dict`` order) fitted to ``stack``, or None
    when it has no plane of at least CROP x CROP with two values, no check of the fit on
    held-out crops beats the unfitted network, or the fitted network's sums could leave
    float32's exact integers (``hpac.require_exact``: the decoder would refuse the adapter).

    ``names``: the parameters to fit (default all; the others keep a zero delta).
    ``progress``: called with the number of steps done after every step. One torch thread and
    fixed seeds: the same machine writes the same adapter whatever thread count coding uses.
    """
    regions = _regions(stack, tile)
    labels = ["image"] * len(regions)
    sampler = CropSampler(regions, labels, CROP, {"flips": False}, SEED, context=tile)
    if not sampler.planes:
        return None
    held_out = CropSampler(regions, labels, CROP, {"flips": False}, SEED + 1, context=tile)
    held = [held_out.batch(BATCH) for _ in range(HELD)]
    base = {k: torch.from_numpy(v).float() for k, v in integers(net).items()}
    work = copy.deepcopy(net).cpu().train().requires_grad_(False)
    params = {k: p for k, p in work.named_parameters() if names is None or k in names}
    for p in params.values():
        p.requires_grad_(True)
    sched = TrainConfig(name="adapt", steps=steps, lr=LR, lr_final=LR / 20)
    cpu = torch.device("cpu")

    def objective(batches: list) -> torch.Tensor:
        """Bits per sample of ``batches`` plus the MDL charge for the change so far."""
        costs = [batch_bits(work, b, cpu, focus=True) for b in batches]
        change = sum((p * _units(k) - base[k]).abs().sum() for k, p in params.items())
        return sum(t for t, _ in costs) / sum(n for _, n in costs) + MDL_BITS * change / stack.size

    best, kept = math.inf, None  # the best held-out objective, and its parameters

    def check(step: int, _: float) -> bool:
        """Keep the best held-out check; True (stop) once the fit has diverged."""
        nonlocal best, kept
        if progress:
            progress(step)
        if step % CHECK and step != steps:
            return False
        with torch.no_grad():
            value = float(objective(held))
        if value < best:
            best, kept = value, {k: p.detach().clone() for k, p in params.items()}
        return value > DIVERGED * best

    threads = torch.get_num_threads()
    torch.manual_seed(SEED)
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            best = float(objective(held))  # the unfitted network's, with no parameters to keep
        with torch.enable_grad():
            finetune(
                list(params.values()), sched, lambda: objective([sampler.batch(BATCH)]), log=check
            )
    finally:
        torch.set_num_threads(threads)
    if kept is None:
        return None
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(kept[k])
    try:
        require_exact(work, StreamError, "adapter")
    except StreamError:
        return None
    new = integers(work.eval())
    return np.concatenate([(new[k] - base[k].numpy().astype(np.int64)).ravel() for k in new])


def _regions(stack: np.ndarray, tile: int) -> list[np.ndarray]:
    """Up to REGIONS of the stack's tiles (a fixed random choice), the windows crops come from:
    they bound the fitting's memory on huge images, and side information is computed per tile
    as the encoder does."""
    from llic_imaging.codec.engine import tile_grid

    refs = tile_grid(stack.shape, tile)
    if len(refs) > REGIONS:
        pick = np.random.default_rng(SEED).choice(len(refs), REGIONS, replace=False)
        refs = [refs[i] for i in sorted(pick)]
    return [stack[r.plane, r.y : r.y + r.h, r.x : r.x + r.w] for r in refs]


def pack(deltas: np.ndarray) -> bytes:
    """Zigzag LEB128 varints of the deltas, raw-deflated."""
    z = (deltas.astype(np.int64) << 1) ^ (deltas.astype(np.int64) >> 63)
    out = bytearray()
    for v in z.tolist():
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(bytes(out)) + c.flush()


def unpack(payload: bytes, net: HpacNet) -> np.ndarray:
    """The deltas of an adapter payload for ``net``'s architecture (StreamError if malformed)."""
    count = sum(p.numel() for p in net.state_dict().values())
    d = zlib.decompressobj(-15)
    try:
        raw = d.decompress(payload, count * _MAX_VARINT)
    except zlib.error as exc:
        msg = f"adapter payload does not inflate: {exc}"
        raise StreamError(msg) from exc
    if d.unconsumed_tail or not d.eof or d.unused_data:
        msg = "adapter payload is not one complete deflate stream of its parameter count"
        raise StreamError(msg)
    values, v, shift = [], 0, 0
    for byte in raw:
        v |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append((v >> 1) ^ -(v & 1))
            v, shift = 0, 0
        elif shift >= 7 * _MAX_VARINT:
            break
    if shift or len(values) != count:
        msg = f"adapter holds {len(values)} whole deltas, the model has {count} parameters"
        raise StreamError(msg)
    return np.asarray(values, np.int64)


def adapted(net: HpacNet, deltas: np.ndarray) -> HpacNet:
    """A copy of ``net`` whose integer parameters are the base's plus ``deltas`` (exact: the
    float masters are set to integers over a power of two, which quantise back to themselves).

    StreamError if a delta takes an integer out of its range, or the adapted network's sums out
    of float32's exact integers (possible only for layers wider than the shipped ones)."""
    out = copy.deepcopy(net)
    at = 0
    state = {}
    for name, base in integers(net).items():
        d = deltas[at : at + base.size].reshape(base.shape)
        at += base.size
        new = base + d
        if np.abs(new).max(initial=0) > _limit(name):
            msg = f"adapter takes parameter {name} outside its integer range"
            raise StreamError(msg)
        state[name] = torch.from_numpy(new.astype(np.float64) / _units(name)).float()
    out.load_state_dict(state)
    require_exact(out, StreamError, "adapter")
    return out.eval().requires_grad_(False)
