"""``cli/_options.py``: how a run ends (signals, exit codes) and what reaches stderr."""

from __future__ import annotations

import os
import signal
import struct
import time
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from llic_imaging._fileio import atomic_path
from llic_imaging.cli._options import EXIT_USAGE, ExitCodeGroup, run_main
from llic_imaging.cli.llic import cli


def _group(action: object) -> click.Group:
    @click.group(cls=ExitCodeGroup)
    def group() -> None:
        pass

    @group.command()
    def work() -> None:
        action()

    return group


def test_sigterm_unwinds_so_temporaries_go_and_exits_143(tmp_path: Path) -> None:
    def killed_while_writing() -> None:
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises before this ends

    before = signal.getsignal(signal.SIGTERM)
    assert run_main(_group(killed_while_writing), ["work"], "t") == 143
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_exits_130() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_main(_group(interrupted), ["work"], "t") == 130


def test_a_closed_stdout_is_not_blamed_on_a_file() -> None:
    def reader_gone() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(SystemExit) as exit_info:  # click's own quiet EPIPE exit
        run_main(_group(reader_gone), ["work"], "t")
    assert exit_info.value.code == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["compress", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == EXIT_USAGE
    assert "no CUDA device" in result.stderr


def test_reader_libraries_log_lines_stay_off_stderr(tmp_path: Path) -> None:
    """tifffile and nibabel log quirks without naming the file: one line per file remains."""
    (tmp_path / "t.tif").write_bytes(b"II*\x00" + struct.pack("<I", 0xFFFFFFF0))
    (tmp_path / "n.nii").write_bytes(struct.pack("<i", 348) + b"\x00" * 340 + b"n+1\x00")
    args = ["compress", str(tmp_path / "t.tif"), str(tmp_path / "n.nii"), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert all(line.startswith(str(tmp_path)) for line in lines), lines
