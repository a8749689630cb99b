"""Sweeps: grid → points, summary numbers from the runs and the theory, a failed point recorded while
the others finish, a killed sweep finished by a rerun without redoing anything, a worker crash
isolated, and the Ray executor (a head started here on loopback) giving the local executor's table."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from collapsekit.errors import ParameterError
from collapsekit.experiments.executors import LocalExecutor, TaskFailure
from collapsekit.cli import main as cli_main
from collapsekit.experiments.sweep import (POINTS_DIR, RESULT_COLUMNS, STATUS_FILE, SUMMARY_FILE, expand_grid,
                                           format_value, parse_grid, point_config, read_status, read_summary,
                                           resolve_key, run_sweep)
from collapsekit.training import RunConfig
from collapsekit.training.checkpoint import checkpoint_epoch, latest_checkpoint

SPEC = "gaussian:eigs=9:4:1:0.25,n=256,exact=1"
GRID = {"beta": [0.5, 2, 5]}            # θ² = 9, 4, 1 on three latent dims: 3, 2 and 1 predicted active
SEEDS = 2
EPOCHS = 12                              # enough checkpoints per point for a kill to land mid-training
CLI = [sys.executable, "-m", "collapsekit", "sweep"]


def main(argv: list[str]) -> int:
    """`collapsekit sweep ARGV`."""
    return cli_main(["sweep", *argv])


def base_config(**optim: float) -> RunConfig:
    return RunConfig.parse({"data": {"spec": SPEC}, "model": {"kind": "vae", "arch": "linear", "latent_dims": [3]},
                            "objective": {"beta": 1.0}, "optim": {"lr": 0.03, **optim},
                            "train": {"epochs": EPOCHS, "batch_size": 64}})


def write_base(directory: Path) -> Path:
    path = directory / "base.yaml"
    path.write_text(base_config().to_yaml())
    return path


def cli_args(config: Path, out: Path, *extra: str) -> list[str]:
    return [str(config), "--grid", "beta=0.5,2,5", "--seeds", str(SEEDS), "--out", str(out), "--workers", "2",
            "--no-progress", *extra]


def assert_same_summary(got: Path, want: Path) -> None:
    """Same points in the same order, same statuses, the same numbers (to float32 round-off)."""
    rows, expected = read_summary(got), read_summary(want)
    assert [r["point"] for r in rows] == [r["point"] for r in expected]
    for row, reference in zip(rows, expected):
        assert row.keys() == reference.keys()
        for key, value in reference.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (row["point"], key)
            else:
                assert row[key] == value, (row["point"], key)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The uninterrupted sweep every other sweep here is compared with (local executor, 2 workers).

    Under pytest-xdist each worker process asks for it; they share one directory of this test run,
    one at a time, so the second finds every point done and recomputes nothing (the sweep's own
    rerun guarantee).
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return run_sweep(base_config(), GRID, SEEDS, tmp_path_factory.mktemp("reference") / "sweep", workers=2,
                         progress=False)
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent        # this run's directory, common to its xdist workers
    with FileLock(str(shared / "sweep-reference.lock")):
        return run_sweep(base_config(), GRID, SEEDS, shared / "sweep-reference", workers=2, progress=False)


# -- grid, keys, points (no training) -------------------------------------------------------------
def test_grid_expansion_keys_and_point_ids():
    grid = parse_grid(["beta=0.1,0.5,1,2", "eta_dec=0.5,1"])
    assert grid == {"beta": [0.1, 0.5, 1, 2], "eta_dec": [0.5, 1]}
    points = expand_grid(grid, 3)
    assert len(points) == 4 * 2 * 3 and len({p.id for p in points}) == len(points)
    assert [p.id for p in points[:4]] == ["beta=0.1,eta_dec=0.5,seed=0", "beta=0.1,eta_dec=0.5,seed=1",
                                          "beta=0.1,eta_dec=0.5,seed=2", "beta=0.1,eta_dec=1,seed=0"]
    assert [p.seed for p in expand_grid({"beta": [1.0]}, [4, 7])] == [4, 7]
    # 1 and 1.0 are one point; every digit of a float is kept
    assert [format_value(v) for v in (1, 1.0, 0.1, 1e-05, [4, 2], True, None)] == \
        ["1", "1", "0.1", "1e-05", "4:2", "true", "none"]

    assert resolve_key("beta").dotted == resolve_key("objective.beta").dotted == "objective.beta"
    assert resolve_key("eta-dec").dotted == "model.eta_dec" and resolve_key("lr").dotted == "optim.lr"
    assert resolve_key("beta2").level == 1 and resolve_key("latent_dim").as_list
    assert resolve_key("schedule.settings.warmup_steps").sub == "warmup_steps"

    config = point_config(base_config(), {"beta": 2, "eta_dec": 0.5, "latent_dim": 2}, seed=5)
    assert (config.objective.beta, config.model.eta_dec, config.model.latent_dims) == (2.0, 0.5, [2])
    assert config.train.seed == 5 and config.train.progress is False
    hierarchy = base_config().with_overrides({"model.kind": "hvae", "model.latent_dims": [3, 2]})
    assert point_config(hierarchy, {"beta2": 0.25}, seed=0).objective.beta == [1.0, 0.25]
    scheduled = base_config().with_overrides({"schedule.name": "linear", "schedule.settings": {"warmup_steps": 5}})
    settings = point_config(scheduled, {"schedule.settings.start": 0.5}, seed=0).schedule.settings
    assert settings == {"warmup_steps": 5, "start": 0.5}


@pytest.mark.parametrize(("grid", "message"), [
    ({"bta": [1]}, "unknown grid key 'bta'"),
    ({"name": ["adam"]}, "say which: objective.name, schedule.name, optim.name"),
    ({"seed": [1, 2]}, "use --seeds"),
    ({"beta": [1], "objective.beta": [2]}, "set the same configuration value"),
    ({"beta": [1, 1.0]}, "repeats a value"),
])
def test_bad_grids_are_one_line_errors(grid, message):
    with pytest.raises(ParameterError, match=message) as info:
        expand_grid(grid, 1)
    assert "\n" not in str(info.value)


def test_cli_bad_input_exits_2_with_one_line_before_anything_runs(tmp_path, capsys, monkeypatch):
    config = write_base(tmp_path)
    out = tmp_path / "sweep"
    cases = [(["--grid", "beta=0.5,-1"], "grid point beta=-1,seed=0: config objective.beta"),
             (["--grid", "beta"], "expected KEY=V1,V2"),
             (["--address", "127.0.0.1:1"], "--address is for --executor ray"),
             (["--seeds", "two"], "--seeds must be a count")]
    for extra, message in cases:
        assert main([str(config), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    monkeypatch.setitem(sys.modules, "ray", None)          # as if Ray were not installed
    assert main([str(config), "--out", str(out), "--executor", "ray", "--address", "127.0.0.1:6379"]) == 2
    assert "pip install 'collapsekit[ray]'" in capsys.readouterr().err
    assert not out.exists()                                 # nothing was created for bad input
    assert main([str(config), "--out", str(tmp_path), "--grid", "beta=1"]) == 2   # a folder of other files
    assert "holds no sweep.yaml" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml"]


def test_a_point_killed_before_its_first_checkpoint_starts_afresh(tmp_path):
    from collapsekit.experiments.sweep.worker import _resumable

    point = tmp_path / "beta=1,seed=0"
    point.mkdir()
    (point / STATUS_FILE).write_text(json.dumps({"status": "running", "attempt": 1}))
    (point / "metrics.jsonl").write_text('{"epoch": 1}\n')    # written just before the kill; no checkpoint yet
    (point / "checkpoints").mkdir()
    assert _resumable(point) is False
    assert sorted(p.name for p in point.iterdir()) == [STATUS_FILE]


# -- a sweep's results ----------------------------------------------------------------------------
def test_summary_has_one_row_per_point_from_metrics_and_theory(reference):
    from collapsekit.theory import Moments, predict_vae
    from collapsekit.training import load_training_data

    assert reference.ok and sorted(reference.ran + reference.skipped) == sorted(r["point"] for r in reference.rows)
    rows = read_summary(reference.summary_path)
    header = list(rows[0])
    assert header == ["point", "beta", "seed", "status", *RESULT_COLUMNS, "error", "format"]
    assert {r["format"] for r in rows} == {3}                    # the schema version: with the interval
    assert {(r["n_active_predicted_lo"], r["n_active_predicted_hi"]) for r in rows} == {(None, None)}  # exact
    assert [(r["beta"], r["seed"]) for r in rows] == [(b, s) for b in (0.5, 2, 5) for s in range(SEEDS)]
    moments = Moments.from_data(load_training_data(base_config()).x.double().numpy())
    for row in rows:
        assert row["status"] == "done" and row["error"] is None and row["theory"] == "exact"
        assert row["n_active_predicted"] == predict_vae(moments, 3, beta=row["beta"]).n_active_headline
        records = (reference.out_dir / POINTS_DIR / row["point"] / "metrics.jsonl").read_text().splitlines()
        last = json.loads(records[-1])
        assert len(records) == EPOCHS and row["epochs_trained"] == EPOCHS == last["epoch"]
        # the headline count on the final weights: the point's evaluation.json, the rule applied to its KL
        evaluation = json.loads((reference.out_dir / POINTS_DIR / row["point"] / "evaluation.json").read_text())
        assert evaluation["measured_on"]["weights"] == "final" and evaluation["measured_on"]["epoch"] == EPOCHS
        assert row["n_active_measured"] == evaluation["n_active"] == sum(kl >= 0.01 for kl in
                                                                         evaluation["levels"][-1]["kl_per_dim"])
        assert (row["loss_nats"], row["kl_nats"], row["latent_size"]) == (last["loss"], last["kl"], 3)
        status = read_status(reference.out_dir / POINTS_DIR / row["point"])
        assert status["status"] == "done" and status["attempt"] == 1 and status["resumed_from"] is None
    assert [r["n_active_predicted"] for r in rows] == [3, 3, 2, 2, 1, 1]


def test_summaries_of_formats_1_and_2_still_read(reference, tmp_path):
    lines = reference.summary_path.read_text().splitlines()
    assert lines[0].endswith(",format") and all(line.endswith(",3") for line in lines[1:])
    with open(reference.summary_path, newline="") as stream:
        cells = list(csv.reader(stream))             # the point names hold quoted commas
    drop = [cells[0].index("n_active_predicted_lo"), cells[0].index("n_active_predicted_hi")]
    two = [[c for i, c in enumerate(row) if i not in drop] for row in cells]
    two = [two[0]] + [row[:-1] + ["2"] for row in two[1:]]      # format 2: no interval columns
    for fmt, table in ((2, two), (1, [row[:-1] for row in two])):  # format 1: no format column either
        old = tmp_path / f"{fmt}.csv"
        with open(old, "w", newline="") as stream:
            csv.writer(stream).writerows(table)
        rows = read_summary(old)
        assert [r["format"] for r in rows] == [fmt] * len(lines[1:])
        assert [list(r) for r in rows] == [list(r) for r in read_summary(reference.summary_path)]   # same columns
        assert [{k: v for k, v in r.items() if k != "format"} for r in rows] == \
            [{k: v for k, v in r.items() if k != "format"} for r in read_summary(reference.summary_path)]


def test_a_nonlinear_points_summary_row_has_the_reports_interval(tmp_path, capsys):
    """The interval in summary.csv is the one diagnose's theory column states for the same configuration."""
    from collapsekit.cli.sweep import print_result
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL
    from collapsekit.diagnostics.report import CollapseReport
    from collapsekit.diagnostics.theory_compare import TheorySetting, compare_with_theory, moments_for
    from collapsekit.experiments.sweep import SweepResult, predicted_active, predicted_interval, write_summary
    from collapsekit.training import load_training_data
    from report_helpers import make_level

    config = base_config().with_overrides({"model.arch": "mlp", "model.hidden": [16], "objective.beta": 2.0})
    data = load_training_data(config)
    count, label = predicted_active(config, data)
    assert label == "linear-theory estimate" and count == 2
    interval = predicted_interval(config, count, label, 3)
    q = int(CONFORMAL["posthoc"]["regimes"]["mlp"])
    assert interval == (max(0, count - q), min(3, count + q)) and interval[0] < count < interval[1]
    setting = TheorySetting.from_config(config)
    report = compare_with_theory(CollapseReport(levels=[make_level("z", [0.8, 0.3, 0.0])], n_examples=256),
                                 setting, moments_for(setting, data.x, data.y))
    assert tuple(report.levels[0].theory.interval) == interval      # what the reports state
    assert predicted_interval(base_config(), 2, "exact", 3) is None  # an exact count has no interval
    row = {"point": "p0", "beta": 2.0, "seed": 0, "status": "done", "n_active_predicted": count,
           "n_active_predicted_lo": interval[0], "n_active_predicted_hi": interval[1], "n_active_measured": 1,
           "latent_size": 3, "loss_nats": 1.5, "kl_nats": 0.5, "theory": label}
    path = write_summary(tmp_path / SUMMARY_FILE, [row], ["beta"])
    (got,) = read_summary(path)
    assert got["format"] == 3 and (got["n_active_predicted_lo"], got["n_active_predicted_hi"]) == interval
    # under the table, the benchmark's measured accuracy for the point's regime, as the reports quote it
    from collapsekit.diagnostics.forecast_accuracy import MEASURED
    from collapsekit.experiments.sweep import estimate_accuracies

    base = config.with_overrides({"objective.beta": 1.0})
    accuracy = estimate_accuracies(base, {"beta": [2.0]}, [got])
    assert accuracy == [report.levels[0].theory.qualifier.split("; ", 1)[1].rstrip(")")]
    fixed = MEASURED["posthoc"]["regimes"]["likelihood"]["fixed"]             # base_config's η_dec is fixed
    assert accuracy == [f"within ±1 on {100 * fixed['within1']:.0f} % of the {fixed['n']} benchmark runs with a "
                        "fixed η_dec"]
    assert estimate_accuracies(base, {"beta": [2.0]}, [got | {"theory": "exact"}]) == []
    print_result(SweepResult(out_dir=tmp_path, rows=[got]), accuracy=accuracy)
    printed = capsys.readouterr().out
    assert f"{count} ({interval[0]}–{interval[1]})" in printed
    assert accuracy[0] in " ".join(printed.split())


def test_small_vaes_train_batched_and_match_one_process_per_point(reference, tmp_path):
    """The reference's points ran as batched programs (one per worker); run one process per point instead
    and every number of the summary is the same (train_batched ends runs exactly as separate runs)."""
    statuses = [read_status(reference.out_dir / POINTS_DIR / row["point"]) for row in reference.rows]
    assert all(status["batched"] == 3 for status in statuses)           # 6 points, 2 workers: 2 programs of 3
    separate = run_sweep(base_config(), GRID, SEEDS, tmp_path / "separate", workers=2, progress=False, batched=False)
    assert separate.batching == "" and all("batched" not in read_status(tmp_path / "separate" / POINTS_DIR / p)
                                           for p in separate.ran)
    rows, expected = read_summary(separate.summary_path), read_summary(reference.summary_path)
    assert rows == expected


def test_a_nonlinear_sweeps_summary_and_plot_carry_the_theorys_interval(tmp_path, monkeypatch):
    from collapsekit.experiments.sweep import plot_sweep, predicted_interval

    config = base_config().with_overrides({"model.arch": "mlp", "model.hidden": [16], "model.latent_dims": [4],
                                           "train.epochs": 2})
    result = run_sweep(config, {"beta": [0.5, 8]}, 1, tmp_path / "s", workers=1, progress=False, batched=False)
    rows = read_summary(result.summary_path)
    for row in rows:
        assert row["status"] == "done" and row["theory"] == "linear-theory estimate" and row["format"] == 3
        want = predicted_interval(point_config(config, {"beta": row["beta"]}, 0), row["n_active_predicted"],
                                  row["theory"], 4)
        assert (row["n_active_predicted_lo"], row["n_active_predicted_hi"]) == want
        assert want[0] <= row["n_active_predicted"] <= want[1] and want[0] < want[1]
    assert result.plot_path is not None and result.plot_path.stat().st_size > 20_000   # the band draws
    seen = {}
    monkeypatch.setattr("collapsekit.viz.sweep.plot_active_against",
                        lambda series, **kw: seen.update(series=series, **kw) or kw["path"])
    plot_sweep(result.out_dir, path=tmp_path / "again.png")
    (series,) = seen["series"]
    lows, highs = series.band
    for x, count, lo, hi in zip(seen["fine"], series.curve, lows, highs):   # the summary's rule at every x
        want = predicted_interval(point_config(config, {"beta": x}, 0), int(count), series.theory, 4)
        assert (lo, hi) == want


def test_plot_is_written_and_not_blank(reference, tmp_path):
    import matplotlib.image

    from collapsekit.experiments.sweep import plot_sweep

    assert reference.plot_path == reference.out_dir / "active_vs_beta.png"
    again = plot_sweep(reference.out_dir, x="objective.beta", path=tmp_path / "again.png")
    for path in (reference.plot_path, again):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
        pixels = matplotlib.image.imread(path)[..., :3]
        coloured = np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).max(axis=-1) > 0.1
        assert coloured.mean() > 0.002           # coloured markers and the theory curve, not only axes


# -- failures -------------------------------------------------------------------------------------
def test_a_diverging_point_is_recorded_and_the_others_finish_then_a_rerun_retries_it(tmp_path, capsys):
    config = tmp_path / "base.yaml"
    config.write_text(base_config().to_yaml())
    out = tmp_path / "sweep"
    argv = [str(config), "--grid", "lr=0.03,100", "--out", str(out), "--workers", "2", "--no-progress"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "failed lr=100,seed=0: TrainingDiverged: the loss became inf during epoch 1" in " ".join(printed.split())
    rows = {row["point"]: row for row in read_summary(out / SUMMARY_FILE)}
    assert rows["lr=0.03,seed=0"]["status"] == "done" and rows["lr=0.03,seed=0"]["n_active_measured"] is not None
    failed = rows["lr=100,seed=0"]
    assert failed["status"] == "failed" and failed["error"].startswith("TrainingDiverged: the loss became inf")
    assert failed["n_active_measured"] is None
    assert "TrainingDiverged" in (out / POINTS_DIR / "lr=100,seed=0" / "traceback.txt").read_text()

    done_status = out / POINTS_DIR / "lr=0.03,seed=0" / STATUS_FILE
    before = (done_status.stat().st_mtime_ns, done_status.read_bytes())
    result = run_sweep(base_config(), {"lr": [0.03, 100]}, 1, out, workers=2, progress=True)
    assert result.skipped == ["lr=0.03,seed=0"] and result.retried == result.ran == ["lr=100,seed=0"]
    assert "running 1 (1 failed before, retrying: lr=100,seed=0), skipping 1 already done" in \
        " ".join(capsys.readouterr().err.split())
    assert (done_status.stat().st_mtime_ns, done_status.read_bytes()) == before
    assert read_status(out / POINTS_DIR / "lr=100,seed=0")["attempt"] == 2 and not result.ok


@pytest.mark.parametrize("batched", [False, True], ids=["one-process-per-point", "batched"])
def test_collapse_warnings_of_a_sweep_are_one_line_each_naming_their_point(tmp_path, batched):
    """A worker's collapse warnings reach the terminal as one line each, ``POINT: posterior collapse at epoch
    N: ...``, never as Python's ``file:line: CollapseWarning`` with its source line, and none is lost: the lines
    are exactly the warnings the points' metrics records hold (β = 50 collapses every dimension)."""
    import re

    config, out = tmp_path / "base.yaml", tmp_path / "sweep"
    config.write_text(base_config().with_overrides({"train.epochs": 20}).to_yaml())
    argv = [str(config), "--grid", "beta=2,50", "--seeds", "1", "--out", str(out), "--workers", "1", "--no-progress"]
    run = subprocess.run([*CLI, *argv, *(() if batched else ("--no-batch",))], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    points = ["beta=2,seed=0", "beta=50,seed=0"]
    assert all((read_status(out / POINTS_DIR / p).get("batched") == 2) is batched for p in points)
    recorded = {(point, record["epoch"]) for point in points
                for record in map(json.loads, (out / POINTS_DIR / point / "metrics.jsonl").read_text().splitlines())
                for _ in record.get("collapse_warnings", [])}
    assert any(p == "beta=50,seed=0" for p, _ in recorded)
    lines = run.stderr.splitlines()
    assert not [line for line in lines if "CollapseWarning" in line or "warnings.warn" in line or ".py:" in line]
    said = [re.fullmatch(r"collapsekit: warning: (beta=\d+,seed=0): posterior collapse at epoch (\d+): z: .*", line)
            for line in lines if "collapse" in line]
    assert all(said), lines
    assert sorted((m[1], int(m[2])) for m in said) == sorted(recorded)
    assert "likely cause" in said[0][0] and f"{POINTS_DIR}/beta=50,seed=0/{STATUS_FILE}" in said[0][0]
    status = read_status(out / POINTS_DIR / "beta=50,seed=0")
    assert status["warnings"][0]["message"].startswith("Posterior collapse at epoch")
    assert "\n  - " in status["warnings"][0]["message"]          # the likely causes, in full, in status.json


def _crash_on_two(task: int) -> int:
    """A task whose worker process dies (no exception, no result) on task 2."""
    if task == 2:
        os._exit(3)
    time.sleep(0.3)                 # neighbours still running when 2 dies: they are suspects too
    return task * 10


def test_a_worker_crash_fails_only_its_task():
    outcomes = dict(LocalExecutor(workers=2).run(_crash_on_two, list(range(5))))
    assert sorted(outcomes) == [0, 1, 2, 3, 4]
    assert isinstance(outcomes[2], TaskFailure) and "worker process died" in outcomes[2].message
    assert {i: outcomes[i] for i in (0, 1, 3, 4)} == {0: 0, 1: 10, 3: 30, 4: 40}


# -- kill and rerun -------------------------------------------------------------------------------
def _snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``directory``: (mtime in ns, sha256) — equal snapshots mean untouched files."""
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _checkpoint_epoch(point: Path) -> int | None:
    """The epoch a resume of this point starts from: the product's own choice of checkpoint, which
    includes one renamed into place by a worker killed before it could write ``latest.json``."""
    newest = latest_checkpoint(point / "checkpoints")
    return checkpoint_epoch(newest) if newest is not None else None


def _live_members(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies awaiting their reaper excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] not in ("Z", "X"):
                members.append(int(stat.parent.name))
    return members


@pytest.mark.parametrize("batched", [False, True], ids=["one-process-per-point", "batched"])
def test_a_killed_sweep_is_finished_by_a_rerun_that_runs_only_the_missing_points(tmp_path, reference, batched):
    config, out = write_base(tmp_path), tmp_path / "sweep"
    points = [p.id for p in expand_grid(GRID, SEEDS)]
    mode = () if batched else ("--no-batch",)
    sweep = subprocess.Popen([*CLI, *cli_args(config, out, *mode)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill while a point is mid-training: it has a checkpoint and at least three epochs to go, so
        # that it cannot finish in the moment between this look and the kill. One process per point:
        # also wait until a point is done. Batched: the points of a program finish together, so the
        # kill lands with every point mid-training.
        deadline = time.monotonic() + 240
        while True:
            statuses = {p: read_status(out / POINTS_DIR / p).get("status") for p in points}
            done = [p for p in points if statuses[p] == "done"]
            epochs = [_checkpoint_epoch(out / POINTS_DIR / p) for p in points if statuses[p] != "done"]
            if (done or batched) and any(e is not None and e <= EPOCHS - 3 for e in epochs):
                os.kill(sweep.pid, signal.SIGKILL)      # the parent only: its workers must die with it
                break
            assert sweep.poll() is None, f"the sweep ended before it could be killed: {sweep.stderr.read()!r}"
            assert time.monotonic() < deadline, "no point finished in time"
            time.sleep(0.01)
        sweep.wait(30)
        deadline = time.monotonic() + 30
        while _live_members(sweep.pid):                 # the workers die with their parent (PDEATHSIG)
            assert time.monotonic() < deadline, "worker processes outlived the killed sweep"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweep.pid, signal.SIGKILL)

    statuses = {p: read_status(out / POINTS_DIR / p) for p in points}
    done_before = {p: _snapshot(out / POINTS_DIR / p) for p in points if statuses[p].get("status") == "done"}
    checkpoint_at_kill = {p: _checkpoint_epoch(out / POINTS_DIR / p) for p in points if p not in done_before}
    interrupted = [p for p in points if statuses[p].get("status") == "running"]
    assert (0 if batched else 1) <= len(done_before) < len(points)
    assert any(checkpoint_at_kill.values())
    if batched:
        assert all(read_status(out / POINTS_DIR / p).get("batched") == 3 for p in interrupted)

    rerun_started = time.time()
    rerun = subprocess.run([*CLI, *cli_args(config, out, *mode)], capture_output=True, text=True, timeout=300,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    said = " ".join(rerun.stdout.split())
    assert f"ran {len(checkpoint_at_kill)} ({len(interrupted)} interrupted, resumed" in said, said
    assert not done_before or f"skipped {len(done_before)} already done" in said, said

    for point, snapshot in done_before.items():         # finished points: not a byte, not a timestamp changed
        assert _snapshot(out / POINTS_DIR / point) == snapshot
    for point, epoch in checkpoint_at_kill.items():     # the rest ran again: resumed where a checkpoint was
        status = read_status(out / POINTS_DIR / point)
        assert status["status"] == "done" and status["started_unix"] >= rerun_started
        assert status["resumed_from"] == epoch, (point, status)
    # ... and the table is the uninterrupted sweep's (the trainer's resume is exact)
    assert_same_summary(out / SUMMARY_FILE, reference.summary_path)


# -- Ray ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ray_head():
    """A Ray head on loopback (``ray start --head --block``), stopped with its whole process group."""
    pytest.importorskip("ray")
    port = _free_port()
    # Short: Ray puts unix sockets under it, and their paths must fit in 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ck-ray-", dir="/tmp")
    # Ray replaces a loopback address with the machine's outward IP unless told that clustering
    # is off; with it off every Ray connection here stays on 127.0.0.1.
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log_path = Path(temp_dir) / "head.log"
    with open(log_path, "wb") as log:
        head = subprocess.Popen([sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start",
                                 "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
                                 "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                                 "--object-store-memory", str(100 * 2**20), "--temp-dir", temp_dir],
                                env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, log_path.read_text(errors="replace")[-2000:]
                assert time.monotonic() < deadline, "the Ray head did not open its port"
                time.sleep(0.25)
        yield f"127.0.0.1:{port}", env
    finally:
        head.send_signal(signal.SIGTERM)                 # `ray start --block` stops its processes on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)          # whatever of the group is left (workers, agents)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_executor_on_a_loopback_head_gives_the_local_table(tmp_path, reference, ray_head):
    address, env = ray_head
    config, out = write_base(tmp_path), tmp_path / "sweep"
    run = subprocess.run([*CLI, *cli_args(config, out, "--executor", "ray", "--address", address)], env=env,
                         capture_output=True, text=True, timeout=400, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_summary(out / SUMMARY_FILE, reference.summary_path)
