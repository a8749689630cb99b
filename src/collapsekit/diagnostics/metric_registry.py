"""Metrics added to every diagnosis: one signature for all of them, and a registry the reports read.

Following disentanglement_lib's idea (one signature per metric, so that adding one is one function
and one registration), a metric here is a function of one latent level's posterior statistics::

    def compute(stats: LevelStats) -> float | Sequence[float]

(``stats.mean``, ``stats.var``, ``stats.sample`` and ``stats.kl`` are (N, d) arrays, nats for the
KL; see :class:`~collapsekit.diagnostics.posterior.LevelStats`), returning one number for the level
or one per dimension. Register it with :func:`register_metric`; from then on
:func:`~collapsekit.diagnostics.measure_level` computes it for every level (``LevelReport.metrics``,
``report.json``), and the Markdown, HTML and terminal reports show it under its title, with its
description in the glossary. ::

    from collapsekit.diagnostics import Metric, register_metric

    register_metric(Metric("mean_posterior_var", lambda stats: stats.var.mean(axis=0).tolist(),
                           title="mean posterior variance", description="E_x Var q(z_j|x), per dimension"))

The built-in measurements (the headline count, KL per dimension, active units, the mutual
information estimators, ...) are the fixed fields of :class:`~collapsekit.diagnostics.report.LevelReport`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from collapsekit.diagnostics.posterior import LevelStats
from collapsekit.errors import ParameterError

#: What every metric is: posterior statistics of one level → one number, or one per dimension.
MetricFunction = Callable[[LevelStats], float | Sequence[float]]


@dataclass(frozen=True)
class Metric:
    """A metric the diagnosis computes for every latent level.

    Attributes
    ----------
    name : str
        Its key in ``LevelReport.metrics`` and ``report.json`` (a word).
    compute : callable
        ``compute(stats: LevelStats) -> float | sequence of float`` (one value, or one per dimension).
    title : str
        How the reports name it.
    unit : str
        Its unit (``"nats"``), or empty for a count or a ratio.
    description : str
        One sentence for the reports' glossary: what it measures and where it comes from.
    """

    name: str
    compute: MetricFunction
    title: str
    unit: str = ""
    description: str = ""


#: The registered metrics, in registration order.
METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to every diagnosis from now on; undo with :func:`unregister_metric`.

    Raises
    ------
    ParameterError
        When the name is not a word or is taken.
    """
    if not isinstance(metric.name, str) or not metric.name.isidentifier():
        raise ParameterError(f"a metric's name must be a word, got {metric.name!r}")
    if metric.name in METRICS:
        raise ParameterError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric :func:`register_metric` added (nothing happens for an unknown name)."""
    METRICS.pop(name, None)


def registered_metrics() -> tuple[Metric, ...]:
    """The registered metrics, in registration order."""
    return tuple(METRICS.values())


def compute_metrics(stats: LevelStats) -> dict[str, Any]:
    """Every registered metric of one level: {name: a float, or a list of floats (one per dimension)}.

    Raises
    ------
    ParameterError
        When a metric returns something that is neither a number nor one number per dimension.
    """
    values: dict[str, Any] = {}
    for metric in METRICS.values():
        result = np.asarray(metric.compute(stats), dtype=float)
        if result.ndim == 0:
            values[metric.name] = float(result)
        elif result.shape == (stats.latent_dim,):
            values[metric.name] = [float(v) for v in result]
        else:
            raise ParameterError(f"metric {metric.name!r} returned shape {result.shape} for level {stats.name}; "
                                 f"expected one number or {stats.latent_dim} (one per dimension)")
    return values


def metric_title(name: str) -> str:
    """How the reports name metric ``name`` (its name when it is no longer registered, e.g. in an old report)."""
    metric = METRICS.get(name)
    if metric is None:
        return name.replace("_", " ")
    return metric.title + (f" ({metric.unit})" if metric.unit else "")

