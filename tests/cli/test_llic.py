"""``llic`` CLI: commands in-process through CliRunner (exit codes, JSON), plus one real subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from _adapt_data import period_three
from llic_imaging.bench.report import BEGIN, END
from llic_imaging.cli import _files
from llic_imaging.cli._options import EXIT_OK, EXIT_USAGE
from llic_imaging.cli.llic import cli, main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
COMMANDS = ("compress", "restore", "verify", "info", "bench", "demo")
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def stderr_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def planes_u16() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 4096, size=(24, 40), dtype=np.uint16)


@pytest.fixture
def npy_file(tmp_path: Path, planes_u16: np.ndarray) -> Path:
    path = tmp_path / "image.npy"
    np.save(path, planes_u16)
    return path


@pytest.fixture
def llic_file(npy_file: Path) -> Path:
    result = run("compress", npy_file, "-q")
    assert result.exit_code == 0, result.output
    return npy_file.with_name("image.npy.llic")


def test_help_lists_every_command_with_an_example() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.stdout
        sub = run(name, "--help")
        assert sub.exit_code == 0, name
        assert "Example" in sub.stdout, name


def test_version() -> None:
    import llic_imaging

    result = run("--version")
    assert result.exit_code == 0
    assert llic_imaging.__version__ in result.stdout


def test_main_returns_exit_codes_without_raising(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    assert main(["compress"]) == EXIT_USAGE  # missing argument
    assert main(["no-such-command"]) == EXIT_USAGE
    assert "Usage" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("compress", tmp_path / "missing.npy").exit_code == 2
    assert run("info").exit_code == 2
    assert run("compress", "--threads", "0", tmp_path).exit_code == 2
    assert run("compress", "--device", "tpu", tmp_path).exit_code == 2
    assert run("compress", "--tile", "4", tmp_path).exit_code == 2


def test_compress_then_restore_is_byte_identical(npy_file: Path, tmp_path: Path) -> None:
    archive = tmp_path / "out.llic"
    assert run("compress", npy_file, "-o", archive).exit_code == 0
    restored = tmp_path / "restored.npy"
    result = run("restore", archive, "-o", restored)
    assert result.exit_code == 0, result.output
    assert restored.read_bytes() == npy_file.read_bytes()


def test_compress_with_plane_context(tmp_path: Path) -> None:
    stack = tmp_path / "stack.npy"
    base = np.random.default_rng(2).integers(0, 4000, size=(24, 40))
    np.save(stack, np.stack([base + k for k in range(3)]).astype(np.uint16))
    archive = tmp_path / "ctx.llic"
    assert run("compress", stack, "-o", archive, "--context", "2").exit_code == 0
    header = json.loads(run("info", archive, "--json").stdout)
    assert header["context"] == 2
    assert run("verify", archive, stack).exit_code == 0
    assert run("compress", stack, "-o", tmp_path / "x.llic", "--context", "0").exit_code == 2


def test_compress_with_adaptation(tmp_path: Path) -> None:
    """On an image where the adapter pays for itself."""
    image = tmp_path / "pattern.npy"
    np.save(image, period_three())
    archive = tmp_path / "pattern.llic"
    assert run("compress", image, "-o", archive, "--adapt", "-q").exit_code == 0
    assert json.loads(run("info", archive, "--json").stdout)["adapted"] is True
    assert run("verify", archive, image).exit_code == 0


def test_compress_json(npy_file: Path, planes_u16: np.ndarray) -> None:
    result = run("compress", npy_file, "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["input"] == str(npy_file)
    assert record["output"] == str(npy_file) + ".llic"
    assert record["format"] == "npy"
    assert record["shape"] == list(planes_u16.shape)
    assert record["dtype"] == "uint16"
    assert record["input_bytes"] == npy_file.stat().st_size
    assert record["output_bytes"] == Path(record["output"]).stat().st_size
    assert record["bits_per_sample"] == pytest.approx(8 * record["output_bytes"] / planes_u16.size)


def test_restore_without_output_strips_suffix(llic_file: Path, npy_file: Path) -> None:
    original = npy_file.read_bytes()
    npy_file.unlink()
    result = run("restore", llic_file, "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["output"] == str(npy_file)
    assert npy_file.read_bytes() == original


def test_existing_output_needs_overwrite(npy_file: Path, llic_file: Path) -> None:
    before = llic_file.read_bytes()
    refused = run("compress", npy_file)
    assert refused.exit_code == 2
    assert "--overwrite" in refused.stderr
    assert run("compress", npy_file, "--overwrite", "-q").exit_code == 0
    assert llic_file.read_bytes() == before  # same input, same options: same stream


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(
    npy_file: Path, llic_file: Path, tmp_path: Path
) -> None:
    before = npy_file.read_bytes(), llic_file.read_bytes()
    (tmp_path / "link.npy").symlink_to(npy_file)
    for args in (
        ("compress", npy_file, "-o", npy_file),
        ("compress", npy_file, "-o", tmp_path / "link.npy"),
        ("restore", llic_file, "-o", llic_file),
    ):
        refused = run(*args, "--overwrite")
        assert refused.exit_code == 2, args
        assert "is an input" in refused.stderr
    assert (npy_file.read_bytes(), llic_file.read_bytes()) == before


def test_directory_mirrors_tree_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    np.save(src / "a.npy", rng.integers(-300, 300, size=(2, 9, 13), dtype=np.int16))
    np.save(src / "sub" / "b.npy", rng.integers(0, 255, size=(17, 5), dtype=np.uint8))
    assert run("compress", src, "-o", tmp_path / "arc", "-q").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "arc").rglob("*.llic")) == [
        "a.npy.llic",
        "b.npy.llic",
    ]
    result = run("restore", tmp_path / "arc", "-o", tmp_path / "back", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2
    for rel in ("a.npy", "sub/b.npy"):
        assert (tmp_path / "back" / rel).read_bytes() == (src / rel).read_bytes()


def test_batch_reports_bad_file_in_one_line_and_goes_on(tmp_path: Path, npy_file: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    result = run("compress", bad, npy_file, "-o", tmp_path / "out")
    assert result.exit_code == 1
    (line,) = stderr_lines(result)
    assert line.startswith(f"{bad}: ")
    assert (tmp_path / "out" / "image.npy.llic").is_file()
    assert not (tmp_path / "out" / "bad.npy.llic").exists()


def test_info_json(llic_file: Path, planes_u16: np.ndarray) -> None:
    result = run("info", llic_file, "--json")
    assert result.exit_code == 0, result.output
    header = json.loads(result.stdout)
    assert header["shape"] == list(planes_u16.shape)
    assert header["dtype"] == "uint16"
    assert header["compressed_bytes"] == llic_file.stat().st_size
    for key in ("bits_per_sample", "chunk_count", "model"):
        assert key in header
    text = run("info", llic_file)
    assert text.exit_code == 0
    assert "chunk_count" in text.stdout


def test_info_on_a_non_llic_file_is_one_line_exit_1(npy_file: Path) -> None:
    result = run("info", npy_file)
    assert result.exit_code == 1
    (line,) = stderr_lines(result)
    assert line.startswith(f"{npy_file}: ")


def test_corrupt_stream_is_refused_in_one_line(llic_file: Path, tmp_path: Path) -> None:
    data = bytearray(llic_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    llic_file.write_bytes(bytes(data))
    for command in (["restore", llic_file, "-o", tmp_path / "x.npy"], ["verify", llic_file]):
        result = run(*command)
        assert result.exit_code == 1, command
        (line,) = stderr_lines(result)
        assert line.startswith(f"{llic_file}: ")
    assert not (tmp_path / "x.npy").exists()


def test_verify_json_reports_a_stream_that_does_not_decode(llic_file: Path, npy_file: Path) -> None:
    """Scripts reading --json get a report for a damaged archive too, with or without ORIGINAL."""
    data = bytearray(llic_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    llic_file.write_bytes(bytes(data))
    for original in ([], [npy_file]):
        result = run("verify", llic_file, *original, "--json")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert report["ok"] is False
        assert report["checks"] == {"stream": False}
        (difference,) = report["differences"]
        assert difference.startswith("stream: ")
        (line,) = stderr_lines(result)
        assert line == f"{llic_file}: {difference}"


def test_verify_ok(llic_file: Path, npy_file: Path) -> None:
    assert run("verify", llic_file).exit_code == 0
    result = run("verify", llic_file, npy_file, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == {
        "archive": str(llic_file),
        "original": str(npy_file),
        "checks": {"stream": True, "bytes": True},
        "differences": [],
        "ok": True,
    }


def test_verify_mismatch_exits_1_and_says_what_differs(
    llic_file: Path, tmp_path: Path, planes_u16: np.ndarray
) -> None:
    other = planes_u16.copy()
    other[3, 5] += 1
    np.save(tmp_path / "image.npy", other)  # same name, one pixel changed
    result = run("verify", llic_file, tmp_path / "image.npy", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["checks"]["bytes"] is False
    assert "bytes" in result.stderr


def test_compare_files_names_the_first_differing_pixel(tmp_path: Path) -> None:
    from llic_imaging import formats

    a = np.zeros((4, 6), np.uint16)
    b = a.copy()
    b[2, 3] = 7
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "a.tif", a, compression="zlib")  # rewritten, not byte-exact
    tifffile.imwrite(tmp_path / "b.tif", b, compression="zlib")
    original = formats.load(tmp_path / "a.tif")
    assert original.exact != "bytes"
    checks, differences = _files.compare_files(
        tmp_path / "b.tif", tmp_path / "a.tif", metadata=original.metadata
    )
    assert checks == {
        "format": True,
        "shape": True,
        "dtype": True,
        "metadata": True,
        "restored_metadata": True,
        "pixels": False,
    }
    assert differences == ["pixels: 1 of 24 samples differ; first at (2, 3): 7 != 0"]


def test_compare_files_catches_a_restored_file_whose_tags_differ(tmp_path: Path) -> None:
    """Same pixels, same stream metadata, but the restored file lost a tag: not OK."""
    from llic_imaging import formats

    tifffile = pytest.importorskip("tifffile")
    a = np.zeros((4, 6), np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a, compression="zlib", description="site A")
    tifffile.imwrite(tmp_path / "b.tif", a, compression="zlib", description="site B")
    original = formats.load(tmp_path / "a.tif")
    checks, differences = _files.compare_files(
        tmp_path / "b.tif", tmp_path / "a.tif", metadata=original.metadata
    )
    assert checks["pixels"]
    assert checks["metadata"]
    assert checks["restored_metadata"] is False
    assert differences == [
        "restored metadata: the restored file differs from the original in pages"
    ]


def test_compare_files_names_the_first_differing_byte(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    a[1, 1] = 99
    np.save(tmp_path / "b.npy", a)
    offset = (tmp_path / "a.npy").stat().st_size - 12 + 5
    checks, differences = _files.compare_files(tmp_path / "b.npy", tmp_path / "a.npy", metadata=b"")
    assert checks == {"bytes": False}
    assert differences == [f"bytes: 140 vs 140 bytes, first difference at offset {offset}"]


def test_unexpected_error_exits_3_with_traceback_only_when_verbose(
    npy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        msg = "kaboom"
        raise RuntimeError(msg)

    monkeypatch.setattr(_files, "compress_file", boom)
    quiet = run("compress", npy_file)
    assert quiet.exit_code == 3
    assert "kaboom" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = run("compress", npy_file, "-v")
    assert loud.exit_code == 3
    assert "Traceback" in loud.stderr


def test_no_progress_bar_without_a_tty(tmp_path: Path) -> None:
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((8, 8), i, np.uint8))
    result = run("compress", tmp_path, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "file/s" not in result.stderr
    assert "%|" not in result.stderr


def test_demo_on_bundled_samples(tmp_path: Path) -> None:
    result = run("demo", SAMPLES, "--workdir", tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[-1] == "identical"
    assert lines[-1].split()[0] == "total"
    assert lines[-1].split()[-1] == "all"
    assert "NO" not in result.stdout
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    study = sorted(p.relative_to(SAMPLES).as_posix() for p in SAMPLES.glob("ct_study/*.dcm"))
    expected = {
        **dict.fromkeys(study, "dicom"),
        "head_i16.nii.gz": "nifti",
        "scene_u16.tif": "geotiff",
    }
    for name, fmt in expected.items():
        assert (rows[name][1], rows[name][-1]) == (fmt, "bytes"), name
    assert list(tmp_path.glob("*.llic"))
    assert len(list(tmp_path.glob("ct_study/*.dcm.llic"))) == len(study)


def test_demo_json(tmp_path: Path, npy_file: Path) -> None:
    (tmp_path / "in").mkdir()
    npy_file.rename(tmp_path / "in" / npy_file.name)
    result = run("demo", tmp_path / "in", "--json", "--workdir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["verified"]["ok"] is True
    assert row["compressed"]["format"] == "npy"
    assert row["restored"]["output"].endswith("image.npy")


def test_bench_writes_json_and_markdown(tmp_path: Path, npy_file: Path) -> None:
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = run("bench", npy_file.parent, "--json", out_json, "--markdown", out_md)
    assert result.exit_code == 0, result.output
    assert json.loads(out_json.read_text())
    assert out_md.read_text().strip()


def installed_script(name: str) -> Path:
    script = Path(sysconfig.get_path("scripts")) / name
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e .)")
    return script


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_console_script_starts(name: str) -> None:
    proc = subprocess.run(
        [str(installed_script(name)), "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout or "usage" in proc.stdout


def test_llic_script_runs_in_a_real_process(npy_file: Path) -> None:
    script = installed_script("llic")
    proc = subprocess.run(
        [str(script), "compress", str(npy_file), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["output"].endswith(".llic")
    bad = subprocess.run(
        [str(script), "info", str(npy_file)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1


@pytest.mark.data
@pytest.mark.parametrize("relpath", ["satellite/test_rpcs.tif", "medical/MR_emri_small.dcm"])
def test_real_file_compresses_and_verifies(shared_data: Path, tmp_path: Path, relpath: str) -> None:
    original = shared_data / relpath
    archive = tmp_path / (original.name + ".llic")
    assert run("compress", original, "-o", archive, "-q").exit_code == 0
    result = run("verify", archive, original, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


def test_restore_geotiff_as_cog_with_other_compression(tmp_path: Path) -> None:
    """`llic restore --cog --compress zstd --predictor 2`: new layout, same pixels and georeferencing."""
    rasterio = pytest.importorskip("rasterio")
    src = Path(__file__).resolve().parents[2] / "samples" / "scene_u16.tif"
    stream = tmp_path / "scene.tif.llic"
    out = tmp_path / "scene.tif"
    assert run("compress", src, "-o", stream, "-q").exit_code == 0
    args = ("--cog", "--compress", "zstd", "--predictor", "2", "-q")
    assert run("restore", stream, "-o", out, *args).exit_code == 0
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert np.array_equal(a.read(), b.read())
        assert (a.crs, a.transform, a.nodata, a.descriptions) == (
            b.crs,
            b.transform,
            b.nodata,
            b.descriptions,
        )
        assert b.compression.name.lower() == "zstd"
        assert b.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_geotiff_options_refuse_other_formats(tmp_path: Path, npy_file: Path) -> None:
    stream = tmp_path / "a.npy.llic"
    assert run("compress", npy_file, "-o", stream, "-q").exit_code == 0
    result = run("restore", stream, "-o", tmp_path / "a.npy", "--cog")
    assert result.exit_code == 1
    assert "not 'geotiff'" in result.stderr
    assert not (tmp_path / "a.npy").exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bench_refuses_an_input_as_its_report(npy_file: Path) -> None:
    """`llic bench a.npy --json a.npy` used to replace the image with JSON and exit 0."""
    before = npy_file.read_bytes()
    for option in ("--json", "--markdown"):
        result = run("bench", npy_file, option, npy_file, "-c", "png")
        assert result.exit_code == EXIT_USAGE, result.output
        assert "is one of the benchmarked files" in result.stderr
    assert npy_file.read_bytes() == before


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")
def test_bench_markdown_stays_whole_when_the_disk_fills(npy_file: Path, tmp_path: Path) -> None:
    """A write cut short (here by a file size limit, as by a full disk) must leave the old
    markdown whole, markers included, so that the next run can still rewrite it."""
    doc = tmp_path / "docs" / "bench.md"
    doc.parent.mkdir()
    original = f"# Benchmarks\n\nHand-written.\n{'x' * 3000}\n\n{BEGIN}\nold\n{END}\n\n## Notes\n"
    doc.write_text(original)
    limit = len(original) + 200  # the new section is longer than the old one
    code = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (%d, %d)); "
    code += "os.execv(sys.argv[1], sys.argv[1:])"
    args = [str(installed_script("llic")), "bench", str(npy_file.parent), "-c", "png"]
    args += ["--split", "all", "--markdown", str(doc), "-q"]
    small_disk = [sys.executable, "-c", code % (limit, limit), *args]
    full = subprocess.run(small_disk, capture_output=True, text=True, timeout=300, check=False)
    assert full.returncode == 1, full.stderr
    assert doc.read_text() == original
    assert [p.name for p in doc.parent.iterdir()] == ["bench.md"]  # no temporary file left
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    text = doc.read_text()
    assert text.startswith(original.split(BEGIN)[0])
    assert text.endswith(f"{END}\n\n## Notes\n")
    assert "\nold\n" not in text


def test_outputs_keep_the_source_permissions(npy_file: Path, tmp_path: Path) -> None:
    """As with gzip: a private image gives a private .llic (it holds all the metadata) and a
    private restored file, whatever the umask or the mode of a replaced file."""
    npy_file.chmod(0o600)
    archive = npy_file.with_name("image.npy.llic")
    restored = tmp_path / "out" / "image.npy"
    restored.parent.mkdir()
    restored.write_bytes(b"old")
    restored.chmod(0o644)
    old = os.umask(0o022)
    try:
        assert run("compress", npy_file, "-q").exit_code == 0
        assert run("restore", archive, "-o", restored, "--overwrite", "-q").exit_code == 0
    finally:
        os.umask(old)
    assert (_mode(archive), _mode(restored)) == (0o600, 0o600)
    assert restored.read_bytes() == npy_file.read_bytes()


def test_restore_refuses_a_name_of_another_format(llic_file: Path, tmp_path: Path) -> None:
    """Readers pick their decoder by extension: NumPy bytes in out/a.png are unreadable."""
    out = tmp_path / "out"
    result = run("restore", llic_file, "-o", out / "a.png")
    assert result.exit_code == 1
    assert stderr_lines(result) == [
        f"{llic_file}: holds a npy image, so the output name must end in .npy, not a.png"
    ]
    assert not (out / "a.png").exists()
    assert run("restore", llic_file, "-o", out / "a.NPY", "-q").exit_code == EXIT_OK


def test_the_name_check_inflates_metadata_no_further_than_a_restore(tmp_path: Path) -> None:
    """The check reads the envelope before decoding: with the same bound as ``formats.save``
    (the image's size + 64 MiB), not the envelope's general 1 GiB."""
    import llic_imaging
    from llic_imaging.formats.envelope import pack

    bomb = pack("npy", {}, {"head": bytes(65 << 20), "tail": b""})
    stream = tmp_path / "a.npy.llic"
    stream.write_bytes(llic_imaging.encode(np.zeros((4, 4), np.uint8), metadata=bomb))
    result = run("restore", stream, "-o", tmp_path / "b.png")
    assert result.exit_code == 1
    assert "inflates past" in result.stderr


def test_restore_names_that_fit_the_stored_format(npy_file: Path, tmp_path: Path) -> None:
    """DICOM takes any name (IM0001), a misnamed original gets its own name back, and an ITK
    header restored verbatim keeps an extension SimpleITK reads it from."""
    sitk = pytest.importorskip("SimpleITK")
    dcm, misnamed, mha = tmp_path / "CT_small.dcm", tmp_path / "scan.png", tmp_path / "v.mha"
    dcm.write_bytes((SAMPLES / "CT_small.dcm").read_bytes())
    misnamed.write_bytes(npy_file.read_bytes())  # NumPy bytes under a PNG name
    volume = np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(mha))
    assert run("compress", dcm, misnamed, mha, "-o", tmp_path / "llic", "-q").exit_code == 0
    out = tmp_path / "out"
    assert run("restore", tmp_path / "llic", "-o", out, "-q").exit_code == EXIT_OK
    assert (out / "scan.png").read_bytes() == misnamed.read_bytes()
    assert (
        run("restore", out.parent / "llic" / "CT_small.dcm.llic", "-o", out / "IM0001").exit_code
        == 0
    )
    assert (out / "IM0001").read_bytes() == dcm.read_bytes()
    refused = run("restore", tmp_path / "llic" / "v.mha.llic", "-o", out / "v.nrrd")
    assert refused.exit_code == 1
    assert "holds a itk image, so the output name must end in .mha or .mhd" in refused.stderr
    assert run("restore", tmp_path / "llic" / "v.mha.llic", "-o", out / "w.mhd").exit_code == 0


def test_restore_to_a_detached_header_refuses_an_existing_data_file(tmp_path: Path) -> None:
    """SimpleITK writes out/z.mhd's voxels to out/z.zraw and replaces that file silently."""
    sitk = pytest.importorskip("SimpleITK")
    volume = (np.arange(4 * 32 * 32) % 3000).astype(np.int16).reshape(4, 32, 32)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / "z.mha"), useCompression=True)
    assert run("compress", tmp_path / "z.mha", "-q").exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "z.zraw").write_text("precious\n")
    refused = run("restore", tmp_path / "z.mha.llic", "-o", out / "z.mhd")
    assert refused.exit_code == EXIT_USAGE
    assert "z.zraw exists" in refused.stderr
    assert (out / "z.zraw").read_text() == "precious\n"
    assert not (out / "z.mhd").exists()
    assert (
        run("restore", tmp_path / "z.mha.llic", "-o", out / "z.mhd", "--overwrite", "-q").exit_code
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["z.mhd", "z.zraw"]


def test_trailing_slash_makes_output_a_directory(npy_file: Path, tmp_path: Path) -> None:
    result = run("compress", npy_file, "-o", f"{tmp_path / 'new'}{os.sep}", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "image.npy.llic").is_file()


def test_several_inputs_with_o_naming_a_file_is_a_usage_error(tmp_path: Path) -> None:
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, np.zeros((4, 4), np.uint8))
    (tmp_path / "out").write_text("mine")
    result = run("compress", tmp_path / "a.npy", tmp_path / "b.npy", "-o", tmp_path / "out")
    assert result.exit_code == EXIT_USAGE
    assert "need an output directory" in result.stderr
    assert (tmp_path / "out").read_text() == "mine"


def test_a_dangling_link_at_the_output_needs_overwrite(npy_file: Path, tmp_path: Path) -> None:
    (tmp_path / "out.llic").symlink_to(tmp_path / "nowhere")
    result = run("compress", npy_file, "-o", tmp_path / "out.llic")
    assert result.exit_code == EXIT_USAGE
    assert "exists" in result.stderr


def test_directory_reports_broken_images_and_skips_other_files(
    tmp_path: Path, npy_file: Path
) -> None:
    """A corrupt or empty image in a folder is a failure, never silently left out of it."""
    src = tmp_path / "src"
    src.mkdir()
    npy_file.rename(src / "good.npy")
    (src / "empty.dcm").write_bytes(b"")
    (src / "bad.tif").write_bytes(b"II*\x00\x08\x00\x00\x00\xff\xff" + bytes(10))
    (src / "README").write_text("not an image")
    result = run("compress", src, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1
    failed = sorted(line.split(":")[0] for line in stderr_lines(result))
    assert failed == [str(src / "bad.tif"), str(src / "empty.dcm")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.npy.llic"]


def test_demo_refuses_a_workdir_that_overlaps_the_directory(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 4), np.uint8))
    (tmp_path / "restored").mkdir()
    np.save(tmp_path / "restored" / "x.npy", np.ones((4, 4), np.uint8))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.npy")}
    for directory, workdir in [(tmp_path, tmp_path), (tmp_path / "restored", tmp_path)]:
        result = run("demo", directory, "--workdir", workdir)
        assert result.exit_code == EXIT_USAGE
        assert "overlap" in result.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.npy")} == before


def test_restore_keeps_gzip_and_plain_nifti_apart(tmp_path: Path) -> None:
    """nibabel trusts the name: a gzipped NIfTI restored as ``.nii`` would be unreadable."""
    nib = pytest.importorskip("nibabel")
    src = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4)), src)
    assert run("compress", src, "-q").exit_code == 0
    result = run("restore", tmp_path / "head.nii.gz.llic", "-o", tmp_path / "other.nii")
    assert result.exit_code == 1
    assert "must end in .nii.gz" in result.stderr
    result = run("restore", tmp_path / "head.nii.gz.llic", "-o", tmp_path / "other.nii.gz")
    assert result.exit_code == 0, result.output


def test_one_file_named_twice_is_refused(npy_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(npy_file.parent)
    result = run("compress", npy_file.name, npy_file)
    assert result.exit_code == EXIT_USAGE
    assert "same output" in result.stderr


def test_compress_and_restore_on_a_local_dask_cluster(tmp_path: Path) -> None:
    """--workers 2: one task per file on worker processes; the same bytes as in process, a bad
    file reported in one line (exit 1) while the others are written, results in input order."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ct_stack_i16.npy", "phantom_u16.tif", "terrain_u8.png"):
        (src / name).write_bytes((SAMPLES / name).read_bytes())
    (src / "bad.npy").write_bytes(b"not an array")
    here = run("compress", src, "-o", tmp_path / "here/", "-q")
    there = run("compress", src, "-o", tmp_path / "there/", "--workers", "2", "--json")
    assert here.exit_code == there.exit_code == 1
    assert stderr_lines(there) == [f"{src / 'bad.npy'}: not a .npy file (bad magic)"]
    records = json.loads(there.stdout)
    assert [Path(r["input"]).name for r in records] == sorted(
        p.name for p in src.iterdir() if p.name != "bad.npy"
    )
    for r in records:
        out = Path(r["output"])
        assert out.read_bytes() == (tmp_path / "here" / out.name).read_bytes()
    back = run("restore", tmp_path / "there", "-o", tmp_path / "back/", "--workers", "2", "-q")
    assert back.exit_code == 0, back.output
    assert run("restore", tmp_path / "here", "-o", tmp_path / "back1/", "-q").exit_code == 0
    for r in records:
        name = Path(r["input"]).name
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / "back1" / name).read_bytes()
        if r["exact"] == "bytes":
            assert (tmp_path / "back" / name).read_bytes() == (src / name).read_bytes()
    usage = run("compress", src, "--workers", "2", "--scheduler", "tcp://x:1")
    assert usage.exit_code == EXIT_USAGE
