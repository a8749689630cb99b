"""The pilot run of the forecast benchmark (collapsekit.forecast.schedule_pilot): trained the way the trainer trains, with
the schedule it says, and extrapolated in chunks of steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from collapsekit.errors import ParameterError
from collapsekit.forecast.closed_form import total_steps
from collapsekit.forecast.schedule_pilot import pilot_config, pilot_ending, pilot_steps, train_pilot
from collapsekit.training.builders import load_training_data
from collapsekit.training.config import RunConfig
from collapsekit.training.trainer import train

SPEC = "gaussian:eigs=9:4:2:1:0.5:0.25,n=300"


def _config(schedule: dict | None = None) -> RunConfig:
    return RunConfig.parse({"data": {"spec": SPEC}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [3],
                                                              "hidden": [16]},
                            "objective": {"beta": 0.5}, "schedule": schedule or {"name": "constant", "settings": {}},
                            "train": {"epochs": 10, "batch_size": 64, "progress": False, "monitor": False,
                                      "seed": 3}})


def test_a_pilot_of_a_constant_schedule_is_the_runs_own_beginning(tmp_path):
    config = _config()
    data = load_training_data(config)
    per_epoch = total_steps(config, data.n) // config.train.epochs
    pilot = train_pilot(config, data, 2 * per_epoch, chunks=2)          # two whole epochs, one chunk each
    train(config.with_overrides({"train.epochs": 2}), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(pilot, [r["kl_per_dim"][-1] for r in records], rtol=1e-5, atol=1e-7)


def test_the_pilots_schedule_variants():
    config = _config({"name": "linear", "settings": {"warmup_steps": 20, "start": 0.0, "end": 1.0}})
    data = load_training_data(config)
    total = total_steps(config, data.n)
    steps = pilot_steps(config, data.n, 0.1)
    assert steps == total // 10
    squeezed = pilot_config(config, data.n, steps, "compressed")
    assert squeezed.schedule.settings["warmup_steps"] == round(20 * steps / total)
    final = pilot_config(config, data.n, steps, "final")
    assert final.schedule.name == "constant" and final.objective.beta == pytest.approx(0.5)
    fast = pilot_config(config, data.n, steps, "fast_final")
    assert fast.optim.lr == pytest.approx(config.optim.lr * total / steps)
    with pytest.raises(ParameterError):
        pilot_config(config, data.n, steps, "slow")


def test_a_pilot_is_extrapolated_in_chunks_of_its_steps():
    trajectory = [[1.0, 0.1], [1.0, 0.05], [1.0, 0.025]]       # the second halves every chunk of 10 steps
    ending = pilot_ending(trajectory, 30, 60, gamma=1.0)        # three more chunks: 0.025 / 8
    np.testing.assert_allclose(ending, [1.0, 0.025 / 8])
    np.testing.assert_allclose(pilot_ending(trajectory, 30, 60, gamma=1.0, variant="fast_final"), [1.0, 0.025])
