"""What the shipped forecasts measured on the benchmark (docs/forecast.md): the evidence beside a forecast.

The numbers are the reporting split's (configurations never used to tune anything) of
``bench/forecast/results/accuracy.json``, written by ``bench/forecast/score.py``; a test keeps the two equal.
They describe the benchmark's nonlinear configurations, not every run: docs/forecast.md breaks them down by
regime.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MEASURED", "annotate", "benchmark_accuracy", "evidence"]

#: Per method ``collapsekit forecast`` returns: rows (runs) and configurations scored, mean absolute error of the
#: count, fractions exact and within ±1, interval coverage, mean interval width, mean cost fraction.
MEASURED: dict[str, dict[str, float]] = {
    "closed_form": {"n": 76, "mae": 2.0395, "exact": 0.3289, "within1": 0.5395, "coverage": 0.8553, "width": 5.6842, "cost": 0.0, "configurations": 38},
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


def annotate(record: dict[str, Any], arch: str) -> dict[str, Any]:
    """A forecast's JSON record with ``benchmark`` (the measured accuracy, or None) added."""
    return record | {"benchmark": benchmark_accuracy(record["method"], arch)}
