"""Every report's theory column for a nonlinear model shows the closed form's interval and its measured accuracy
on the benchmark (issue 11 §3), not a bare number; a linear model's exact prediction stays as it was."""

from __future__ import annotations

import numpy as np
import pytest

from collapsekit.activity import count_active
from collapsekit.diagnostics.forecast_accuracy import MEASURED
from collapsekit.diagnostics.forecast_intervals import CONFORMAL
from collapsekit.diagnostics.report import CollapseReport
from collapsekit.diagnostics.theory_compare import TheorySetting, compare_with_theory
from collapsekit.theory import Moments, predict_vae
from collapsekit.training.config import RunConfig
from collapsekit.viz.report_text import theory_line
from report_helpers import make_level

# θ = 9, 4, 1, 0.25 against βη_dec² = 2: two dimensions kept.
EIGS = [9.0, 4.0, 1.0, 0.25, 0.04, 0.01]


def compared(linear: bool) -> CollapseReport:
    moments = Moments(xx=np.diag(EIGS))
    report = CollapseReport(levels=[make_level("z", [0.8, 0.3, 0.001, 0.0])], n_examples=2000)
    setting = TheorySetting(kind="vae", linear=linear, latent_dims=[4], beta=[2.0])
    return compare_with_theory(report, setting, moments)


def test_a_nonlinear_models_theory_has_the_interval_and_the_benchmarks_accuracy():
    theory = compared(linear=False).levels[0].theory
    n = count_active(predict_vae(Moments(xx=np.diag(EIGS)), latent_dim=4, beta=2.0).kl_per_dim)
    q = int(CONFORMAL["posthoc"]["pooled"])          # the post-hoc closed form's conformal half-width (pooled)
    expected = [max(0, n - q), min(4, n + q)]
    assert n == 2 and theory.n_active_predicted == 2 and theory.interval == expected and expected[0] < 2 < expected[1]
    whole = {k: v for k, v in MEASURED["posthoc"].items() if k != "regimes"}
    assert theory.benchmark == whole                  # a setting without a regime: the whole reporting split
    line = theory_line(compared(linear=False).levels[0])
    assert (f"2 active dimensions predicted (interval {expected[0]}–{expected[1]}; within ±1 on "
            f"{100 * whole['within1']:.0f} % of comparable benchmark runs), 2 measured") in line


@pytest.mark.parametrize("learned", [False, True])
def test_a_configurations_theory_quotes_its_likelihoods_benchmark_row(learned):
    config = RunConfig.parse({"model": {"arch": "mlp", "latent_dims": [4], "learn_eta_dec": learned}})
    setting = TheorySetting.from_config(config)
    assert setting.regime["likelihood"] == ("learned" if learned else "fixed")
    report = CollapseReport(levels=[make_level("z", [0.8, 0.3, 0.001, 0.0])], n_examples=2000)
    theory = compare_with_theory(report, setting, Moments(xx=np.diag(EIGS))).levels[0].theory
    row = MEASURED["posthoc"]["regimes"]["likelihood"]["learned" if learned else "fixed"]
    assert row["n"] >= 8 and theory.benchmark == row | {"regime": "learned" if learned else "fixed"}
    words = "a learned η_dec" if learned else "a fixed η_dec"
    assert (f"within ±1 on {100 * row['within1']:.0f} % of the {row['n']} benchmark runs with {words})"
            in theory_line(report.levels[0]))


def test_a_linear_models_exact_theory_is_unchanged():
    theory = compared(linear=True).levels[0].theory
    assert theory.exact and theory.interval is None and theory.benchmark is None and theory.qualifier == ""
    assert "2 active dimensions predicted, 2 measured — agrees" in theory_line(compared(linear=True).levels[0])


def test_the_interval_and_accuracy_survive_the_reports_json():
    report = compared(linear=False)
    again = CollapseReport.from_dict(report.to_dict())
    assert again.levels[0].theory.interval == report.levels[0].theory.interval
    assert again.levels[0].theory.benchmark == pytest.approx({k: v for k, v in MEASURED["posthoc"].items()
                                                              if k != "regimes"})
