"""What the shipped forecasts measured on the benchmark (docs/forecast.md): the evidence beside a forecast.

The numbers and the clauses that quote them live in :mod:`collapsekit.diagnostics.forecast_accuracy` (one home,
below the reports that print them too); this module adds :func:`annotate` for a forecast's JSON record.
"""

from __future__ import annotations

from typing import Any

from collapsekit.diagnostics.forecast_intervals import regime_of
from collapsekit.diagnostics.forecast_accuracy import MEASURED, benchmark_accuracy, comparable, evidence

__all__ = ["MEASURED", "annotate", "benchmark_accuracy", "comparable", "evidence"]


def annotate(record: dict[str, Any], config: Any) -> dict[str, Any]:
    """A forecast's JSON record with ``benchmark`` (the measured accuracy on the configuration's regime's runs
    where there are enough of them, :func:`benchmark_accuracy`; or None) added."""
    return record | {"benchmark": benchmark_accuracy(record["method"], config.model.arch, regime_of(config))}
