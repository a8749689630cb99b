"""The optional loggers of ``train.loggers``: what the CSV and TensorBoard files hold is what
metrics.jsonl holds, epoch by epoch; asking for TensorBoard without it is a ParameterError."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from collapsekit.errors import ParameterError
from collapsekit.training import RunConfig, train

EPOCHS = 3
SMALL = {"data": {"spec": "gaussian:d=6,decay=0.6,n=256,seed=3"},
         "model": {"kind": "vae", "arch": "mlp", "latent_dims": [3], "hidden": [16]},
         "train": {"epochs": EPOCHS, "batch_size": 64, "seed": 5, "progress": False}}
#: What the trainer hands to the loggers each epoch: every float of the metrics.jsonl record.
LOGGED = ("loss", "reconstruction", "kl", "beta_scale", "seconds")


def config_with(loggers: list[str]) -> RunConfig:
    return RunConfig.parse(SMALL).with_overrides({"train.loggers": loggers})


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_csv_logger_writes_each_epoch_of_metrics_jsonl(tmp_path):
    run_dir = tmp_path / "run"
    train(config_with(["csv"]), run_dir)
    files = sorted((run_dir / "logs").glob("version_*/metrics.csv"))
    assert len(files) == 1, f"expected one CSV log, found {files}"
    with files[0].open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    records = metrics(run_dir)
    assert [int(row["step"]) for row in rows] == [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    assert set(rows[0]) == {"step", *LOGGED}
    for row, record in zip(rows, records):
        for key in LOGGED:   # Python floats survive the CSV text exactly
            assert float(row[key]) == record[key], (row["step"], key)
    losses = [float(row["loss"]) for row in rows]
    assert len(set(losses)) == EPOCHS, "each epoch logs its own loss, not a repeated value"


def test_csv_log_grows_epoch_by_epoch_while_training(tmp_path):
    """Rows are written as epochs end (the logger's default would buffer 100), so a run killed
    mid-way keeps its CSV log up to the last finished epoch."""
    seen: list[int] = []

    class CountRows:
        def on_epoch_end(self, epoch, record):
            files = list((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))
            seen.append(0 if not files else len(files[0].read_text().splitlines()) - 1)

    train(config_with(["csv"]), tmp_path / "run", callbacks=[CountRows()])
    # callbacks run before the epoch is logged: at the end of epoch e the file holds e − 1 rows
    assert seen == list(range(EPOCHS))


def test_tensorboard_scalars_match_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    train(config_with(["tensorboard"]), run_dir)
    versions = sorted((run_dir / "tensorboard").glob("version_*"))
    assert len(versions) == 1
    events = EventAccumulator(str(versions[0]))
    events.Reload()
    assert set(LOGGED) <= set(events.Tags()["scalars"])
    records = metrics(run_dir)
    for key in LOGGED:
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
        for scalar, record in zip(scalars, records):   # TensorBoard stores float32
            assert scalar.value == pytest.approx(record[key], rel=1e-6, abs=1e-12), (key, scalar.step)


def test_both_loggers_together_log_the_same_values(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    train(config_with(["csv", "tensorboard"]), run_dir)
    with next((run_dir / "logs").glob("version_*/metrics.csv")).open(newline="") as stream:
        csv_loss = [float(row["loss"]) for row in csv.DictReader(stream)]
    events = EventAccumulator(str(next((run_dir / "tensorboard").glob("version_*"))))
    events.Reload()
    assert [s.value for s in events.Scalars("loss")] == pytest.approx(csv_loss, rel=1e-6)
    assert csv_loss == [r["loss"] for r in metrics(run_dir)]


def test_missing_tensorboard_is_a_parameter_error_naming_train_loggers(tmp_path, monkeypatch):
    # None in sys.modules makes `import name` raise ImportError, as when the package is absent.
    for name in ("tensorboard", "torch.utils.tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ParameterError, match=r"train\.loggers.*pip install tensorboard"):
        train(config_with(["tensorboard"]), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists(), "the error comes before any training"


def test_unknown_logger_is_refused_by_the_config():
    with pytest.raises(ParameterError, match="train.loggers"):
        config_with(["wandb"])
