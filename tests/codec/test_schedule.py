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


def test_framed_values_mark_what_is_not_coded() -> None:
    """A 5 x 3 tile in 4 x 4 patches: values inside the tile, -1 in the frame (a row above,
    a column each side) and beyond the tile's edge; without values, -1 everywhere."""
    geo = Geometry(5, 3, 4)
    values = np.arange(geo.n_patches * 16)
    framed = geo.framed(values)
    assert framed.shape == (geo.n_patches, 5, 6)
    assert (framed[:, 0] == -1).all()
    assert (framed[:, :, 0] == -1).all()
    assert (framed[:, :, -1] == -1).all()
    np.testing.assert_array_equal(framed[0, 1:4, 1:4], values[:16].reshape(4, 4)[:3, :3])
    assert (framed[0, 1:, 4] == -1).all()  # column 3 is beyond the tile
    assert (framed[1, 2:] == -1).all()  # the second patch holds one row of the tile
    assert (geo.framed() == -1).all()
