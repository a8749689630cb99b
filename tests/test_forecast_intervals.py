"""Split-conformal intervals: the coverage they state is the coverage they have, under exchangeability.

Calibrated on synthetic residuals, the interval covers a fresh draw at the stated rate (at least the level, at
most the level + 1/(m + 1)); per-configuration scores are the largest residual over seeds; regimes with too few
configurations fall back to the pooled quantile; the closed forms' intervals are the forecast ± that quantile.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from collapsekit import forecast as fc
from collapsekit.diagnostics.forecast_intervals import (CONFORMAL, calibrate, conformal_interval, conformal_quantile, half_width,
                                            regime_of)
from collapsekit.theory import Moments, predict_vae
from collapsekit.training.config import RunConfig


@pytest.mark.parametrize("m", [19, 50, 104])
def test_a_conformal_interval_covers_at_the_stated_rate(m):
    # 20,000 independent calibrations: calibration scores and one fresh score, exchangeable (continuous heavy tail)
    rng = np.random.default_rng(m)
    trials = 20_000
    scores = np.abs(rng.standard_t(3, size=(trials, m + 1)))
    k = math.ceil((m + 1) * 0.9)
    q = np.sort(scores[:, :m], axis=1)[:, k - 1]
    coverage = float(np.mean(scores[:, m] <= q))
    assert conformal_quantile(scores[0, :m], 0.9) == pytest.approx(q[0])
    # exact theory: coverage = k / (m + 1) ∈ [0.9, 0.9 + 1/(m + 1)]; 4 binomial standard errors of slack
    se = math.sqrt(0.9 * 0.1 / trials)
    assert 0.9 - 4 * se <= coverage <= k / (m + 1) + 4 * se


def test_integer_residuals_with_ties_cover_at_least_the_level():
    rng = np.random.default_rng(1)
    trials, m = 20_000, 52
    scores = rng.poisson(1.5, size=(trials, m + 1))
    k = math.ceil((m + 1) * 0.9)
    q = np.sort(scores[:, :m], axis=1)[:, k - 1]
    assert float(np.mean(scores[:, m] <= q)) >= 0.9


def test_too_few_scores_give_an_unbounded_quantile_and_the_whole_range():
    assert conformal_quantile([1, 2, 3], 0.9) == math.inf          # ⌈4 · 0.9⌉ = 4 > 3
    assert conformal_quantile(range(1, 10), 0.9) == 9               # ⌈10 · 0.9⌉ = 9
    assert conformal_interval(3, 8, math.inf) == (0, 8)
    assert conformal_interval(3, 8, 2.0) == (1, 5) and conformal_interval(7, 8, 2.0) == (5, 8)
    with pytest.raises(ValueError):
        conformal_quantile([1.0], 1.0)


def test_calibration_scores_each_configuration_by_its_worst_seed_and_pools_small_regimes():
    residuals = {f"c{i}": [i % 3, -(i % 5)] for i in range(40)}                  # worst seed: max(i%3, i%5)
    regimes = {f"c{i}": {"likelihood": "fixed" if i < 30 else "learned"} for i in range(40)}
    got = calibrate(residuals, regimes, by="likelihood", min_configurations=20)
    worst = [max(i % 3, i % 5) for i in range(40)]
    assert got["pooled"] == conformal_quantile(worst)
    assert got["regimes"] == {"fixed": conformal_quantile(worst[:30])}          # "learned" has 10 < 20
    assert half_width(got, {"likelihood": "learned"}) == got["pooled"]
    assert half_width(got, {"likelihood": "fixed"}) == got["regimes"]["fixed"]


def _mlp(**model) -> RunConfig:
    return RunConfig.parse({"model": {"kind": "vae", "arch": "mlp", "latent_dims": [4], **model},
                            "objective": {"beta": 1.5}, "train": {"epochs": 5, "batch_size": 1000}})


def test_the_closed_forms_interval_is_the_forecast_plus_minus_the_calibrated_quantile():
    x = np.random.default_rng(0).standard_normal((4000, 6)) * np.sqrt([4.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    config = _mlp()
    got = fc.closed_form(config, (x, None))
    q = half_width(CONFORMAL["closed_form"], regime_of(config))
    assert got.interval == conformal_interval(got.n_active, 4, q)
    linear = RunConfig.parse({"model": {"kind": "vae", "arch": "linear", "latent_dims": [4]},
                              "objective": {"beta": 1.5}})
    exact = fc.closed_form(linear, (x, None))
    assert exact.interval == (exact.n_active, exact.n_active)                     # exact at the optimum


def test_the_shifted_closed_form_is_the_closed_form_at_the_regimes_beta_factor():
    x = np.random.default_rng(0).standard_normal((4000, 6)) * np.sqrt([4.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    config = _mlp()
    assert regime_of(config) == {"arch": "mlp", "likelihood": "fixed", "schedule": "constant", "kind": "vae"}
    shift = {"pooled": 1.0, "by": "schedule", "regimes": {"constant": 0.25}}
    got = fc.shifted(config, (x, None), shift=shift, width=1.0)
    want = predict_vae(Moments.from_data(x), latent_dim=4, beta=1.5 * 0.25)
    assert got.n_active == want.n_active_headline and got.method == "shifted"
    np.testing.assert_allclose(got.kl_per_rank, np.sort(want.kl_per_dim)[::-1], rtol=1e-8, atol=1e-12)
    assert fc.shifted(config, (x, None), shift=shift | {"by": "likelihood"}, width=1.0).n_active == \
        predict_vae(Moments.from_data(x), latent_dim=4, beta=1.5).n_active_headline    # no such regime: pooled


def test_a_learned_eta_dec_ends_where_adams_steps_can_take_it(tmp_path):
    # Adam moves log η_dec by about lr per step: from η₀ = 1, 8 steps at lr 0.03 reach e^-0.24, far above the
    # linear optimum's fixed point on standardised digits (η² ≈ 1 / latent share): the run ends at the bound
    from collapsekit.forecast.closed_form import eta_reach
    from collapsekit.models.likelihoods import decoder_eta
    from collapsekit.training.trainer import train

    config = RunConfig.parse({"data": {"spec": "digits"}, "objective": {"beta": 1.0},
                              "model": {"kind": "vae", "arch": "mlp", "latent_dims": [4], "hidden": [16],
                                        "learn_eta_dec": True, "eta_dec": 1.0},
                              "optim": {"lr": 0.03},
                              "train": {"epochs": 2, "batch_size": 450, "progress": False, "monitor": False}})
    learned = decoder_eta(train(config, tmp_path / "run").model)
    reach = eta_reach(config, 1797)                                    # ⌈1797 / 450⌉ = 4 steps per epoch
    assert reach == pytest.approx(math.exp(-0.03 * 8))
    assert learned is not None and learned == pytest.approx(reach, rel=0.03)


def _digits(beta: float = 1.0, arch: str = "mlp") -> RunConfig:
    return RunConfig.parse({"data": {"spec": "digits"}, "objective": {"beta": beta},
                            "model": {"kind": "vae", "arch": arch, "latent_dims": [8]}})


@pytest.mark.parametrize("keep", [2, 5])
def test_the_recommended_beta_is_the_largest_scanned_one_that_keeps_k(keep):
    from collapsekit.forecast.early import base
    from collapsekit.forecast.recommend import MULTIPLIERS
    from collapsekit.training.builders import load_training_data

    config = _digits(beta=1.0)
    data = load_training_data(config)
    rec = fc.recommend_beta(config, keep, data=data)
    at = lambda beta: base(_digits(beta=beta), data)  # noqa: E731
    assert at(rec.beta).n_active >= keep > at(rec.beta * MULTIPLIERS[1] / MULTIPLIERS[0]).n_active
    assert rec.forecast == at(rec.beta).n_active and rec.interval == at(rec.beta).interval
    if rec.beta_safe is not None:                               # the interval's lower end keeps K there, not above
        assert at(rec.beta_safe).interval[0] >= keep > at(rec.beta_safe * MULTIPLIERS[1] / MULTIPLIERS[0]).interval[0]
        assert rec.beta_safe <= rec.beta
    from collapsekit.diagnostics.forecast_intervals import regime_of

    assert rec.benchmark == fc.benchmark_accuracy(rec.method, "mlp", regime_of(config)) and rec.cost_fraction == 0


def test_recommend_beta_refuses_an_impossible_keep():
    from collapsekit.errors import ParameterError

    with pytest.raises(ParameterError, match="between 1 and the latent size"):
        fc.recommend_beta(_digits(), 9)
