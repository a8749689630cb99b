"""What the closed forms and the early-training forecast measured on the benchmark (docs/forecast.md): the
evidence printed beside a nonlinear model's predicted count — by ``collapsekit forecast``, ``predict --config``
and every report's theory column. It lives below the forecast package so that the reports (:mod:`collapsekit.viz`)
can read it.

The numbers are the reporting split's (configurations never used to tune anything) of
``bench/forecast/results/accuracy.json``, written by ``bench/forecast/score.py``; a test keeps the two equal.
They describe the benchmark's nonlinear configurations, not every run: a configuration's clause quotes the row of
its likelihood (:data:`QUOTED_BY`) where that has at least :data:`MIN_REGIME_RUNS` runs, else the whole split. The
early-training method's constants tuned on the tuning split (``bench/forecast/results/tuned.json``) are here too;
the closed forms' conformal interval half-widths are in :mod:`collapsekit.diagnostics.forecast_intervals`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["EARLY_DEFAULTS", "MEASURED", "MIN_REGIME_RUNS", "QUOTED_BY", "benchmark_accuracy", "comparable",
           "evidence", "quote"]

#: The regime field whose reporting-split row is quoted for a configuration, fixed before looking at the rows:
#: the likelihood, the field the tuning split chose for the adjusted closed form's conformal quantile and the
#: shifted β factor (bench/forecast/results/tuned.json).
QUOTED_BY = "likelihood"
#: Fewest reporting-split runs a regime's row needs to be quoted; with fewer the whole split's numbers are.
MIN_REGIME_RUNS = 8
#: How a clause names the runs of each quoted regime value.
REGIME_WORDS = {"fixed": "with a fixed η_dec", "learned": "with a learned η_dec",
                "bernoulli": "with a Bernoulli likelihood"}

#: The early-training method's constants tuned on the tuning split: those of the trajectory-alone variant (w = 1),
#: the forecast a user who spends a budget gets (bench/forecast/results/tuned.json, ``early_only``). Its interval is
#: split-conformal: :data:`collapsekit.diagnostics.forecast_intervals.CONFORMAL` ``["early"]``.
EARLY_DEFAULTS: dict[str, float] = {"gamma": 1.0, "weight": 1.0}

#: Per method: rows (runs) and configurations scored, mean absolute error of the count, fractions exact and
#: within ±1, interval coverage, mean interval width, mean cost fraction; under ``regimes``, the same per value
#: of each regime field (``arch``, ``likelihood``, ``schedule``, as ``regime_of`` names them). ``adjusted``
#: (``--budget 0``) and ``early`` are what ``collapsekit forecast`` returns; ``posthoc`` is the closed form of ``diagnose``'s theory
#: column; ``closed_form`` and ``shifted`` are the package's other methods.
MEASURED: dict[str, dict[str, Any]] = {
    "closed_form": {"n": 76, "mae": 2.0395, "exact": 0.3289, "within1": 0.5395, "coverage": 0.8553, "width": 5.6842, "cost": 0.0, "configurations": 38, "regimes": {
        "arch": {
            "conv": {"n": 8, "mae": 3.625, "exact": 0.0, "within1": 0.0, "coverage": 0.75, "width": 6.5, "cost": 0.0, "configurations": 4},
            "mlp": {"n": 68, "mae": 1.8529, "exact": 0.3676, "within1": 0.6029, "coverage": 0.8676, "width": 5.5882, "cost": 0.0, "configurations": 34},
        },
        "likelihood": {
            "bernoulli": {"n": 8, "mae": 2.875, "exact": 0.0, "within1": 0.5, "coverage": 0.75, "width": 5.0, "cost": 0.0, "configurations": 4},
            "fixed": {"n": 38, "mae": 1.6842, "exact": 0.2368, "within1": 0.5526, "coverage": 0.9737, "width": 6.4737, "cost": 0.0, "configurations": 19},
            "learned": {"n": 30, "mae": 2.2667, "exact": 0.5333, "within1": 0.5333, "coverage": 0.7333, "width": 4.8667, "cost": 0.0, "configurations": 15},
        },
        "schedule": {
            "constant": {"n": 28, "mae": 1.6071, "exact": 0.3571, "within1": 0.6071, "coverage": 0.9286, "width": 6.0714, "cost": 0.0, "configurations": 14},
            "cyclical": {"n": 26, "mae": 2.2692, "exact": 0.2692, "within1": 0.5385, "coverage": 0.8462, "width": 5.5385, "cost": 0.0, "configurations": 13},
            "free_bits": {"n": 6, "mae": 4.0, "exact": 0.0, "within1": 0.0, "coverage": 0.6667, "width": 6.0, "cost": 0.0, "configurations": 3},
            "linear": {"n": 16, "mae": 1.6875, "exact": 0.5, "within1": 0.625, "coverage": 0.8125, "width": 5.125, "cost": 0.0, "configurations": 8},
        },
    }},
    "posthoc": {"n": 76, "mae": 2.0395, "exact": 0.25, "within1": 0.4868, "coverage": 0.9079, "width": 5.7895, "cost": 0.0, "configurations": 38, "regimes": {
        "arch": {
            "conv": {"n": 8, "mae": 3.625, "exact": 0.0, "within1": 0.0, "coverage": 0.75, "width": 6.5, "cost": 0.0, "configurations": 4},
            "mlp": {"n": 68, "mae": 1.8529, "exact": 0.2794, "within1": 0.5441, "coverage": 0.9265, "width": 5.7059, "cost": 0.0, "configurations": 34},
        },
        "likelihood": {
            "bernoulli": {"n": 8, "mae": 2.875, "exact": 0.0, "within1": 0.5, "coverage": 0.75, "width": 5.0, "cost": 0.0, "configurations": 4},
            "fixed": {"n": 38, "mae": 1.6842, "exact": 0.2368, "within1": 0.5526, "coverage": 0.9737, "width": 6.4737, "cost": 0.0, "configurations": 19},
            "learned": {"n": 30, "mae": 2.2667, "exact": 0.3333, "within1": 0.4, "coverage": 0.8667, "width": 5.1333, "cost": 0.0, "configurations": 15},
        },
        "schedule": {
            "constant": {"n": 28, "mae": 1.8214, "exact": 0.2857, "within1": 0.5357, "coverage": 0.9286, "width": 6.0714, "cost": 0.0, "configurations": 14},
            "cyclical": {"n": 26, "mae": 1.8846, "exact": 0.1923, "within1": 0.5385, "coverage": 1.0, "width": 5.9231, "cost": 0.0, "configurations": 13},
            "free_bits": {"n": 6, "mae": 3.6667, "exact": 0.0, "within1": 0.0, "coverage": 0.6667, "width": 5.6667, "cost": 0.0, "configurations": 3},
            "linear": {"n": 16, "mae": 2.0625, "exact": 0.375, "within1": 0.5, "coverage": 0.8125, "width": 5.125, "cost": 0.0, "configurations": 8},
        },
    }},
    "adjusted": {"n": 76, "mae": 1.8026, "exact": 0.3421, "within1": 0.5395, "coverage": 0.9211, "width": 5.1579, "cost": 0.0, "configurations": 38, "regimes": {
        "arch": {
            "conv": {"n": 8, "mae": 4.125, "exact": 0.0, "within1": 0.0, "coverage": 0.75, "width": 6.5, "cost": 0.0, "configurations": 4},
            "mlp": {"n": 68, "mae": 1.5294, "exact": 0.3824, "within1": 0.6029, "coverage": 0.9412, "width": 5.0, "cost": 0.0, "configurations": 34},
        },
        "likelihood": {
            "bernoulli": {"n": 8, "mae": 3.375, "exact": 0.0, "within1": 0.125, "coverage": 0.75, "width": 5.75, "cost": 0.0, "configurations": 4},
            "fixed": {"n": 38, "mae": 1.6842, "exact": 0.3421, "within1": 0.5526, "coverage": 0.9474, "width": 6.0, "cost": 0.0, "configurations": 19},
            "learned": {"n": 30, "mae": 1.5333, "exact": 0.4333, "within1": 0.6333, "coverage": 0.9333, "width": 3.9333, "cost": 0.0, "configurations": 15},
        },
        "schedule": {
            "constant": {"n": 28, "mae": 1.8929, "exact": 0.2857, "within1": 0.5, "coverage": 0.9286, "width": 5.7143, "cost": 0.0, "configurations": 14},
            "cyclical": {"n": 26, "mae": 1.1154, "exact": 0.4231, "within1": 0.7692, "coverage": 1.0, "width": 4.9231, "cost": 0.0, "configurations": 13},
            "free_bits": {"n": 6, "mae": 4.0, "exact": 0.0, "within1": 0.0, "coverage": 0.6667, "width": 4.6667, "cost": 0.0, "configurations": 3},
            "linear": {"n": 16, "mae": 1.9375, "exact": 0.4375, "within1": 0.4375, "coverage": 0.875, "width": 4.75, "cost": 0.0, "configurations": 8},
        },
    }},
    "shifted": {"n": 76, "mae": 2.3816, "exact": 0.2895, "within1": 0.4737, "coverage": 0.8289, "width": 5.1842, "cost": 0.0, "configurations": 38, "regimes": {
        "arch": {
            "conv": {"n": 8, "mae": 5.625, "exact": 0.0, "within1": 0.125, "coverage": 0.375, "width": 6.0, "cost": 0.0, "configurations": 4},
            "mlp": {"n": 68, "mae": 2.0, "exact": 0.3235, "within1": 0.5147, "coverage": 0.8824, "width": 5.0882, "cost": 0.0, "configurations": 34},
        },
        "likelihood": {
            "bernoulli": {"n": 8, "mae": 2.625, "exact": 0.25, "within1": 0.5, "coverage": 0.875, "width": 5.0, "cost": 0.0, "configurations": 4},
            "fixed": {"n": 38, "mae": 2.3684, "exact": 0.2105, "within1": 0.4737, "coverage": 0.8421, "width": 5.4737, "cost": 0.0, "configurations": 19},
            "learned": {"n": 30, "mae": 2.3333, "exact": 0.4, "within1": 0.4667, "coverage": 0.8, "width": 4.8667, "cost": 0.0, "configurations": 15},
        },
        "schedule": {
            "constant": {"n": 28, "mae": 2.8214, "exact": 0.25, "within1": 0.4286, "coverage": 0.75, "width": 5.0, "cost": 0.0, "configurations": 14},
            "cyclical": {"n": 26, "mae": 1.8846, "exact": 0.4231, "within1": 0.5385, "coverage": 0.9231, "width": 5.1538, "cost": 0.0, "configurations": 13},
            "free_bits": {"n": 6, "mae": 4.0, "exact": 0.0, "within1": 0.0, "coverage": 0.6667, "width": 5.3333, "cost": 0.0, "configurations": 3},
            "linear": {"n": 16, "mae": 1.8125, "exact": 0.25, "within1": 0.625, "coverage": 0.875, "width": 5.5, "cost": 0.0, "configurations": 8},
        },
    }},
    "early": {"n": 76, "mae": 1.7105, "exact": 0.4211, "within1": 0.6053, "coverage": 0.9737, "width": 6.0526, "cost": 0.0395, "configurations": 38, "regimes": {
        "arch": {
            "conv": {"n": 8, "mae": 1.625, "exact": 0.625, "within1": 0.625, "coverage": 1.0, "width": 7.0, "cost": 0.05, "configurations": 4},
            "mlp": {"n": 68, "mae": 1.7206, "exact": 0.3971, "within1": 0.6029, "coverage": 0.9706, "width": 5.9412, "cost": 0.0382, "configurations": 34},
        },
        "likelihood": {
            "bernoulli": {"n": 8, "mae": 4.125, "exact": 0.0, "within1": 0.0, "coverage": 0.75, "width": 6.0, "cost": 0.025, "configurations": 4},
            "fixed": {"n": 38, "mae": 1.8158, "exact": 0.3947, "within1": 0.6053, "coverage": 1.0, "width": 7.0526, "cost": 0.0526, "configurations": 19},
            "learned": {"n": 30, "mae": 0.9333, "exact": 0.5667, "within1": 0.7667, "coverage": 1.0, "width": 4.8, "cost": 0.0267, "configurations": 15},
        },
        "schedule": {
            "constant": {"n": 28, "mae": 2.2143, "exact": 0.3571, "within1": 0.5357, "coverage": 1.0, "width": 7.4286, "cost": 0.0857, "configurations": 14},
            "cyclical": {"n": 26, "mae": 1.1154, "exact": 0.4231, "within1": 0.7692, "coverage": 1.0, "width": 4.9231, "cost": 0.0, "configurations": 13},
            "free_bits": {"n": 6, "mae": 1.3333, "exact": 0.6667, "within1": 0.6667, "coverage": 1.0, "width": 8.0, "cost": 0.1, "configurations": 3},
            "linear": {"n": 16, "mae": 1.9375, "exact": 0.4375, "within1": 0.4375, "coverage": 0.875, "width": 4.75, "cost": 0.0, "configurations": 8},
        },
    }},
}


def benchmark_accuracy(method: str, arch: str = "mlp",
                       regime: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The benchmark's measured accuracy of ``method`` (None where it has none: the linear model's closed form is
    exact, and methods that do not ship were measured in docs/forecast.md only).

    With ``regime`` (:func:`~collapsekit.diagnostics.forecast_intervals.regime_of`), the reporting split's row of
    the configuration's :data:`QUOTED_BY` value where it has at least :data:`MIN_REGIME_RUNS` runs, with
    ``regime`` (that value) added; otherwise, and without ``regime``, the whole split's. Never the per-regime
    table itself."""
    if arch == "linear":
        return None
    found = MEASURED.get(method)
    if found is None:
        return None
    value = None if regime is None else regime.get(QUOTED_BY)
    row = found.get("regimes", {}).get(QUOTED_BY, {}).get(value) if value is not None else None
    if row is not None and row["n"] >= MIN_REGIME_RUNS:
        return dict(row) | {"regime": value}
    return {k: v for k, v in found.items() if k != "regimes"}


def _runs(found: Mapping[str, Any]) -> str:
    """Which benchmark runs a measured row describes, e.g. "the 30 benchmark runs with a learned η_dec"."""
    if found.get("regime") is not None:
        return f"the {int(found['n'])} benchmark runs {REGIME_WORDS.get(found['regime'], found['regime'])}"
    return "comparable benchmark runs"


def evidence(method: str, arch: str = "mlp", regime: Mapping[str, str] | None = None) -> str | None:
    """A clause: how often this method was right on the benchmark's reporting split — on the configuration's
    regime's runs where ``regime`` is given and that row is large enough (None where not measured)."""
    found = benchmark_accuracy(method, arch, regime)
    if found is None:
        return None
    said = (f"within ±1 on {100 * found['within1']:.0f} %, exact on {100 * found['exact']:.0f} % and inside its "
            f"interval on {100 * found['coverage']:.0f} % of ")
    if found.get("regime") is not None:
        return said + (f"{_runs(found)} (reporting split, {int(found['configurations'])} configurations, "
                       "docs/forecast.md)")
    return said + (f"the benchmark's reporting split ({int(found['n'])} runs of {int(found['configurations'])} "
                   f"nonlinear configurations, docs/forecast.md)")


def quote(found: Mapping[str, Any] | None) -> str | None:
    """The short clause for a :func:`benchmark_accuracy` row, e.g. "within ±1 on 63 % of the 30 benchmark runs with
    a learned η_dec" (a regime's row) or "within ±1 on 49 % of comparable benchmark runs" (the whole split)."""
    return None if found is None else f"within ±1 on {100 * found['within1']:.0f} % of {_runs(found)}"


def comparable(method: str, arch: str = "mlp", regime: Mapping[str, str] | None = None) -> str | None:
    """The short clause of a report's theory column (:func:`quote` of the configuration's row)."""
    return quote(benchmark_accuracy(method, arch, regime))
