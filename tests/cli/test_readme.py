"""README.md stays true: two opening commands, real ``llic`` subcommands, runnable Python blocks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llic_imaging.cli.llic import cli

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.DOTALL)


def test_readme_opens_with_the_two_commands() -> None:
    lang, body = BLOCKS[0]
    assert lang == "bash"
    demo, tests = body.strip().splitlines()
    assert demo.endswith("llic demo samples/")
    assert tests == "bash .ci/run"
    assert (REPO / ".ci" / "run").is_file()


def test_readme_llic_examples_name_real_commands() -> None:
    used = {
        m
        for lang, body in BLOCKS
        if lang == "bash"
        for m in re.findall(r"(?<![\w./-])llic (\w+)", body)
    }
    assert used
    assert used <= set(cli.commands)


@pytest.mark.parametrize(
    "code", [body for lang, body in BLOCKS if lang == "python"], ids=lambda c: c.split("\n")[0]
)
def test_readme_python_block_runs(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "samples").symlink_to(REPO / "samples")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
