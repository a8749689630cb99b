"""What the closed forms and the early-training forecast measured on the benchmark (docs/forecast.md): the
evidence printed beside a nonlinear model's predicted count — by ``collapsekit forecast``, ``predict --config``
and every report's theory column. It lives below the forecast package so that the reports (:mod:`collapsekit.viz`)
can read it.

The numbers are the reporting split's (configurations never used to tune anything) of
``bench/forecast/results/accuracy.json``, written by ``bench/forecast/score.py``; a test keeps the two equal.
They describe the benchmark's nonlinear configurations, not every run: docs/forecast.md breaks them down by
regime. The early-training method's constants tuned on the tuning split (``bench/forecast/results/tuned.json``)
are here too; the closed forms' conformal interval half-widths are in
:mod:`collapsekit.diagnostics.forecast_intervals`.
"""

from __future__ import annotations

__all__ = ["EARLY_DEFAULTS", "MEASURED", "benchmark_accuracy", "comparable", "evidence"]

#: The early-training method's constants tuned on the tuning split: those of the trajectory-alone variant (w = 1),
#: the forecast a user who spends a budget gets (bench/forecast/results/tuned.json, ``early_only``).
EARLY_DEFAULTS: dict[str, float] = {"gamma": 1.0, "weight": 1.0, "width": 30.0}

#: Per method: rows (runs) and configurations scored, mean absolute error of the count, fractions exact and
#: within ±1, interval coverage, mean interval width, mean cost fraction. ``adjusted`` (``--budget 0``) and
#: ``early`` are what ``collapsekit forecast`` returns; ``posthoc`` is the closed form of ``diagnose``'s theory
#: column; ``closed_form`` and ``shifted`` are the package's other methods.
MEASURED: dict[str, dict[str, float]] = {
    "closed_form": {"n": 76, "mae": 2.0395, "exact": 0.3289, "within1": 0.5395, "coverage": 0.8553, "width": 5.6842, "cost": 0.0, "configurations": 38},
    "posthoc": {"n": 76, "mae": 2.0395, "exact": 0.25, "within1": 0.4868, "coverage": 0.9079, "width": 5.7895, "cost": 0.0, "configurations": 38},
    "adjusted": {"n": 76, "mae": 1.8026, "exact": 0.3421, "within1": 0.5395, "coverage": 0.9211, "width": 5.1579, "cost": 0.0, "configurations": 38},
    "shifted": {"n": 76, "mae": 2.3816, "exact": 0.2895, "within1": 0.4737, "coverage": 0.8289, "width": 5.1842, "cost": 0.0, "configurations": 38},
    "early": {"n": 76, "mae": 1.7105, "exact": 0.4211, "within1": 0.6053, "coverage": 0.7763, "width": 4.2632, "cost": 0.0395, "configurations": 38},
}


def benchmark_accuracy(method: str, arch: str = "mlp") -> dict[str, float] | None:
    """The benchmark's measured accuracy of ``method`` (None where it has none: the linear model's closed form is
    exact, and methods that do not ship were measured in docs/forecast.md only)."""
    if arch == "linear":
        return None
    found = MEASURED.get(method)
    return None if found is None else dict(found)


def evidence(method: str, arch: str = "mlp") -> str | None:
    """A clause: how often this method was right on the benchmark's reporting split (None where not measured)."""
    found = benchmark_accuracy(method, arch)
    if found is None:
        return None
    return (f"within ±1 on {100 * found['within1']:.0f} %, exact on {100 * found['exact']:.0f} % and inside its "
            f"interval on {100 * found['coverage']:.0f} % of the benchmark's reporting split ({int(found['n'])} runs "
            f"of {int(found['configurations'])} nonlinear configurations, docs/forecast.md)")


def comparable(method: str, arch: str = "mlp") -> str | None:
    """The short clause of a report's theory column, e.g. "within ±1 on 49 % of comparable benchmark runs"."""
    found = benchmark_accuracy(method, arch)
    return None if found is None else f"within ±1 on {100 * found['within1']:.0f} % of comparable benchmark runs"
