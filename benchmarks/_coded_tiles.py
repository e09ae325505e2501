"""Sampled full tiles of a plane as the encoder codes them: the shared input of the oracles
(``scale_oracles.py``, ``local_lsq_oracle.py``). Importable because scripts run from here."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from llic_imaging.codec import engine
from llic_imaging.model.runtime import deterministic

CPU = torch.device("cpu")


def sampled(plane: np.ndarray, count: int, rng: np.random.Generator) -> list[engine.TileRef]:
    """Up to ``count`` of the plane's full 256 x 256 tiles, a random pick in storage order."""
    refs = [r for r in engine.tile_grid((1, *plane.shape), 256) if r.h == r.w == 256]
    if len(refs) > count:
        refs = [refs[i] for i in sorted(rng.choice(len(refs), count, replace=False))]
    return refs


def coded(
    plane: np.ndarray, net, refs: list[engine.TileRef]
) -> Iterator[tuple[object, np.ndarray]]:
    """``(choice, live)`` of every coded tile of ``refs``: the encoder's format-7 choice (its
    ``pred`` in stream order, ``params``, ``geo``, ``flags``) at patch 64, and which positions
    the distribution codes (not flat flags' hits)."""
    with deterministic():
        _, decisions = engine._choices(net, plane[None], refs, patch=64, device=CPU, context=1)
        for _, choices in decisions:
            c = choices[engine.FLAT_FORMAT]
            live = np.ones(c.pred[2].size, bool)
            if c.flags is not None:
                live[c.flags.hits] = False
            yield c, live
