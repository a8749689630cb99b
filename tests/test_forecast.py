"""Forecasts of the end-of-run active count: statistics, not shapes.

The closed form on a linear configuration is the theory's; a planted trajectory is extrapolated as computed by
hand; a trained prefix is the run's own beginning, and `train --resume` continues it to the run it forecasts;
the benchmark's scorer agrees with a table scored by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from collapsekit import forecast as fc
from collapsekit.activity import count_active
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments, predict_vae
from collapsekit.training.builders import load_training_data
from collapsekit.training.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
#: The benchmark's tuned constants and measured accuracy: package data that bench/forecast/score.py writes.
TUNED_FILE = ROOT / "src" / "collapsekit" / "diagnostics" / "forecast_tuned.json"
PACKAGED = ROOT / "src" / "collapsekit" / "diagnostics" / "forecast_accuracy.json"
SPEC = "gaussian:eigs=9:4:2:1:0.5:0.25,n=500,exact=1"


def _linear(beta: float) -> RunConfig:
    return RunConfig.parse({"data": {"spec": SPEC}, "model": {"kind": "vae", "arch": "linear", "latent_dims": [4]},
                            "objective": {"beta": beta}, "train": {"epochs": 5, "progress": False}})


@pytest.mark.parametrize("beta", [0.3, 1.5, 3.0])
def test_forecast_of_a_linear_configuration_is_its_closed_form(beta):
    config = _linear(beta)
    data = load_training_data(config)
    want = predict_vae(Moments.from_data(data.x.double().numpy()), latent_dim=4, beta=beta)
    for got in (fc.forecast_config(config, budget=0.0), fc.forecast_config(config, budget=0.5), fc.adjusted(config, data),
                fc.closed_form(config, data)):
        assert got.n_active == want.n_active_headline
        np.testing.assert_allclose(got.kl_per_rank, np.sort(want.kl_per_dim)[::-1], rtol=1e-10, atol=1e-12)
        assert got.cost_fraction == 0.0


def test_adjusted_uses_centred_moments_and_the_schedules_final_beta():
    # a mean of 3 in every coordinate: the raw second moment gains a mode of 9·6 = 54 that the bias absorbs
    x = np.random.default_rng(0).standard_normal((4000, 6)) * np.sqrt([4.0, 2.0, 1.0, 0.5, 0.2, 0.1]) + 3.0
    config = RunConfig.parse({"model": {"kind": "vae", "arch": "mlp", "latent_dims": [4]}, "objective": {"beta": 1.5},
                              "schedule": {"name": "linear", "settings": {"warmup_steps": 10, "start": 0, "end": 0.5}},
                              "train": {"epochs": 5, "batch_size": 1000}})
    got = fc.adjusted(config, (x, None), width=1.0)
    centred = Moments.from_data(x - x.mean(axis=0))
    want = predict_vae(centred, latent_dim=4, beta=0.75)            # β · the schedule's end factor ½
    assert got.n_active == want.n_active_headline == 3              # modes 4, 2 and 1 exceed β = 0.75
    raw = fc.closed_form(config, (x, None), width=1.0)
    assert raw.n_active == predict_vae(Moments.from_data(x), latent_dim=4, beta=1.5).n_active_headline


def test_the_learned_eta_estimate_is_the_linear_optimums_fixed_point():
    lam = np.array([8.0, 4.0, 0.1, 0.1])
    moments = Moments(xx=np.diag(lam))
    config = RunConfig.parse({"model": {"kind": "vae", "arch": "mlp", "latent_dims": [2], "learn_eta_dec": True}})
    eta = fc.learned_eta_estimate(config, moments, beta=1.0)
    # both modes kept: η² = (2·βη² + 0.2) / 4  ⇒  η² = 0.1
    assert eta ** 2 == pytest.approx(0.1, rel=1e-6)


def test_bernoulli_stand_in_is_the_mean_bernoulli_variance():
    x = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])      # p = (½, ¼)
    assert fc.bernoulli_eta(x) ** 2 == pytest.approx((0.25 + 0.1875) / 2)


def test_a_planted_trajectory_is_extrapolated_as_by_hand():
    # 3 dimensions halve every epoch from 0.4 nats, 2 hold at 0.5: after 3 of 20 epochs, at γ = 1 the falling ones
    # end at 0.1·2^-17 (collapsed), at γ = 0 they keep 0.1 (active)
    falling = [[0.4 * 0.5 ** t] * 3 + [0.5, 0.5] for t in range(3)]
    np.testing.assert_allclose(fc.extrapolate(falling, 20, gamma=1.0), [0.1 * 0.5 ** 17] * 3 + [0.5, 0.5])
    np.testing.assert_allclose(fc.extrapolate(falling, 20, gamma=0.0), [0.1] * 3 + [0.5, 0.5])
    config = RunConfig.parse({"data": {"spec": SPEC}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [5]},
                              "train": {"epochs": 20, "batch_size": 500}})
    data = load_training_data(config)
    got = fc.early(config, data, trajectory=falling + [[9.0] * 5] * 17, budget=0.15, gamma=1.0, weight=1.0, width=2.0)
    assert (got.n_active, got.interval, got.method, got.cost_fraction) == (2, (2, 2), "early", 3 / 20)
    # by default the interval is split-conformal: the count ± the early method's half-width, clipped to [0, 5]
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL, half_width, regime_of

    q = int(half_width(CONFORMAL["early"], regime_of(config)))
    got = fc.early(config, data, trajectory=falling + [[9.0] * 5] * 17, budget=0.15, gamma=1.0, weight=1.0)
    assert (got.n_active, got.interval) == (2, (max(0, 2 - q), min(5, 2 + q)))


def test_early_falls_back_to_the_closed_form_where_a_prefix_is_not_the_runs_beginning():
    config = RunConfig.parse({"data": {"spec": SPEC}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4]},
                              "schedule": {"name": "cyclical", "settings": {"total_steps": 20, "n_cycles": 2}},
                              "train": {"epochs": 20, "batch_size": 500}})
    data = load_training_data(config)
    got = fc.early(config, data, trajectory=[[1.0] * 4] * 20, budget=0.1)
    assert got.method == fc.base(config, data).method and got.cost_fraction == 0 and "cyclical" in got.notes[-1]
    assert fc.prefix_problem(config, 0, data.n) is not None


def _tiny(tmp_path: Path) -> RunConfig:
    return RunConfig.parse({"data": {"spec": "digits"}, "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4],
                                                                  "hidden": [16]},
                            "objective": {"beta": 2.0}, "train": {"epochs": 4, "batch_size": 600, "progress": False,
                                                                   "monitor": False}})


def test_a_trained_prefix_is_the_runs_beginning_and_resume_finishes_the_run(tmp_path):
    from collapsekit.training.trainer import train

    config = _tiny(tmp_path)
    full = train(config, tmp_path / "full")
    got = fc.forecast_config(config, budget=0.5, run_dir=tmp_path / "prefix")
    assert got.method == "early" and got.cost_fraction == 0.5
    prefix = [json.loads(line)["kl_per_dim"][-1] for line in (tmp_path / "prefix" / "metrics.jsonl").open()]
    np.testing.assert_allclose(prefix, [m["kl_per_dim"][-1] for m in full.metrics[:2]], rtol=1e-5, atol=1e-7)
    again = fc.forecast_config(config, budget=0.5, run_dir=tmp_path / "prefix")     # read back, not retrained
    assert again.kl_per_rank == got.kl_per_rank
    resumed = train(config, tmp_path / "prefix", resume=True)
    np.testing.assert_allclose(resumed.evaluation["levels"][-1]["kl_per_dim"],
                               full.evaluation["levels"][-1]["kl_per_dim"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("free_bits", [None, 0.05])
def test_free_bits_keep_every_dimension_above_the_floor_and_the_forecast_says_so(tmp_path, free_bits):
    # β = 8 collapses every dimension of the plain β-ELBO; with free bits of 0.05 nats the KL term gives no
    # gradient below 0.05, so every dimension ends above the 0.01-nat activity threshold — as the floor forecasts
    from collapsekit.training.trainer import train

    config = RunConfig.parse({"data": {"spec": "digits"},
                              "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4], "hidden": [32]},
                              "objective": {"beta": 8.0, "free_bits": free_bits},
                              "train": {"epochs": 10, "batch_size": 128, "progress": False, "monitor": False}})
    measured = train(config, tmp_path / "run").evaluation["levels"][-1]["kl_per_dim"]
    forecast = fc.adjusted(config, load_training_data(config))
    assert count_active(measured) == forecast.n_active == (4 if free_bits else 0)
    if free_bits:
        assert min(forecast.kl_per_rank) == free_bits and "free bits" in " ".join(forecast.notes)


def test_bad_budgets_are_one_line_errors(tmp_path):
    config = _tiny(tmp_path)
    with pytest.raises(ParameterError, match="between 0 and 1"):
        fc.forecast_config(config, budget=1.5)
    with pytest.raises(ParameterError, match="--out RUN"):
        fc.forecast_config(config, budget=0.5)


def _score_module():
    spec = importlib.util.spec_from_file_location("forecast_score", ROOT / "bench" / "forecast" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scorer_against_a_table_scored_by_hand():
    score = _score_module()
    rows = [{"pred": 3, "lo": 2, "hi": 4, "truth": 3, "kl_pred": [1.0, 0.1, 0.0], "kl_true": [1.0, 0.1, 0.0], "cost": 0},
            {"pred": 2, "lo": 2, "hi": 2, "truth": 4, "kl_pred": [10.0, 0.0], "kl_true": [1.0, 1e-5], "cost": 0.1},
            {"pred": 5, "lo": 1, "hi": 6, "truth": 4, "kl_pred": [0.01], "kl_true": [0.1], "cost": 0.2}]
    m = score.metrics(rows)
    assert m["n"] == 3
    assert m["mae"] == pytest.approx((0 + 2 + 1) / 3)
    assert m["exact"] == pytest.approx(1 / 3) and m["within1"] == pytest.approx(2 / 3)
    assert m["coverage"] == pytest.approx(2 / 3) and m["width"] == pytest.approx((2 + 0 + 5) / 3)
    # per-rank |log10| errors, collapsed ranks measured to the 1e-3 floor: (0+0+0)/3, (1 + 0)/2, 1/1
    assert m["log_kl"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert m["cost"] == pytest.approx(0.1)
    assert math.isnan(score.metrics([])["mae"])


def test_the_benchmark_grid_is_fixed_large_and_split():
    grid = json.loads((ROOT / "bench" / "forecast" / "grid.json").read_text(encoding="utf-8"))
    spec = importlib.util.spec_from_file_location("forecast_grid", ROOT / "bench" / "forecast" / "grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(grid) >= 80 and len({e["id"] for e in grid}) == len(grid)
    assert all(module.config_id(e) == e["id"] and module.split_of(e["id"]) == e["split"] for e in grid)
    assert {e["split"] for e in grid} == {"tuning", "reporting"}
    assert {e["group"] for e in grid} == {"digits", "mnist10k", "synthetic"}
    assert {e["kind"] for e in grid} == {"vae", "cvae", "hvae"} and {e["arch"] for e in grid} == {"mlp", "conv"}
    assert {e["regime"]["likelihood"] for e in grid} == {"fixed", "learned", "bernoulli"}
    for entry in grid[:3]:
        RunConfig.parse(entry["config"])


@pytest.mark.parametrize("kind, dims, beta", [("vae", [6], 30.0), ("hvae", [6, 3], [1.0, 9.0])])
def test_compact_moments_give_the_same_closed_form(kind, dims, beta):
    eigs = ":".join(f"{10 * 0.8 ** i:.4f}" for i in range(80))
    config = RunConfig.parse({"data": {"spec": f"gaussian:eigs={eigs},n=400"}, "objective": {"beta": beta},
                              "model": {"kind": kind, "arch": "mlp", "latent_dims": dims, "eta_dec": 0.4}})
    moments = fc.centred_moments(config, load_training_data(config))
    full = fc.closed_form_kl(config, moments)
    assert 0 < count_active(full) < dims[-1]                       # a partial collapse: the case that matters
    np.testing.assert_allclose(fc.closed_form_kl(config, fc.compact(config, moments)), full, rtol=1e-9, atol=1e-12)


def test_the_shipped_constants_are_the_ones_tuned_on_the_benchmarks_tuning_split():
    from collapsekit.forecast.closed_form import DEFAULT_BETA_FACTOR, DEFAULT_SHIFT
    from collapsekit.forecast.early import BASE, DEFAULTS
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL

    from collapsekit.diagnostics.forecast_intervals import TUNED_AS

    tuned = json.loads(TUNED_FILE.read_text(encoding="utf-8"))
    assert CONFORMAL == {m: tuned[TUNED_AS.get(m, m)]["conformal"] for m in CONFORMAL}
    assert set(CONFORMAL) == {"closed_form", "posthoc", "adjusted", "shifted", "early"}
    assert TUNED_AS == {"early": "early_only"}
    # the package ships the conformal interval for the early forecast: the one the tuning split's CV preferred
    assert tuned["early_only"]["interval"] == "conformal"
    assert DEFAULT_SHIFT == tuned["shifted"]["shift"]
    assert DEFAULT_BETA_FACTOR == pytest.approx(tuned["adjusted"]["beta_factor"])
    assert DEFAULTS == pytest.approx({k: tuned["early_only"][k] for k in DEFAULTS})
    assert BASE == tuned["early_only"]["base"] == tuned["early"]["base"]


def test_the_early_interval_is_the_conformal_quantile_of_the_tuning_splits_prefixed_configurations():
    """Recomputed here from truth.jsonl and grid.json with the package's kernels, not the scorer: one score per
    tuning configuration where a 10 % prefix exists (max over seeds of |measured − forecast|), and the shipped
    half-width is the ⌈0.9(m + 1)⌉-th smallest of the m scores."""
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL

    tuned = json.loads(TUNED_FILE.read_text(encoding="utf-8"))
    constants = tuned["early_only"]
    grid = {e["id"]: e for e in json.loads((ROOT / "bench" / "forecast" / "grid.json").read_text(encoding="utf-8"))}
    scores: dict[str, float] = {}
    for line in (ROOT / "bench" / "forecast" / "results" / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("status") != "ok" or row["split"] != "tuning" or row["id"] not in grid:
            continue
        config = RunConfig.parse(grid[row["id"]]["config"])
        k = fc.prefix_epochs(config, 0.1)
        if fc.prefix_problem(config, k, grid[row["id"]]["rows"]) is not None:
            continue                                   # a fallback row: the base closed form's interval stands
        ending = fc.extrapolate(np.asarray(row["trajectory"], float)[:k], config.train.epochs,
                                gamma=constants["gamma"])
        residual = abs(row["n_active"] - count_active(ending))
        scores[row["id"]] = max(scores.get(row["id"], 0), residual)
    m = len(scores)
    assert constants["weight"] == 1.0 and m == constants["calibrated_configurations"] >= 19
    want = sorted(scores.values())[math.ceil(0.9 * (m + 1)) - 1]
    assert CONFORMAL["early"]["by"] is None                    # one pooled quantile (the CV's choice)
    assert CONFORMAL["early"]["pooled"] == want


def test_the_measured_accuracy_and_the_tuned_constants_are_package_data_written_by_the_scorer():
    from importlib import resources

    from collapsekit.diagnostics.forecast_accuracy import TUNED

    score = _score_module()
    assert score.ACCURACY == PACKAGED and not (ROOT / "bench" / "forecast" / "results" / "accuracy.json").exists()
    assert score.TUNED == TUNED_FILE and not (ROOT / "bench" / "forecast" / "results" / "tuned.json").exists()
    shipped = resources.files("collapsekit.diagnostics").joinpath("forecast_accuracy.json").read_text(encoding="utf-8")
    assert fc.MEASURED == json.loads(shipped) == json.loads(PACKAGED.read_text(encoding="utf-8"))
    assert TUNED == json.loads(TUNED_FILE.read_text(encoding="utf-8"))


def test_the_measured_accuracy_is_the_reporting_splits_forecasts_scored_again():
    """Each shipped method's numbers (and its per-likelihood rows) recomputed from the scorer's per-run forecasts
    (results/forecasts.csv) and the measured counts' regimes (truth.jsonl)."""
    import csv

    truth = {}
    for line in (ROOT / "bench" / "forecast" / "results" / "truth.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        truth[(row["id"], int(row["seed"]))] = row
    with open(ROOT / "bench" / "forecast" / "results" / "forecasts.csv", encoding="utf-8") as stream:
        rows = [r for r in csv.DictReader(stream) if r["split"] == "reporting"]
    for name, method in {"closed_form": "closed_form", "posthoc": "posthoc", "adjusted": "adjusted",
                         "shifted": "shifted", "early": "early_only"}.items():
        mine = [r for r in rows if r["method"] == method]
        groups = {None: mine} | {value: [r for r in mine if truth[(r["id"], int(r["seed"]))]["likelihood"] == value]
                                 for value in ("fixed", "learned", "bernoulli")}
        for value, group in groups.items():
            want = fc.MEASURED[name] if value is None else fc.MEASURED[name]["regimes"]["likelihood"][value]
            pred, lo, hi, real = (np.array([int(r[k]) for r in group]) for k in ("forecast", "lo", "hi", "measured"))
            assert want["n"] == len(group) and want["configurations"] == len({r["id"] for r in group})
            assert want["mae"] == pytest.approx(np.mean(np.abs(pred - real)), abs=1e-4)
            assert want["exact"] == pytest.approx(np.mean(pred == real), abs=1e-4)
            assert want["within1"] == pytest.approx(np.mean(np.abs(pred - real) <= 1), abs=1e-4)
            assert want["coverage"] == pytest.approx(np.mean((lo <= real) & (real <= hi)), abs=1e-4)
            assert want["width"] == pytest.approx(np.mean(hi - lo), abs=1e-4)


def test_the_evidence_shipped_with_a_forecast_is_the_benchmarks_reporting_split():
    measured = json.loads(PACKAGED.read_text(encoding="utf-8"))
    assert fc.benchmark_accuracy("closed_form", "linear") is None          # exact: no benchmark to quote
    assert set(fc.MEASURED) == {"closed_form", "posthoc", "adjusted", "shifted", "early"}
    whole = {k: v for k, v in measured["adjusted"].items() if k != "regimes"}
    assert fc.benchmark_accuracy("adjusted") == whole                      # what --budget 0 returns
    sentence = fc.evidence("closed_form")
    assert f"within ±1 on {100 * measured['closed_form']['within1']:.0f} %" in sentence


def test_the_evidence_quotes_the_configurations_likelihood_row_where_it_has_enough_runs():
    from collapsekit.diagnostics.forecast_accuracy import MIN_REGIME_RUNS, QUOTED_BY, comparable

    measured = json.loads(PACKAGED.read_text(encoding="utf-8"))
    assert QUOTED_BY == "likelihood" and MIN_REGIME_RUNS == 8
    for method, found in measured.items():
        rows = found["regimes"][QUOTED_BY]
        assert set(rows) == {"bernoulli", "fixed", "learned"}
        assert sum(r["n"] for r in rows.values()) == found["n"]            # the regimes partition the split
        whole = {k: v for k, v in found.items() if k != "regimes"}
        for value, row in rows.items():
            got = fc.benchmark_accuracy(method, "mlp", {"arch": "mlp", QUOTED_BY: value, "schedule": "constant"})
            assert got == (row | {"regime": value} if row["n"] >= MIN_REGIME_RUNS else whole)
    row = measured["adjusted"]["regimes"]["likelihood"]["learned"]
    assert row["n"] >= MIN_REGIME_RUNS
    said = fc.evidence("adjusted", "mlp", {"likelihood": "learned"})
    assert said.startswith(f"within ±1 on {100 * row['within1']:.0f} %, exact on {100 * row['exact']:.0f} %")
    assert f"of the {row['n']} benchmark runs with a learned η_dec" in said
    assert comparable("adjusted", "mlp", {"likelihood": "learned"}) == (
        f"within ±1 on {100 * row['within1']:.0f} % of the {row['n']} benchmark runs with a learned η_dec")
    # a value the benchmark has no row for: the whole split
    assert fc.benchmark_accuracy("adjusted", "mlp", {"likelihood": "other"}) == fc.benchmark_accuracy("adjusted")
    assert fc.benchmark_accuracy("adjusted", "linear", {"likelihood": "learned"}) is None
