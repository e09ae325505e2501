"""``llic-train``: train from a config, resume, and export the shipped weights."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import click

from llic_imaging.train import floatpath

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "hpac-small-v3-b2.toml"


@click.command(
    epilog="Example: llic-train --config src/llic_imaging/train/configs/hpac-small-v3-b2.toml --out runs/hpac-small-v3-b2 --export"
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
    default="runs/hpac-small-v3-b2",
    show_default=True,
    help="Checkpoint and log folder.",
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
    out_dir: str,
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
    """
    float_path = floatpath.pin()  # before torch loads
    import torch

    from llic_imaging.train.export import WEIGHTS_DIR, export
    from llic_imaging.train.loop import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig.from_toml(config_path)
    click.echo(f"training {cfg.name}: float path {float_path}, {torch.get_num_threads()} thread(s)")
    t0 = time.time()
    net = train(cfg, Path(out_dir), device=device, resume=not fresh, max_steps=max_steps)
    click.echo(f"trained {cfg.name} in {time.time() - t0:.0f} s")
    if do_export:
        record = {
            "training_config": _config_record(Path(config_path)),
            "steps": cfg.steps,
            "hardware": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}",
            "split": "splits/train.txt",
            "float_path": f"{float_path}, {torch.get_num_threads()} thread(s)",
        }
        folder = Path(weights_dir) if weights_dir else WEIGHTS_DIR
        click.echo(f"exported {export(net.cpu(), cfg.name, record, weights_dir=folder)}")


def _config_record(path: Path) -> str:
    """How the registry names the recipe: package-relative for a shipped config, else as given."""
    if path.resolve().parent == DEFAULT_CONFIG.parent.resolve():
        return f"train/configs/{path.name}"
    return str(path)
