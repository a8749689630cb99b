"""`collapsekit train --out RUN --resume`: alone it continues RUN as saved; flags beside it must match
(but --epochs may grow and output-only flags may change); a mismatch names every differing key; no run
there is an error; a finished run says so; Ctrl-C prints the command that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from collapsekit.cli import main
from collapsekit.errors import ParameterError
from collapsekit.training import RunConfig, resolve_config
from collapsekit.training.checkpoint import latest_checkpoint

# Non-default settings, so that "as saved" and "the defaults" differ.
FLAGS = ["--data", "gaussian:d=6,decay=0.6,n=256,seed=3", "--model", "vae", "--arch", "mlp", "--latent-dims", "3",
         "--hidden", "16", "--batch-size", "64", "--seed", "5", "--beta", "0.5", "--lr", "0.003", "--no-progress"]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    """The records without their wall times and the monitor's forecast, which aims at the epochs configured when
    the epoch ran (--epochs may grow on resume; tests/test_monitor_forecast.py checks that a resume keeps it)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "forecast")} for r in records]


def assert_same_run(got: Path, want: Path) -> None:
    assert without_time(metrics(got)) == without_time(metrics(want))
    expected = load_file(latest_checkpoint(want / "checkpoints") / "model.safetensors")
    weights = load_file(latest_checkpoint(got / "checkpoints") / "model.safetensors")
    assert all(torch.equal(expected[k], weights[k]) for k in expected)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line(status: int, err: str) -> str:
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1, (status, err)
    return err.strip()


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", *FLAGS, "--epochs", "2", "--out", str(run_dir)]) == 0
    return run_dir


def copy(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_resume_alone_continues_with_the_saved_configuration(two_epochs, tmp_path, capsys):
    run_dir = copy(two_epochs, tmp_path)
    assert main(["train", *FLAGS, "--epochs", "3", "--out", str(tmp_path / "reference")]) == 0
    status, _, err = cli(capsys, "train", "--out", str(run_dir), "--resume", "--epochs", "3")
    assert status == 0, err
    saved = RunConfig.load(run_dir / "config.yaml")
    assert (saved.objective.beta, saved.optim.lr, saved.model.hidden, saved.train.epochs) == (0.5, 0.003, [16], 3)
    assert_same_run(run_dir, tmp_path / "reference")


def test_flags_beside_resume_must_match_and_every_difference_is_named(two_epochs, capsys):
    status, _, err = cli(capsys, "train", "--out", str(two_epochs), "--resume", "--beta", "2", "--hidden", "32",
                         "--lr", "0.003")
    line = one_line(status, err)
    assert "objective.beta (0.5 saved, 2.0 given)" in line and "model.hidden ([16] saved, [32] given)" in line
    assert "optim.lr" not in line                                    # given, and the same
    assert [r["epoch"] for r in metrics(two_epochs)] == [1, 2]        # nothing was changed


def test_the_same_flags_and_output_only_flags_may_be_given_again(two_epochs, tmp_path, capsys):
    run_dir = copy(two_epochs, tmp_path)
    status, _, err = cli(capsys, "train", *FLAGS, "--out", str(run_dir), "--resume", "--epochs", "3",
                         "--keep-checkpoints", "1", "--checkpoint-every", "5")
    assert status == 0, err
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2, 3]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("epoch-*")) == ["epoch-000003"]


def test_a_config_file_beside_resume_must_match_too(two_epochs, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text("objective:\n  beta: 0.5\noptim:\n  lr: 0.01\n")
    status, _, err = cli(capsys, "train", "--config", str(other), "--out", str(two_epochs), "--resume")
    line = one_line(status, err)
    assert "optim.lr (0.003 saved, 0.01 given)" in line and "objective.beta" not in line


def test_epochs_may_grow_not_shrink(two_epochs, capsys):
    status, _, err = cli(capsys, "train", "--out", str(two_epochs), "--resume", "--epochs", "1")
    assert "--epochs may grow" in one_line(status, err)


def test_resume_where_no_run_exists_is_an_error(tmp_path, capsys):
    status, _, err = cli(capsys, "train", *FLAGS, "--out", str(tmp_path / "nothing"), "--resume")
    assert "does not exist" in one_line(status, err)
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    status, _, err = cli(capsys, "train", "--out", str(tmp_path / "empty"), "--resume")
    assert "holds no run" in one_line(status, err)
    with pytest.raises(ParameterError, match="holds no run"):
        resolve_config(tmp_path / "empty", resume=True)


def test_a_finished_run_says_it_is_finished(two_epochs, capsys):
    before = (two_epochs / "metrics.jsonl").read_text()
    status, out, err = cli(capsys, "train", "--out", str(two_epochs), "--resume")
    assert status == 0, err
    assert "had already finished its 2 epochs: nothing to train" in out
    assert (two_epochs / "metrics.jsonl").read_text() == before


def test_ctrl_c_prints_the_command_that_resumes(tmp_path):
    """SIGINT a real `collapsekit train`: no traceback, a non-zero status and the resuming command, which
    then ends the run exactly as an uninterrupted one."""
    args = [sys.executable, "-m", "collapsekit", "train", *FLAGS, "--epochs", "60"]
    assert subprocess.run([*args, "--out", str(tmp_path / "reference")], capture_output=True).returncode == 0
    run_dir = tmp_path / "run"
    process = subprocess.Popen([*args, "--out", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    log = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode not in (0, None) and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert lines == [f"collapsekit: interrupted; continue with: collapsekit train --out {run_dir} --resume"], err
    done = len(log.read_text().splitlines())
    assert 2 <= done < 60, "the interrupt should land mid-run"
    resumed = subprocess.run([sys.executable, "-m", "collapsekit", "train", "--out", str(run_dir), "--resume"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run_dir, tmp_path / "reference")
