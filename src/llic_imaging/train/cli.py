"""``llic-train``: train from a config, resume, and export the shipped weights."""

from __future__ import annotations

import os
import platform
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from llic_imaging.model import zoo
from llic_imaging.train import floatpath

CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIGS / f"{zoo.DEFAULT_MODEL}.toml"  # the recipe of the default model
CANDIDATES = "candidates"  # beside --out: where earlier stages of a recipe are exported


@click.command(
    epilog="\b\nExamples:\n  llic-train --threads 1 --export      # retrain the default model (both stages)\n  llic-train --config my.toml --out runs/my --max-steps 500"
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=str(DEFAULT_CONFIG),
    show_default=True,
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Checkpoint and log folder [default: runs/NAME, NAME from the config].",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option(
    "--max-steps",
    type=int,
    default=None,
    help="Stop after this many steps in this run (resume later).",
)
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint.")
@click.option(
    "--export/--no-export",
    "do_export",
    default=False,
    help="Write the weights into the package when training is complete.",
)
@click.option(
    "--weights-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="With --export: write into this folder instead of the package (encode/decode find it via $LLIC_MODEL_PATH).",
)
def main(
    config_path: str,
    out_dir: str | None,
    device: str,
    threads: int | None,
    max_steps: int | None,
    fresh: bool,
    do_export: bool,
    weights_dir: str | None,
) -> None:
    """Train an HPAC model on the train split of the shared corpus (quantisation-aware).

    Training pins one float code path for all x86-64 CPUs (oneMKL MKL_CBWR=COMPATIBLE, torch
    ATEN_CPU_CAPABILITY=avx2; set either variable to override), so a config and a --threads
    value give the same weights on any machine.

    A config whose `init` model is not installed but whose recipe sits beside it (a two-stage
    recipe such as the default model's) trains that stage first, in a folder of its own beside
    --out, and exports it to `candidates/` there; running again resumes where it stopped.
    """
    float_path = floatpath.pin()  # before torch loads
    import torch

    from llic_imaging.train.export import WEIGHTS_DIR, export
    from llic_imaging.train.loop import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    stages = [(p, TrainConfig.from_toml(p)) for p in _stages(Path(config_path))]
    out = Path(out_dir) if out_dir else Path("runs") / stages[-1][1].name
    record: dict[str, Any] = {
        "hardware": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}",
        "split": "splits/train.txt",
        "float_path": f"{float_path}, {torch.get_num_threads()} thread(s)",
    }

    def run(cfg: TrainConfig, folder: Path) -> torch.nn.Module:
        click.echo(
            f"training {cfg.name}: float path {float_path}, {torch.get_num_threads()} thread(s)"
        )
        t0 = time.time()
        net = train(cfg, folder, device=device, resume=not fresh, max_steps=max_steps)
        click.echo(f"trained {cfg.name} in {time.time() - t0:.0f} s")
        return net

    def save(net: torch.nn.Module, path: Path, cfg: TrainConfig, folder: Path) -> None:
        entry = dict(record, training_config=_config_record(path), steps=cfg.steps)
        click.echo(f"exported {export(net.cpu(), cfg.name, entry, weights_dir=folder)}")

    for path, cfg in stages[:-1]:
        net = run(cfg, out.parent / cfg.name)
        if (step := _step(out.parent / cfg.name)) < cfg.steps:
            click.echo(f"{cfg.name} stopped at step {step} of {cfg.steps}: run again to go on")
            return
        save(net, path, cfg, out.parent / CANDIDATES)
        _prepend_model_path(out.parent / CANDIDATES)  # where the next stage finds its init
    path, cfg = stages[-1]
    net = run(cfg, out)
    if do_export:
        save(net, path, cfg, Path(weights_dir) if weights_dir else WEIGHTS_DIR)


def _stages(config: Path) -> list[Path]:
    """``config`` and, before it, the recipes of the ``init`` models it needs that are not
    installed but ship beside it (``NAME.toml`` in the same folder), earliest first."""
    stages = [config]
    while True:
        init = tomllib.loads(stages[0].read_text()).get("init", "")
        earlier = config.parent / f"{init}.toml"
        if not init or init in zoo.available() or not earlier.exists() or earlier in stages:
            return stages  # nothing to train first (train() names a missing init model)
        stages.insert(0, earlier)


def _step(run: Path) -> int:
    """The step of the checkpoint in ``run`` (0 without one)."""
    import torch

    ckpt = run / "checkpoint.pt"
    return torch.load(ckpt, weights_only=False)["step"] if ckpt.exists() else 0


def _prepend_model_path(folder: Path) -> None:
    """Put ``folder`` first on ``$LLIC_MODEL_PATH`` for the rest of this process."""
    rest = os.environ.get(zoo.MODEL_PATH_ENV)
    os.environ[zoo.MODEL_PATH_ENV] = os.pathsep.join([str(folder), *([rest] if rest else [])])


def _config_record(path: Path) -> str:
    """How the registry names the recipe: package-relative for a shipped config, else as given."""
    if path.resolve().parent == CONFIGS.resolve():
        return f"train/configs/{path.name}"
    return str(path)
