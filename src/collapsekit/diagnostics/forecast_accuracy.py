"""What the closed forms and the early-training forecast measured on the benchmark (docs/forecast.md): the
evidence printed beside a nonlinear model's predicted count — by ``collapsekit forecast``, ``predict --config``
and every report's theory column. It lives below the forecast package so that the reports (:mod:`collapsekit.viz`)
can read it.

The numbers are the reporting split's (configurations never used to tune anything): ``forecast_accuracy.json`` beside
this module (package data, its one home), written by ``bench/forecast/score.py``; a test recomputes them from the
scorer's per-run forecasts (``bench/forecast/results/forecasts.csv``).
They describe the benchmark's nonlinear configurations, not every run: a configuration's clause quotes the row of
its likelihood (:data:`QUOTED_BY`) where that has at least :data:`MIN_REGIME_RUNS` runs, else the whole split.

Every constant tuned on the tuning split is :data:`TUNED`, read from ``forecast_tuned.json`` beside this module
(package data written by ``bench/forecast/score.py``, their one home); the modules that use them name them:
:data:`EARLY_DEFAULTS` here, the conformal half-widths (:data:`~.forecast_intervals.CONFORMAL`), the adjusted β
factor and the shifted factors (:mod:`collapsekit.forecast.closed_form`), the early method's base
(:mod:`collapsekit.forecast.early`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

__all__ = ["EARLY_DEFAULTS", "MEASURED", "TUNED", "MIN_REGIME_RUNS", "QUOTED_BY", "benchmark_accuracy", "comparable",
           "evidence", "quote"]

#: The regime field whose reporting-split row is quoted for a configuration, fixed before looking at the rows:
#: the likelihood, the field the tuning split chose for the adjusted closed form's conformal quantile and the
#: shifted β factor (:data:`TUNED`).
QUOTED_BY = "likelihood"
#: Fewest reporting-split runs a regime's row needs to be quoted; with fewer the whole split's numbers are.
MIN_REGIME_RUNS = 8
#: How a clause names the runs of each quoted regime value.
REGIME_WORDS = {"fixed": "with a fixed η_dec", "learned": "with a learned η_dec",
                "bernoulli": "with a Bernoulli likelihood"}


def _package_json(name: str) -> dict[str, Any]:
    return json.loads(resources.files("collapsekit.diagnostics").joinpath(name).read_text(encoding="utf-8"))


#: Every method's constants tuned on the benchmark's tuning split (bench/forecast/score.py's ``tune``), by the
#: benchmark's method names (``early_only`` is the early forecast the package runs).
TUNED: dict[str, dict[str, Any]] = _package_json("forecast_tuned.json")

#: The early-training method's constants tuned on the tuning split: those of the trajectory-alone variant (w = 1),
#: the forecast a user who spends a budget gets (:data:`TUNED` ``["early_only"]``). Its interval is
#: split-conformal: :data:`collapsekit.diagnostics.forecast_intervals.CONFORMAL` ``["early"]``.
EARLY_DEFAULTS: dict[str, float] = {k: float(TUNED["early_only"][k]) for k in ("gamma", "weight")}

#: Per method: rows (runs) and configurations scored, mean absolute error of the count, fractions exact and
#: within ±1, interval coverage, mean interval width, mean cost fraction; under ``regimes``, the same per value
#: of each regime field (``arch``, ``likelihood``, ``schedule``, as ``regime_of`` names them). ``adjusted``
#: (``--budget 0``) and ``early`` are what ``collapsekit forecast`` returns; ``posthoc`` is the closed form of ``diagnose``'s theory
#: column; ``closed_form`` and ``shifted`` are the package's other methods.
MEASURED: dict[str, dict[str, Any]] = _package_json("forecast_accuracy.json")


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
