"""The monitor's forecast of the run's end (issue 11 §3): each epoch record carries the end-of-run count of active
dimensions with its interval — the early-training extrapolation of the KL so far, the closed form where a
trajectory says nothing — and ``min_active`` / ``--min-active K`` warns, once and early, when that forecast falls
short. A planted trajectory gives the record computed by hand; a collapsing run warns before its end and a healthy
one does not; a resume keeps the forecast's memory, and a state written before the forecast still loads."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from collapsekit.cli import main
from collapsekit.errors import ParameterError
from collapsekit.objectives.schedules import LinearWarmup
from collapsekit.training.monitor import CollapseMonitor, CollapseWarning

ROOT = Path(__file__).resolve().parents[1]
# Eigenvalues 9, 4, 1, 0.25, ...: with β = 2 (η_dec = 1) two of four dimensions collapse, with β = 0.15 none.
DATA = "gaussian:eigs=9:4:1:0.25:0.04:0.01,n=2000,seed=1,exact=1"
RUN = ["--data", DATA, "--model", "vae", "--arch", "linear", "--latent-dims", "4", "--lr", "0.03",
       "--batch-size", "250", "--no-progress"]
EPOCHS = 16
# Rows: epochs; the third dimension halves every epoch, the fourth is flat, the first two strong.
PLANTED = [[0.5, 0.5, 0.1, 0.1], [0.5, 0.5, 0.05, 0.1], [0.5, 0.5, 0.025, 0.1]]


def feed(monitor: CollapseMonitor, kl: list[float], step: int) -> dict:
    """One epoch of ten examples whose KL per dimension is ``kl``; the epoch record."""
    n = 10
    monitor.add_sums("z", kl=torch.tensor(kl, dtype=torch.float64) * n, mean=torch.zeros(len(kl), dtype=torch.float64),
                     square=torch.ones(len(kl), dtype=torch.float64) * n, count=n)
    monitor.end_epoch(step=step)
    return monitor.epoch_metrics()


def _q(regime=None) -> int:
    """The early forecast's conformal half-width, read from the benchmark's tuned constants (not via the package's
    CONFORMAL)."""
    tuned = json.loads((ROOT / "src" / "collapsekit" / "diagnostics" / "forecast_tuned.json").read_text(
        encoding="utf-8"))
    constants = tuned["early_only"]["conformal"]
    by = constants["by"]
    return int(constants["regimes"].get((regime or {}).get(by), constants["pooled"]) if by else constants["pooled"])


def test_a_planted_trajectory_gives_the_record_computed_by_hand():
    monitor = CollapseMonitor(warn=False, total_epochs=20)
    first = feed(monitor, PLANTED[0], step=1)["forecast"]
    # one epoch: every KL stays (no slope yet); the interval is the count ± the conformal half-width, clipped
    q = _q()
    assert first == {"n_active": 4, "interval": [max(0, 4 - q), 4], "method": "early", "note": None,
                     "latent_size": 4, "epoch": 1, "total_epochs": 20}
    feed(monitor, PLANTED[1], step=2)
    third = feed(monitor, PLANTED[2], step=3)["forecast"]
    # the falling dimension: log KL falls by log 2 an epoch, 17 epochs to go → 0.025 · 2⁻¹⁷ ≪ 0.01 (collapsed)
    assert 0.025 * 2.0 ** -17 < 0.01
    assert third == {"n_active": 3, "interval": [max(0, 3 - q), min(4, 3 + q)], "method": "early", "note": None,
                     "latent_size": 4, "epoch": 3, "total_epochs": 20}


def test_free_bits_floor_the_extrapolated_kl():
    # the planted third dimension falls to 0.025 · 2⁻¹⁷ nats by the end without free bits (collapsed, as above);
    # with free bits of 0.05 nats no dimension's KL ends below 0.05, so all four stay
    monitor = CollapseMonitor(warn=False, total_epochs=20, forecast_free_bits=0.05)
    for step, kl in enumerate(PLANTED, start=1):
        forecast = feed(monitor, kl, step=step)["forecast"]
    assert forecast["n_active"] == 4
    with pytest.raises(ParameterError, match="forecast_free_bits"):
        CollapseMonitor(total_epochs=5, forecast_free_bits=-1)


def test_the_interval_is_the_forecast_plus_minus_the_regimes_conformal_half_width():
    # 30 dimensions, 12 of them active and flat: the interval 12 ± q is clipped by neither end (q < 12)
    regime = {"arch": "mlp", "likelihood": "learned", "schedule": "constant", "kind": "vae"}
    monitor = CollapseMonitor(warn=False, total_epochs=20, forecast_regime=regime)
    kl = [0.5] * 12 + [1e-4] * 18
    record = feed(monitor, kl, step=1)["forecast"]
    q = _q(regime)
    assert q < 12 and record["n_active"] == 12 and record["interval"] == [12 - q, 12 + q]


def test_at_the_last_epoch_the_forecast_is_the_epochs_own_count():
    monitor = CollapseMonitor(warn=False, total_epochs=3)
    records = [feed(monitor, kl, step=i + 1) for i, kl in enumerate(PLANTED)]
    assert records[-1]["forecast"]["n_active"] == records[-1]["n_active"][0] == 4


def test_during_a_warm_up_the_closed_form_stands_in_and_says_why():
    base = {"n_active": 1, "interval": [0, 2], "kl_per_rank": [0.3, 0.004, 0.0, 0.0]}
    monitor = CollapseMonitor(warn=False, total_epochs=20, forecast_base=base,
                              schedule=LinearWarmup(warmup_steps=2))
    during = feed(monitor, PLANTED[0], step=1)["forecast"]
    assert (during["n_active"], during["interval"], during["method"]) == (1, [0, 2], "closed_form")
    assert "warm-up has not ended (step 1 of 2)" in during["note"]
    after = feed(monitor, PLANTED[1], step=2)["forecast"]
    assert (after["method"], after["n_active"], after["note"]) == ("early", 3, None)
    # without a closed form (e.g. no data given) a warm-up epoch has no forecast at all
    bare = CollapseMonitor(warn=False, total_epochs=20, schedule=LinearWarmup(warmup_steps=2))
    assert feed(bare, PLANTED[0], step=1)["forecast"] is None


def test_min_active_warns_once_when_the_forecast_falls_short():
    monitor = CollapseMonitor(total_epochs=20, min_active=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = [feed(monitor, kl, step=i + 1) for i, kl in enumerate(PLANTED)]
    said = [w for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(said) == 1 and said[0].message.epoch == 2          # the first epoch forecasting 3 < 4
    text = str(said[0].message)
    assert "\n" not in text and "3 of 4 latent dimensions" in text and "min_active = 4" in text
    # the early method's measured accuracy (no configuration: the whole reporting split), as the benchmark measured
    measured = json.loads((ROOT / "src" / "collapsekit" / "diagnostics" / "forecast_accuracy.json").read_text(
        encoding="utf-8"))
    assert f"; within ±1 on {100 * measured['early']['within1']:.0f} % of comparable benchmark runs)" in text
    assert [r["collapse_warnings"] for r in records] == [[], [text], []]
    # a threshold the forecast meets: no warning
    calm = CollapseMonitor(total_epochs=20, min_active=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, kl in enumerate(PLANTED):
            feed(calm, kl, step=i + 1)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]


def test_bad_settings_are_named():
    with pytest.raises(ParameterError, match="min_active needs total_epochs"):
        CollapseMonitor(min_active=2)
    with pytest.raises(ParameterError, match="min_active must be an integer ≥ 1"):
        CollapseMonitor(min_active=0, total_epochs=5)
    with pytest.raises(ParameterError, match="forecast_base"):
        CollapseMonitor(total_epochs=5, forecast_base={"n_active": 1})


@pytest.mark.parametrize("extra, problem", [(["--min-active", "5"], "more than the 4 latent dimensions"),
                                            (["--min-active", "2", "--no-monitor"], "needs train.monitor"),
                                            (["--min-active", "0"], "min_active")])
def test_a_bad_min_active_is_one_line(tmp_path, capsys, extra, problem):
    status = main(["train", *RUN, "--beta", "2", "--epochs", "2", "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert status == 2 and problem in err and err.count("\n") == 1 and "Traceback" not in err


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train(run_dir: Path, beta: float, *extra: str) -> list[str]:
    """Train with the CLI; the min_active warnings it printed (one line each on stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", *RUN, "--beta", str(beta), "--out", str(run_dir), *extra]) == 0
    return [line for line in err.getvalue().splitlines() if "min_active" in line]


@pytest.fixture(scope="module")
def collapsing(tmp_path_factory) -> tuple[Path, list[str]]:
    run_dir = tmp_path_factory.mktemp("forecast") / "collapsing"
    return run_dir, train(run_dir, 2.0, "--epochs", str(EPOCHS), "--min-active", "3")


def test_a_collapsing_run_warns_well_before_its_end(collapsing):
    run_dir, said = collapsing
    written = records(run_dir)
    assert len(said) == 1 and said[0].startswith("collapsekit: warning: epoch ")
    warned = [r["epoch"] for r in written if any("min_active" in t for t in r["collapse_warnings"])]
    assert len(warned) == 1 and warned[0] <= EPOCHS // 4          # in the first quarter: time to change β
    # the forecast then was right: the run ends with fewer than 3 active (the closed form's 2)
    assert written[-1]["n_active"] == [2] and written[warned[0] - 1]["forecast"]["n_active"] == 2
    assert all(r["forecast"]["total_epochs"] == EPOCHS and r["forecast"]["method"] == "early" for r in written)
    lo, hi = written[warned[0] - 1]["forecast"]["interval"]
    assert lo <= 2 <= hi


def test_a_healthy_run_does_not_warn(tmp_path):
    said = train(tmp_path / "healthy", 0.15, "--epochs", str(EPOCHS), "--min-active", "3")
    written = records(tmp_path / "healthy")
    assert said == [] and written[-1]["n_active"] == [4]
    assert min(r["forecast"]["n_active"] for r in written) >= 3


def test_a_resume_keeps_the_forecast_and_its_warning(tmp_path):
    straight = tmp_path / "straight"
    said = train(straight, 2.0, "--epochs", str(EPOCHS), "--min-active", "3", "--keep-checkpoints", str(EPOCHS))
    # the same run stopped after its fourth epoch (after the warning, with three epochs of trajectory behind it),
    # then resumed from that checkpoint: no second warning, the same records
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for later in range(5, EPOCHS + 1):
        shutil.rmtree(resumed / "checkpoints" / f"epoch-{later:06d}")
    (resumed / "checkpoints" / "latest.json").write_text(json.dumps({"epoch": 4, "path": "epoch-000004"}))
    (resumed / "metrics.jsonl").write_text("".join((straight / "metrics.jsonl").read_text().splitlines(True)[:4]))
    (resumed / "evaluation.json").unlink()
    assert len(said) == 1 and "epoch 2 of" in said[0]
    assert train(resumed, 2.0, "--resume") == []
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(records(resumed)) == drop(records(straight))


def test_a_monitor_state_written_before_the_forecast_still_loads():
    old = CollapseMonitor(warn=False)                 # no total_epochs: the state has no "forecast", as before
    for i, kl in enumerate(PLANTED[:2]):
        feed(old, kl, step=i + 1)
    saved = json.loads(json.dumps(old.state_dict() | {"history": old.history[-1:]}))   # as a checkpoint keeps it
    assert "forecast" not in saved
    monitor = CollapseMonitor(warn=False, total_epochs=20)
    monitor.load_state_dict(saved)
    forecast = feed(monitor, PLANTED[2], step=3)["forecast"]
    # the trajectory restarts from the last epoch saved: one epoch's slope (log 2), 17 epochs to go
    assert 0.025 * math.exp(-math.log(2) * 17) < 0.01
    assert (forecast["n_active"], forecast["interval"], forecast["epoch"]) == (3, [max(0, 3 - _q()), 4], 3)
    assert "forecast" in monitor.state_dict()


def test_the_monitors_closed_form_is_the_forecast_packages():
    from collapsekit.forecast import closed_form
    from collapsekit.training.builders import load_training_data
    from collapsekit.training.config import RunConfig

    config = RunConfig.parse({"data": {"spec": DATA}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4],
                                                                "likelihood": "gaussian"},
                              "objective": {"beta": 0.5}, "train": {"epochs": 10}})
    data = load_training_data(config)
    base = CollapseMonitor.from_config(config, data).forecast_base
    expected = closed_form(config, data)
    assert (base["n_active"], base["interval"]) == (expected.n_active, list(expected.interval))
    assert base["kl_per_rank"] == pytest.approx(expected.kl_per_rank, rel=1e-6, abs=1e-9)


def test_the_monitor_reads_free_bits_from_the_configuration_and_floors_its_closed_form():
    from collapsekit.training.builders import load_training_data
    from collapsekit.training.config import RunConfig

    values = {"data": {"spec": DATA}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4]},
              "objective": {"beta": 20.0}, "train": {"epochs": 10}}
    plain = RunConfig.parse(values)
    data = load_training_data(plain)
    assert CollapseMonitor.from_config(plain, data).forecast_base["n_active"] == 0     # β = 20: every mode is below
    floored = CollapseMonitor.from_config(plain.with_overrides({"objective.free_bits": 0.05}), data)
    assert floored.forecast_free_bits == 0.05 and floored.forecaster.free_bits == 0.05
    assert floored.forecast_base["n_active"] == 4 and min(floored.forecast_base["kl_per_rank"]) == 0.05
