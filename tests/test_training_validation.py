"""Held-out evaluation while training (issue 10 §4): `--val-fraction` carves a seeded validation part from the
training rows, every epoch records its loss and headline count, `--early-stop` ends the run on it, and all of it
survives a crash and a resume exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from collapsekit.activity import count_active
from collapsekit.cli import main
from collapsekit.diagnostics.headline import measure_activity
from collapsekit.training import RunConfig, load_training_data, train
from collapsekit.training.checkpoint import latest_checkpoint

BASE = {"data": {"spec": "gaussian:eigs=9:4:1:0.25,n=400,seed=1", "val_fraction": 0.25},
        "model": {"kind": "vae", "arch": "linear", "latent_dims": [3]},
        "optim": {"lr": 0.05}, "train": {"epochs": 40, "batch_size": 50, "progress": False, "early_stop": 3,
                                          "keep_checkpoints": 100}}


def config(**overrides) -> RunConfig:
    return RunConfig.parse(BASE).with_overrides(overrides)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model.safetensors")


def rows(data) -> set[tuple[float, ...]]:
    return {tuple(row) for row in data.x.numpy().round(6).tolist()}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("validation") / "run"
    train(config(), run_dir)
    return run_dir


def test_the_validation_part_is_carved_from_the_training_rows_with_its_own_seed():
    part = {"data.part": "train", "data.test_fraction": 0.2}
    data = load_training_data(config(**part))
    whole = load_training_data(config(**part, **{"data.val_fraction": None, "train.early_stop": None}))
    assert data.n + data.validation.n == whole.n == 320 and data.validation.n == 80
    assert rows(data) | rows(data.validation) == rows(whole) and not rows(data) & rows(data.validation)
    other_training_seed = load_training_data(config(**{"train.seed": 7}))
    assert rows(other_training_seed.validation) == rows(load_training_data(config()).validation)
    other_validation_seed = load_training_data(config(**{"data.val_seed": 1}))
    assert rows(other_validation_seed.validation) != rows(load_training_data(config()).validation)


def test_every_epoch_records_the_validation_loss_and_headline_count(stopped_run):
    history = records(stopped_run)
    assert all({"val_loss", "val_reconstruction", "val_kl", "val_n_active", "val_kl_per_dim"} <= set(r)
               for r in history)
    assert all(r["val_examples"] == 100 and r["examples"] == 300 for r in history)
    assert all(r["val_n_active"] == [count_active(kl) for kl in r["val_kl_per_dim"]] for r in history)
    # the last epoch's count is the one definition measured on the final weights and the validation rows
    cfg = RunConfig.load(stopped_run / "config.yaml")
    data = load_training_data(cfg)
    from collapsekit.training.trainer import build_model_from_config
    from collapsekit.training.checkpoint import load_checkpoint

    model = build_model_from_config(cfg, data)
    load_checkpoint(latest_checkpoint(stopped_run / "checkpoints")).restore_model(model)
    levels = measure_activity(model, data.validation.x)
    assert history[-1]["val_kl_per_dim"] == [list(level.kl_per_dim) for level in levels]


def test_early_stopping_records_why_and_when_and_keeps_the_best_weights(stopped_run):
    history = records(stopped_run)
    last = history[-1]
    stopped = last["stopped"]
    assert stopped["reason"] == "early stop" and stopped["epoch"] == last["epoch"] < 40
    assert all("stopped" not in r for r in history[:-1])
    losses = [r["val_loss"] for r in history]
    best = int(np.argmin(losses)) + 1
    assert stopped["best_epoch"] == best and last["epoch"] - best == stopped["patience"] == 3
    assert f"since epoch {best}" in stopped["message"]
    evaluation = json.loads((stopped_run / "evaluation.json").read_text())
    training = evaluation["training"]
    assert training["stopped_early"] and training["final_weights_epoch"] == last["epoch"] == evaluation[
        "measured_on"]["epoch"]
    assert training["best_epoch"] == best and training["best_checkpoint"] == f"best/epoch-{best:06d}"
    best_weights, kept = weights(stopped_run / training["best_checkpoint"]), weights(
        stopped_run / "checkpoints" / f"epoch-{best:06d}")
    assert all(torch.equal(best_weights[k], kept[k]) for k in kept)
    assert latest_checkpoint(stopped_run / "checkpoints").name == f"epoch-{last['epoch']:06d}"
    from collapsekit.runs import resolve_run

    assert resolve_run(stopped_run / training["best_checkpoint"]) == (stopped_run, stopped_run / f"best/epoch-{best:06d}")


class Crash:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        if epoch == self.epoch:
            raise RuntimeError("killed")


def test_a_crashed_run_resumes_to_the_same_stop_weights_and_best_checkpoint(stopped_run, tmp_path):
    best = records(stopped_run)[-1]["stopped"]["best_epoch"]
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        train(config(), run_dir, callbacks=[Crash(best + 1)])       # after the best epoch, before the stop
    result = train(config(), run_dir, resume=True)
    assert result.stopped == records(stopped_run)[-1]["stopped"]
    assert without_time(records(run_dir)) == without_time(records(stopped_run))
    for where in ("checkpoints", "best"):
        want, got = weights(latest_checkpoint(stopped_run / where)), weights(latest_checkpoint(run_dir / where))
        assert latest_checkpoint(stopped_run / where).name == latest_checkpoint(run_dir / where).name
        assert all(torch.equal(want[k], got[k]) for k in want)


def test_resuming_a_stopped_run_says_it_is_finished_and_trains_nothing(stopped_run, tmp_path, capsys):
    run_dir = Path(shutil.copytree(stopped_run, tmp_path / "run"))
    before = (run_dir / "metrics.jsonl").read_text()
    assert main(["train", "--out", str(run_dir), "--resume", "--epochs", "60", "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"stopped early at epoch {records(stopped_run)[-1]['epoch']}" in out and "it is finished" in out
    assert (run_dir / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("argv, fragment", [
    (["--early-stop", "3"], "train.early_stop watches the validation loss: set data.val_fraction"),
    (["--val-fraction", "1.5"], "data.val_fraction"),
    (["--val-fraction", "0.001", "--data", "gaussian:eigs=1:1,n=20"], "leaves an empty training or validation part"),
])
def test_bad_validation_settings_are_one_line(tmp_path, capsys, argv, fragment):
    status = main(["train", *argv, "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
