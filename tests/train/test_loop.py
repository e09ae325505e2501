"""The training loop on a tiny config: a few steps lower the loss, resume == uninterrupted run,
logs and checkpoints, learning-rate schedule."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _train_data import make_sampler

from llic_imaging.model import zoo
from llic_imaging.model.hpac import HpacConfig, HpacNet
from llic_imaging.train.cli import DEFAULT_CONFIG
from llic_imaging.train.loop import TrainConfig, batch_bits, finetune, lr_at, train


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _held_out_bps(net: HpacNet, cfg: TrainConfig) -> float:
    batch = make_sampler(cfg, seed=1234).batch(6)
    with torch.no_grad():
        total, n = batch_bits(net, batch, torch.device("cpu"))
    return float(total) / n


def test_a_few_steps_lower_the_loss(tiny_cfg: TrainConfig, tmp_path: Path) -> None:
    torch.manual_seed(tiny_cfg.seed)  # the loop's own initialisation, for the "before" figure
    before = _held_out_bps(HpacNet(HpacConfig(**tiny_cfg.model)), tiny_cfg)
    net = train(tiny_cfg, tmp_path / "run", sampler=make_sampler(tiny_cfg))
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(1, tiny_cfg.steps + 1))
    bps = [r["bps"] for r in log]
    first, last = sum(bps[:4]) / 4, sum(bps[-4:]) / 4
    assert last < 0.8 * first, bps  # logged training loss (random crops: compare means)
    after = _held_out_bps(net, tiny_cfg)
    assert after < 0.8 * before  # and on a fixed batch the run never saw


def test_resume_continues_exactly_like_an_uninterrupted_run(
    tiny_cfg: TrainConfig, tmp_path: Path
) -> None:
    cfg = replace(tiny_cfg, steps=8, checkpoint_every=100)
    whole = train(cfg, tmp_path / "whole", sampler=make_sampler(cfg))

    out = tmp_path / "parts"
    train(cfg, out, sampler=make_sampler(cfg), max_steps=3)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3
    resumed = train(cfg, out, sampler=make_sampler(cfg))  # fresh sampler: RNG from checkpoint

    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 8
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    strip = lambda log: [(r["step"], r["bps"], r["lr"]) for r in log]  # noqa: E731
    assert strip(_log(out)) == strip(_log(tmp_path / "whole"))


def test_resume_drops_log_records_after_the_checkpoint(
    tiny_cfg: TrainConfig, tmp_path: Path
) -> None:
    """A crash between checkpoints: the resumed run rewrites those steps, once each."""
    cfg = replace(tiny_cfg, steps=6, checkpoint_every=2)
    out = tmp_path / "run"
    train(cfg, out, sampler=make_sampler(cfg), max_steps=4)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    ckpt["step"] = 2  # as if the process died after step 4 but before its checkpoint
    torch.save(ckpt, out / "checkpoint.pt")
    train(cfg, out, sampler=make_sampler(cfg))
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4, 5, 6]


def test_fresh_run_starts_a_new_log(tiny_cfg: TrainConfig, tmp_path: Path) -> None:
    cfg = replace(tiny_cfg, steps=3)
    out = tmp_path / "run"
    train(cfg, out, sampler=make_sampler(cfg))
    train(cfg, out, sampler=make_sampler(cfg), resume=False, max_steps=2)
    assert [r["step"] for r in _log(out)] == [1, 2]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 2


def test_a_finished_run_resumes_to_a_no_op(tiny_cfg: TrainConfig, tmp_path: Path) -> None:
    cfg = replace(tiny_cfg, steps=2)
    out = tmp_path / "run"
    first = train(cfg, out, sampler=make_sampler(cfg))
    again = train(cfg, out, sampler=make_sampler(cfg))
    assert len(_log(out)) == 2
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_learning_rate_is_a_cosine_from_lr_to_lr_final(tiny_cfg: TrainConfig) -> None:
    rates = [lr_at(tiny_cfg, s) for s in range(tiny_cfg.steps + 2)]
    assert rates[0] == pytest.approx(tiny_cfg.lr)
    assert rates[tiny_cfg.steps] == pytest.approx(tiny_cfg.lr_final)
    assert rates[-1] == pytest.approx(tiny_cfg.lr_final)  # clamped past the end
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_shipped_recipe_matches_the_shipped_model() -> None:
    cfg = TrainConfig.from_toml(DEFAULT_CONFIG)
    assert HpacConfig(**cfg.model) == HpacConfig.from_dict(zoo.model_info(cfg.name).config)


@pytest.mark.parametrize("path", sorted(DEFAULT_CONFIG.parent.glob("*.toml")), ids=lambda p: p.stem)
def test_every_committed_recipe_parses(path: Path) -> None:
    cfg = TrainConfig.from_toml(path)
    assert cfg.name == path.stem
    HpacNet(HpacConfig(**cfg.model))
    assert cfg.crop % 32 == 0
    assert 0 < cfg.lr_final <= cfg.lr


def test_unknown_config_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nstesp = 10\n')
    with pytest.raises(TypeError, match="stesp"):
        TrainConfig.from_toml(path)


def test_init_starts_from_an_installed_model(tiny_cfg: TrainConfig, tmp_path: Path) -> None:
    """A fine-tune's step 0 is the named model; a mismatched architecture is refused."""
    shipped, info = zoo.load("hpac-small-v3")
    cfg = replace(tiny_cfg, init="hpac-small-v3", model=dict(info.config), steps=1, lr=1e-12)
    net = train(cfg, tmp_path / "ft", sampler=make_sampler(cfg))
    for (k, a), b in zip(shipped.state_dict().items(), net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match="config"):
        train(replace(tiny_cfg, init="hpac-small-v3"), tmp_path / "bad", sampler=make_sampler(cfg))


def test_finetune_follows_the_schedule_and_logs_every_step(tiny_cfg: TrainConfig) -> None:
    p = torch.nn.Parameter(torch.zeros(()))
    logged: list[tuple[int, float]] = []
    cfg = replace(tiny_cfg, steps=50, lr=0.1, lr_final=0.01)
    finetune([p], cfg, lambda: (p - 0.5) ** 2, log=lambda step, loss: logged.append((step, loss)))
    assert [s for s, _ in logged] == list(range(1, 51))
    assert logged[-1][1] < logged[0][1]
    assert abs(float(p.detach()) - 0.5) < 0.1


def test_finetune_stops_when_log_says_so(tiny_cfg: TrainConfig) -> None:
    p = torch.nn.Parameter(torch.zeros(()))
    steps: list[int] = []

    def log(step: int, _: float) -> bool:
        steps.append(step)
        return step == 7

    finetune([p], replace(tiny_cfg, steps=50, lr=0.1), lambda: (p - 0.5) ** 2, log=log)
    assert steps == list(range(1, 8))
