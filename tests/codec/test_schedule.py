"""Coding order: steps partition each patch, masks are causal, patches round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from llic_imaging.codec.schedule import Geometry, mask_taps, steps_per_patch


@pytest.mark.parametrize(
    ("h", "w", "p"), [(1, 1, 32), (1, 300, 32), (70, 45, 32), (64, 64, 32), (5, 9, 4)]
)
def test_steps_cover_every_inside_position_once(h: int, w: int, p: int) -> None:
    g = Geometry(h, w, p)
    allpos = np.concatenate(g.step_positions)
    assert allpos.size == h * w
    assert np.unique(allpos).size == allpos.size
    assert g.steps == steps_per_patch(p) == 3 * p - 2


def test_step_count_does_not_grow_with_image_size() -> None:
    assert Geometry(4096, 4096, 32).steps == Geometry(32, 32, 32).steps


def test_patch_layout_round_trip() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, (3, 70, 45))
    g = Geometry(70, 45, 32)
    np.testing.assert_array_equal(g.from_patches(g.to_patches(a)), a)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_masks_are_causal(k: int) -> None:
    a = mask_taps(k, include_current=False)
    b = mask_taps(k, include_current=True)
    assert all(dc + 2 * dr < 0 for dr, dc in a)
    assert all(dc + 2 * dr <= 0 for dr, dc in b)
    assert (0, 0) in {tuple(t) for t in b.tolist()}
    assert (0, -1) in {tuple(t) for t in a.tolist()}  # the W neighbour is an earlier step
