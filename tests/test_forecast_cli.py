"""``collapsekit forecast``: JSON fields, budget 0 is the closed form, a prefix in --out, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from collapsekit import forecast as fc
from collapsekit.cli import main
from collapsekit.diagnostics.forecast_intervals import regime_of
from collapsekit.training.builders import load_training_data
from collapsekit.training.config import RunConfig

VALUES = {"data": {"spec": "digits"}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4], "hidden": [16]},
          "objective": {"beta": 2.0}, "train": {"epochs": 4, "batch_size": 600, "progress": False, "monitor": False}}


def _config(tmp_path: Path, values: dict = VALUES) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:           # argparse's own usage errors
        status = int(exc.code)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_budget_zero_json_is_the_base_closed_form(capsys, tmp_path):
    status, out, _ = run(capsys, "forecast", str(_config(tmp_path)), "--budget", "0", "--json")
    assert status == 0
    got = json.loads(out)
    assert set(got) >= {"n_active", "interval", "latent_size", "method", "cost_fraction", "kl_per_rank"}
    config = RunConfig.parse(VALUES)
    want = fc.base(config, load_training_data(config))
    assert (got["n_active"], got["interval"], got["method"], got["cost_fraction"]) == (
        want.n_active, list(want.interval), want.method, 0.0)
    assert got["latent_size"] == 4 and got["kl_per_rank"] == want.kl_per_rank
    assert got["interval"][0] <= got["n_active"] <= got["interval"][1]
    assert got["benchmark"] == fc.benchmark_accuracy(want.method, "mlp", regime_of(config))  # the evidence beside it
    assert got["benchmark"]["regime"] == "fixed"                       # its likelihood's row of the benchmark


def test_a_budget_trains_the_prefix_into_out_and_train_resume_continues_it(capsys, tmp_path):
    path = _config(tmp_path)
    status, out, _ = run(capsys, "forecast", str(path), "--budget", "0.5", "--out", str(tmp_path / "run"), "--json")
    assert status == 0
    got = json.loads(out)
    assert got["method"] == "early" and got["cost_fraction"] == 0.5
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    status, _, err = run(capsys, "train", "--out", str(tmp_path / "run"), "--resume", "--epochs", "4", "--no-progress")
    assert status == 0, err
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4


def test_the_text_output_is_a_table_and_one_sentence(capsys, tmp_path):
    status, out, _ = run(capsys, "forecast", str(_config(tmp_path)), "--budget", "0")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[0] == "rank" and len([line for line in lines if line.startswith("Forecast:")]) == 1
    assert "of 4 latent dimensions active at the end of the 4-epoch run" in out
    from collapsekit.forecast.early import BASE

    assert fc.evidence(BASE, "mlp", regime_of(RunConfig.parse(VALUES))) in out


def test_keep_k_recommends_the_largest_beta(capsys, tmp_path):
    status, out, _ = run(capsys, "forecast", str(_config(tmp_path)), "--keep", "2", "--json")
    assert status == 0
    got = json.loads(out)
    config = RunConfig.parse(VALUES)
    want = fc.recommend_beta(config, 2, data=load_training_data(config))
    assert got == json.loads(json.dumps(want.to_dict()))
    status, out, _ = run(capsys, "forecast", str(_config(tmp_path)), "--keep", "2")
    assert status == 0 and out.startswith("Largest β forecast to keep 2 of 4 dimensions active")


def test_keep_k_with_a_budget_runs_the_pilot_and_prints_its_table(capsys, tmp_path):
    path, out_dir = str(_config(tmp_path)), str(tmp_path / "pilot")
    status, out, err = run(capsys, "forecast", path, "--keep", "2", "--budget", "0.5", "--out", out_dir, "--json")
    assert status == 0, err
    got = json.loads(out)
    assert set(got) >= {"beta", "beta_safe", "forecast", "interval", "method", "cost_fraction", "programs", "pilot",
                        "benchmark", "notes"}
    assert got["method"] == "early" and got["programs"] == 1 and len(got["pilot"]) == 8
    assert got["cost_fraction"] == 8 * 2 / 4                         # 8 grid points × 2 of 4 epochs
    assert set(got["pilot"][0]) == {"factor", "beta", "forecast", "interval"}
    kept = [row["beta"] for row in got["pilot"] if row["forecast"] >= 2]
    assert got["beta"] == (max(kept) if kept else None)
    status, out, err = run(capsys, "forecast", path, "--keep", "2", "--budget", "0.5", "--out", out_dir)
    assert status == 0, err                                           # read back: nothing trained this time
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["factor", "β", "forecast"] and len(lines) >= 10
    assert "a pilot of 8 β, 400 % of a run in optimiser steps, 0 training programs this time" in out
    assert "nothing trained this time" in out


def test_keep_k_with_a_budget_where_no_prefix_is_the_runs_beginning_is_the_cost_0_answer(capsys, tmp_path):
    values = VALUES | {"schedule": {"name": "cyclical", "settings": {"total_steps": 12, "n_cycles": 2}}}
    status, out, err = run(capsys, "forecast", str(_config(tmp_path, values)), "--keep", "2", "--budget", "0.5",
                           "--out", str(tmp_path / "pilot"))
    assert status == 0, err
    assert out.startswith("Largest β forecast to keep 2") and "cost 0" in out       # no table: nothing trained
    assert "note: no pilot: a cyclical schedule" in out and not (tmp_path / "pilot").exists()


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    path = str(_config(tmp_path))
    for argv, words in ((["forecast", path, "--budget", "2"], "between 0 and 1"),
                        (["forecast", path, "--budget", "0.5"], "--out RUN"),
                        (["forecast", str(tmp_path / "missing.yaml")], "not found"),
                        (["forecast", path, "--budget", "x"], "budget"),
                        (["forecast", path, "--keep", "9"], "latent size"),
                        (["forecast", path, "--keep", "0"], "latent size"),
                        (["forecast", path, "--keep", "2", "--budget", "2"], "between 0 and 1"),
                        (["forecast", path, "--keep", "2", "--budget", "0.5"], "--out DIR")):
        status, out, err = run(capsys, *argv)
        assert status == 2 and out == "", argv
        assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err, (argv, err)
