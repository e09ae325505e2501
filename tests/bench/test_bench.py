"""``bench.run`` on tiny planes: bit-exact round trips, bps from bytes, every group in the tables."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from llic_imaging import bench, corpus
from llic_imaging.bench.codecs import prepare_unsigned, resolve
from llic_imaging.bench.report import (
    BEGIN,
    END,
    READ,
    BenchReport,
    PlaneResult,
    replace_section,
)

CLASSICAL = ("jxl_e7", "jpegls", "jpeg2k", "png", "zstd19")


def _plane(relpath: str, group: str, name: str, array: np.ndarray) -> corpus.Plane:
    return corpus.Plane(corpus.CorpusFile(Path(relpath), relpath, group, None), name, array)


@pytest.fixture(scope="module")
def planes_tiny() -> list[corpus.Plane]:
    rng = np.random.default_rng(7)
    ct = (rng.integers(-2000, 1500, size=(24, 20))).astype(np.int16)
    sat = rng.integers(0, 256, size=(17, 33), dtype=np.uint8)
    flat = np.full((9, 11), 1234, dtype=np.uint16)
    return [
        _plane("medical/CT_tiny.dcm", "CT", "f0", ct),
        _plane("satellite/tiny.tif", "satellite 8-bit", "b0", sat),
        _plane("medical/MR_flat.dcm", "MR", "f0", flat),
    ]


@pytest.fixture(scope="module")
def report_classical(planes_tiny: list[corpus.Plane]) -> BenchReport:
    return bench.run(planes_tiny, codecs=CLASSICAL, progress=False)


def test_every_round_trip_is_exact(report_classical: BenchReport) -> None:
    assert len(report_classical.results) == 3 * len(CLASSICAL)
    assert report_classical.failures() == []


def test_bps_is_eight_times_bytes_over_samples(
    report_classical: BenchReport, planes_tiny: list[corpus.Plane]
) -> None:
    for r in report_classical.results:
        assert r.bps == 8 * r.compressed_bytes / (r.height * r.width)
    # The sizes are those of the codec's real output, encoded here independently.
    ct = prepare_unsigned(planes_tiny[0].array)
    assert ct.array.dtype == np.uint16
    assert ct.array.min() == 0  # shifted by the plane minimum, as BASELINES
    sizes = {(r.file, r.codec): r.compressed_bytes for r in report_classical.results}
    assert sizes[("medical/CT_tiny.dcm", "png")] == len(imagecodecs.png_encode(ct.array, level=9))
    zstd = imagecodecs.zstd_encode(ct.array.astype("<u2").tobytes(), level=19)
    assert sizes[("medical/CT_tiny.dcm", "zstd19")] == len(zstd)


def test_constant_planes_are_coded_but_not_averaged(report_classical: BenchReport) -> None:
    flat = [r for r in report_classical.results if r.file == "medical/MR_flat.dcm"]
    assert flat
    assert all(r.constant and r.exact for r in flat)
    means = report_classical.group_means()
    assert all(v is None for v in means["MR"].values())
    ct = [r.bps for r in report_classical.results if r.group == "CT" and r.codec == "png"]
    assert means["CT"]["png"] == pytest.approx(ct[0])
    assert report_classical.counts()["MR"] == (1, 0, 1)


def test_markdown_has_every_group_and_codec(report_classical: BenchReport) -> None:
    text = report_classical.to_markdown()
    assert text.startswith(BEGIN)
    assert text.rstrip().endswith(END)
    for group in corpus.GROUPS:
        assert f"\n| {group} |" in text
    for codec in CLASSICAL:
        assert f"| {codec} |" in text
    assert "512x512 16-bit slices" in text
    assert "0 not bit-exact or failed" in text


def test_to_dict_is_strict_json(report_classical: BenchReport) -> None:
    d = json.loads(json.dumps(report_classical.to_dict(), allow_nan=False))
    assert d["codecs"] == list(CLASSICAL)
    assert d["failures"] == 0
    assert len(d["results"]) == len(report_classical.results)
    assert set(d["group_mean_bps"]) == set(corpus.GROUPS)


def test_write_markdown_keeps_hand_written_text(
    report_classical: BenchReport, tmp_path: Path
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{BEGIN}\nold numbers\n{END}\n\n## Notes\nkept\n")
    report_classical.write_markdown(doc)
    report_classical.write_markdown(doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n\n")
    assert text.endswith("\n\n## Notes\nkept\n")
    assert "old numbers" not in text
    assert text.count(BEGIN) == text.count(END) == 1


def test_replace_section_appends_and_refuses_an_open_marker() -> None:
    assert replace_section("# T\n", f"{BEGIN}\nx\n{END}\n") == f"# T\n\n{BEGIN}\nx\n{END}\n"
    with pytest.raises(ValueError, match="without"):
        replace_section(f"a\n{BEGIN}\nb\n", f"{BEGIN}\n{END}\n")


def test_a_failed_codec_has_no_group_mean() -> None:
    common = {"file": "f", "group": "CT", "height": 2, "width": 2, "dtype": "int16", "bits": 3}
    good = PlaneResult(
        **common, plane="a", constant=False, codec="png", compressed_bytes=4, bps=8.0,
        encode_s=1.0, decode_s=1.0, exact=True,
    )  # fmt: skip
    bad = PlaneResult(
        **common, plane="b", constant=False, codec="png", compressed_bytes=None, bps=None,
        encode_s=None, decode_s=None, exact=False, error="ValueError: boom",
    )  # fmt: skip
    report = BenchReport([good, bad], ("png",), "s", "all", None, 0.0, {}, {})
    assert report.group_means()["CT"]["png"] is None
    assert report.failures() == [bad]
    assert "ValueError: boom" in report.to_markdown()


def test_adapted_llic_gets_its_own_ratios() -> None:
    common = {"file": "f", "group": "CT", "height": 2, "width": 2, "dtype": "int16", "bits": 3}
    results = [
        PlaneResult(
            **common,
            plane="a",
            constant=False,
            codec=codec,
            compressed_bytes=n,
            bps=2.0 * n,
            encode_s=1.0,
            decode_s=1.0,
            exact=True,
        )  # fmt: skip
        for codec, n in (("llic", 4), ("llic_adapt", 3), ("jxl_e7", 5))
    ]
    codecs = ("llic", "llic_adapt", "jxl_e7")
    report = BenchReport(results, codecs, "s", "all", None, 0.0, {}, {})
    assert report.ratios()["CT"] == {"llic/jxl_e7": 0.8, "llic_adapt/jxl_e7": 0.6}
    assert "llic_adapt/jxl_e7" in report.to_markdown()


def test_run_on_a_folder_writes_json_and_markdown(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "a.npy", rng.integers(0, 4096, size=(2, 12, 16), dtype=np.uint16))
    np.save(tmp_path / "b.npy", rng.integers(0, 200, size=(10, 9), dtype=np.uint8))
    out_json, out_md = tmp_path / "out" / "r.json", tmp_path / "r.md"
    out_json.parent.mkdir()
    report = bench.run(
        tmp_path, codecs=("png", "jpegls"), json_path=out_json, markdown_path=out_md, progress=False
    )
    assert report.split == "all"  # not the shared corpus: the folder is taken whole
    assert {r.group for r in report.results} == {"other 16-bit", "other 8-bit"}
    assert len(report.results) == 3 * 2
    assert json.loads(out_json.read_text())["counts"]["other 16-bit"]["planes"] == 2
    text = out_md.read_text()
    assert "| other 8-bit |" in text
    assert text.startswith("# Benchmarks\n")


def test_an_unreadable_file_is_a_failure_of_that_file_only(tmp_path: Path) -> None:
    np.save(tmp_path / "good.npy", np.arange(200, dtype=np.uint16).reshape(10, 20))
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY this is not an array")
    report = bench.run(tmp_path, codecs=("png",), progress=False)
    (failure,) = report.failures()
    assert failure.file == "bad.npy"
    assert failure.codec == READ
    assert failure.error
    assert [r.file for r in report.results if r.exact] == ["good.npy"]
    assert report.counts()["other 16-bit"] == (1, 1, 0)
    assert "bad.npy" in report.to_markdown()


def test_bad_arguments_are_rejected(tmp_path: Path, planes_tiny: list[corpus.Plane]) -> None:
    with pytest.raises(ValueError, match="unknown codecs"):
        bench.run(planes_tiny, codecs=("png", "webp"), progress=False)
    with pytest.raises(ValueError, match="split"):
        bench.run(planes_tiny, codecs=("png",), split="test", progress=False)
    with pytest.raises(ValueError, match="no image files"):
        bench.run(tmp_path, codecs=("png",), progress=False)
    with pytest.raises(ValueError, match="memory"):
        bench.run(planes_tiny, codecs=("png",), memory=True, progress=False)


def test_llic_round_trips_through_the_public_api() -> None:
    try:
        resolve(("llic",), 1)
    except RuntimeError as exc:
        pytest.skip(f"llic engine not usable yet: {exc}")
    rng = np.random.default_rng(3)
    planes = [
        _plane("medical/CT_a.dcm", "CT", "f0", rng.integers(-1024, 900, (64, 48)).astype(np.int16)),
        _plane(
            "satellite/b.tif", "satellite 8-bit", "b0", rng.integers(0, 256, (40, 72), np.uint8)
        ),
    ]
    report = bench.run(planes, codecs=("llic", "jxl_e7", "jpegls"), numthreads=1, progress=False)
    assert report.failures() == []
    for r in report.results:
        assert r.bps == 8 * r.compressed_bytes / (r.height * r.width)
    ratios = report.ratios()["CT"]
    assert set(ratios) == {"llic/jxl_e7", "llic/jpegls"}
    assert "llic/jxl_e7" in report.to_markdown()


@pytest.mark.data
def test_classical_numbers_match_baselines(shared_data: Path) -> None:
    rel = "medical/CT_pydicom_CT_small.dcm"
    with (shared_data / "baselines.tsv").open(newline="", encoding="utf-8") as fh:
        expected = {
            row["codec"]: float(row["bps"])
            for row in csv.DictReader(fh, delimiter="\t")
            if row["file"] == rel
        }
    report = bench.run(shared_data / rel, codecs=CLASSICAL, progress=False)
    got = {r.codec: r.bps for r in report.results}
    jpegls_exact = "pyjpegls" in report.settings["jpegls"]
    for codec in CLASSICAL:
        if codec == "jpegls" and not jpegls_exact:
            continue  # imagecodecs' CharLS signals 16 bits and costs ~1 % more
        assert got[codec] == pytest.approx(expected[codec], abs=1e-4), codec


def test_unusable_report_paths_are_refused_before_the_run(tmp_path: Path) -> None:
    """A full run takes hours: report paths that would fail, or destroy an image, afterwards
    are refused first, and nothing is written."""
    images = tmp_path / "images"
    images.mkdir()
    image = images / "a.npy"
    np.save(image, np.arange(200, dtype=np.uint16).reshape(10, 20))
    (tmp_path / "link.npy").hardlink_to(image)  # the same image under another name
    before = image.read_bytes()
    broken = tmp_path / "broken.md"
    broken.write_text(f"# B\n\n{BEGIN}\nold\n")
    ok_json = tmp_path / "ok.json"
    cases = {
        "is one of the benchmarked files": {"json_path": image},
        "benchmarked files": {"markdown_path": tmp_path / "link.npy"},
        "does not exist": {"json_path": tmp_path / "missing" / "r.json"},
        "is a folder": {"json_path": tmp_path},
        "different files": {"json_path": tmp_path / "r.md", "markdown_path": tmp_path / "r.md"},
        "without a following": {"json_path": ok_json, "markdown_path": broken},
    }
    for message, paths in cases.items():
        with pytest.raises(ValueError, match=message):
            bench.run(images, codecs=("png",), progress=False, **paths)
    assert image.read_bytes() == before
    assert broken.read_text() == f"# B\n\n{BEGIN}\nold\n"
    assert not ok_json.exists()  # refused before the run, not between the two reports


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_a_report_in_a_read_only_folder_is_refused(
    tmp_path: Path, planes_tiny: list[corpus.Plane]
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="not writable"):
            bench.run(planes_tiny, codecs=("png",), json_path=folder / "r.json", progress=False)
    finally:
        folder.chmod(0o755)


def test_reports_replace_the_old_file_atomically(
    report_classical: BenchReport, tmp_path: Path
) -> None:
    """The old file is replaced by a rename, never rewritten in place (a full disk would cut a
    rewrite short); its mode is kept and no temporary file is left."""
    for name, write in (
        ("r.md", report_classical.write_markdown),
        ("r.json", report_classical.write_json),
    ):
        path = tmp_path / name
        path.write_text(f"# Benchmarks\n\n{BEGIN}\nold\n{END}\n")
        path.chmod(0o640)
        inode = path.stat().st_ino
        write(path)
        assert path.stat().st_ino != inode
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]
