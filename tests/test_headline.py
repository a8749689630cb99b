"""One headline count per run: every output that says how many latent dimensions a model uses applies the one
rule of collapsekit.activity to the same measurement, and so reports the same number."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from collapsekit.activity import KL_ACTIVE_THRESHOLD, LevelActivity, active_mask, count_active
from collapsekit.cli import main


def test_the_rule_at_its_boundary():
    assert KL_ACTIVE_THRESHOLD == 0.01
    assert active_mask([0.01, 0.0099999, 2.0, math.nan, 0.0]).tolist() == [True, False, True, False, False]
    assert count_active(np.array([0.5, 0.01, 0.009])) == 2
    level = LevelActivity("z", (0.3, 0.001, 0.02))
    assert (level.n_active, level.n_collapsed, level.collapsed_dims) == (2, 1, [1])
    assert level.describe() == "z: 2 of 3 dimensions active"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_every_output_of_one_run_reports_the_same_count(tmp_path, capsys):
    # Eigenvalues 9, 4, 1, 0.25, 0.1 at β = 0.5: the last two lie below βη_dec² = 0.5, so a partial collapse.
    config = tmp_path / "run.yaml"
    config.write_text("data: {spec: 'gaussian:eigs=9:4:1:0.25:0.1,n=500,seed=1,exact=1'}\n"
                      "model: {kind: vae, arch: linear, latent_dims: [4]}\n"
                      "objective: {beta: 0.5}\n"
                      "optim: {lr: 0.03}\n"
                      "train: {epochs: 40, batch_size: 100, seed: 3}\n")
    run_dir = tmp_path / "run"
    status, out, _ = run(capsys, "train", "--config", str(config), "--out", str(run_dir), "--no-progress")
    assert status == 0
    final = re.search(r"z: (\d+) of 4 dimensions active \(mean KL ≥ 0\.01 nats per example; final weights", out)
    assert final is not None, out
    n_active = int(final.group(1))
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["n_active"] == n_active and evaluation["measured_on"]["weights"] == "final"
    assert evaluation["n_active"] == count_active(evaluation["levels"][0]["kl_per_dim"])
    assert 0 < n_active < 4, "the setting is meant to collapse some dimensions and keep others"

    # the monitor applies the same rule to each epoch's batches (and says so in its record)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["n_active"] == [count_active(r["kl_per_dim"][0])] for r in records)

    # diagnose on the same data: the terminal headline, report.json, report.md, report.html and the theory column
    status, out, _ = run(capsys, "diagnose", str(run_dir), "--samples", "20")
    assert status == 0 and f"{n_active} of 4 dimensions of z active" in out
    report = json.loads((run_dir / "diagnosis" / "report.json").read_text())
    assert report["n_active"] == report["levels"][0]["n_active"] == n_active
    assert report["levels"][0]["kl_per_dim"] == pytest.approx(evaluation["levels"][0]["kl_per_dim"], rel=1e-12)
    assert report["levels"][0]["theory"]["n_active_measured"] == n_active
    assert f"{4 - n_active} of 4 dimensions of z collapsed" in (run_dir / "diagnosis" / "report.md").read_text()
    assert f"{n_active} of 4 dimensions of z active" in (run_dir / "diagnosis" / "report.html").read_text()

    # a one-point sweep of the same configuration: summary.csv
    status, _, _ = run(capsys, "sweep", str(config), "--grid", "beta=0.5", "--out", str(tmp_path / "sweep"),
                       "--workers", "1")
    assert status == 0
    with open(tmp_path / "sweep" / "summary.csv", newline="") as stream:
        (row,) = list(csv.DictReader(stream))
    assert int(row["n_active_measured"]) == n_active
