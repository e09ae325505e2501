"""The crop sampler: deterministic per seed, crop size, values in range, windows of the source,
side information equal to the encoder's, and only the committed train split is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _train_data import synthetic_planes

from llic_imaging import corpus
from llic_imaging.codec.engine import MAX_SHIFT, chunk_params
from llic_imaging.train.data import Batch, CropSampler

ALL_AUGMENT = {"flips": True, "bit_shift_prob": 1.0, "offset_prob": 1.0}


def _sampler(
    crop: int = 32, augment: dict | None = None, seed: int = 5, context: int = 0
) -> CropSampler:
    planes, groups = synthetic_planes()
    return CropSampler(planes, groups, crop, augment or {}, seed, context=context)


def _equal(a: Batch, b: Batch) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("u", "shift", "mid", "vmax"))


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    one, two = _sampler(augment=ALL_AUGMENT), _sampler(augment=ALL_AUGMENT)
    for _ in range(3):
        assert _equal(one.batch(4), two.batch(4))
    assert not _equal(_sampler(seed=6).batch(4), _sampler(seed=5).batch(4))


def test_rng_state_replays_the_same_batch() -> None:
    """What a checkpoint stores (the bit generator's state) is enough to replay the crops."""
    s = _sampler(augment=ALL_AUGMENT)
    s.batch(3)
    state = s.rng.bit_generator.state
    first = s.batch(3)
    s.rng.bit_generator.state = state
    assert _equal(first, s.batch(3))


@pytest.mark.parametrize("crop", [32, 48, 64])
def test_batch_shape_and_dtypes(crop: int) -> None:
    b = _sampler(crop=crop).batch(5)
    assert b.u.shape == (5, crop, crop)
    assert b.u.dtype == np.int64
    for col in (b.shift, b.mid, b.vmax):
        assert col.shape == (5,)
        assert col.dtype == np.int64


@pytest.mark.parametrize("augment", [{}, {"flips": False}, ALL_AUGMENT])
def test_values_in_range_and_side_information_is_the_encoders(augment: dict) -> None:
    """Each crop is in [0, vmax] with both ends hit and carries the codec's own chunk params."""
    s = _sampler(augment=augment)
    for _ in range(5):
        b = s.batch(8)
        for u, shift, mid, vmax in zip(b.u, b.shift, b.mid, b.vmax, strict=True):
            assert u.min() == 0
            assert u.max() == vmax
            assert 0 < vmax <= 4095  # no source plane spans more than 12 bits
            assert 0 <= mid <= vmax
            assert 0 <= shift <= MAX_SHIFT
            p = chunk_params(u)
            assert (p.vmin, p.vmax, p.shift, p.mid) == (0, vmax, shift, mid)


def test_context_side_information_is_the_surrounding_windows() -> None:
    """A crop cut from a tile-sized window keeps the window's side information (as encoded).

    ``context`` = the planes' size makes the window the whole plane: each crop's side
    information must be one plane's ``chunk_params`` and its values that plane's minus its min.
    """
    planes, _ = synthetic_planes()
    params = {(p.shift, p.mid, p.vmax): k for k, p in enumerate(map(chunk_params, planes))}
    b = _sampler(augment={"flips": False}, context=96, seed=2).batch(12)
    for u, shift, mid, vmax in zip(b.u, b.shift, b.mid, b.vmax, strict=True):
        assert u.shape == (32, 32)
        k = params[(shift, mid, vmax)]
        whole = planes[k].astype(np.int64) - planes[k].min()
        windows = np.lib.stride_tricks.sliding_window_view(whole, (32, 32))
        assert np.any(np.all(windows == u, axis=(2, 3)))
    c = _sampler(augment=ALL_AUGMENT, context=80, seed=2).batch(12)
    assert np.all(c.u.min(axis=(1, 2)) >= 0)
    assert np.all(c.u.max(axis=(1, 2)) <= c.vmax)
    assert np.any(c.u.min(axis=(1, 2)) > 0) or np.any(c.u.max(axis=(1, 2)) < c.vmax)


def test_bit_shift_lowers_the_range_of_wide_crops() -> None:
    """With bit_shift_prob = 1 every crop wider than 8 bits is divided by 2..16."""
    n_wide = 0
    for seed in range(16):  # the first crop of a seed is the same window with and without
        a = _sampler(augment={"flips": False}, seed=seed).batch(1)
        b = _sampler(augment={"flips": False, "bit_shift_prob": 1.0}, seed=seed).batch(1)
        if a.vmax[0] > 255:
            n_wide += 1
            assert a.vmax[0] >> 4 <= b.vmax[0] <= a.vmax[0] >> 1
        else:
            assert np.array_equal(a.u, b.u)
    assert n_wide >= 4


def _normalised_windows(planes: list[np.ndarray], crop: int) -> set[bytes]:
    """Every crop x crop window of the planes, minus its minimum, as bytes."""
    out = set()
    for p in planes:
        w = np.lib.stride_tricks.sliding_window_view(p.astype(np.int64), (crop, crop))
        w = (w - w.min(axis=(2, 3), keepdims=True)).reshape(-1, crop * crop)
        out.update(r.tobytes() for r in w)
    return out


@pytest.mark.parametrize("flips", [False, True])
def test_crops_are_windows_of_the_source_planes(flips: bool) -> None:
    planes, _ = synthetic_planes()
    windows = _normalised_windows(planes, 32)
    b = _sampler(crop=32, augment={"flips": flips}, seed=3).batch(8)
    for u in b.u:
        u = u - u.min()  # noqa: PLW2901
        cands = [t for c in (u, u.T) for t in (c, c[::-1], c[:, ::-1], c[::-1, ::-1])]
        hits = [np.ascontiguousarray(c).tobytes() in windows for c in cands]
        assert hits[0] if not flips else any(hits)


def test_constant_and_small_planes_are_never_drawn() -> None:
    planes, groups = synthetic_planes()
    planes += [np.full((96, 96), 7, np.uint16), np.arange(20 * 96, dtype=np.uint16).reshape(20, 96)]
    groups += ["constant", "small"]
    s = CropSampler(planes, groups, 32, {}, 0)
    assert len(s.planes) == 4
    assert len(s.groups) == 3  # "12-bit", "8-bit", "signed": groups left empty are dropped


def test_groups_are_drawn_equally_often() -> None:
    """Three planes in group "a", one in "b": each group gets half the crops, not 3/4 and 1/4."""
    rng = np.random.default_rng(0)
    planes = [rng.integers(0, 11, (40, 40)) for _ in range(3)] + [rng.integers(0, 1001, (40, 40))]
    s = CropSampler(planes, ["a", "a", "a", "b"], 32, {}, 1)
    vmax = s.batch(400).vmax
    assert np.all((vmax <= 10) | (vmax > 100))
    assert abs(np.mean(vmax <= 10) - 0.5) < 0.08  # 3.2 binomial standard deviations


@pytest.mark.data
def test_from_corpus_reads_the_train_split_only(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file listed in splits/train.txt is read, no validation file, nothing else."""
    monkeypatch.setenv("LLIC_DATA", str(shared_data))
    read: list[str] = []

    def fake_read_planes(file: corpus.CorpusFile, **_: object) -> list[corpus.Plane]:
        read.append(file.relpath)  # no decoding: a small non-constant plane per file
        return [corpus.Plane(file, "p0", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))]

    monkeypatch.setattr(corpus, "read_planes", fake_read_planes)
    s = CropSampler.from_corpus(32, {}, 0)
    train, validation = set(corpus.split_paths("train")), set(corpus.split_paths("validation"))
    present = {f.relpath for f in corpus.files(shared_data)}
    assert read
    assert len(read) == len(set(read))
    assert not set(read) & validation
    assert set(read) == train & present
    assert train & present == train, "some train files are missing from ../shared/data"
    assert len(s.planes) == len(read)


def test_from_corpus_keeps_only_the_groups_asked_for(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-domain fine-tunes (``groups`` in a config) draw only from those benchmark groups."""
    monkeypatch.setenv("LLIC_DATA", str(shared_data))

    def fake_read_planes(file: corpus.CorpusFile, **_: object) -> list[corpus.Plane]:
        return [corpus.Plane(file, "p0", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))]

    monkeypatch.setattr(corpus, "read_planes", fake_read_planes)
    s = CropSampler.from_corpus(32, {}, 0, groups=["satellite 16-bit"])
    everything = CropSampler.from_corpus(32, {}, 0)
    assert 0 < len(s.planes) < len(everything.planes)
    assert len(s.groups) == 1
    with pytest.raises(ValueError, match="no train planes"):
        CropSampler.from_corpus(32, {}, 0, groups=["no such group"])
