"""The forecast ``collapsekit forecast`` ships: the best method the budget allows, for one configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.forecast.closed_form import adjusted
from collapsekit.forecast.early import base, early, prefix_epochs, prefix_problem
from collapsekit.forecast.result import Forecast

__all__ = ["forecast_config", "needs_run_dir"]


def needs_run_dir(config: Any, budget: float, n: int) -> bool:
    """True when the forecast at ``budget`` trains a prefix (so it needs a run directory)."""
    if config.model.arch == "linear" or budget == 0:
        return False
    return prefix_problem(config, prefix_epochs(config, budget), n) is None


def forecast_config(config: Any, *, budget: float = 0.0, run_dir: str | Path | None = None,
                    data: Any = None) -> Forecast:
    """Forecast the headline count at the end of the configured run.

    Parameters
    ----------
    config : RunConfig
        The run's configuration (its seed is the prefix's seed).
    budget : float
        Largest fraction of the run's optimiser steps to spend: 0 gives the base closed form (cost 0:
        :func:`~collapsekit.forecast.early.base`, the better one on the benchmark's tuning split); more
        trains the first ⌊budget · epochs⌋ epochs into ``run_dir`` and forecasts from their KL trajectories
        (:func:`~collapsekit.forecast.early.early`). A linear model gets its exact closed form at any budget.
    run_dir : path, optional
        Where the prefix is trained (required when one is): ``collapsekit train --out RUN --resume --epochs N``
        continues it, so nothing is spent twice.
    data : TrainingData, optional
        The run's rows, when already loaded.

    Returns
    -------
    Forecast
    """
    from collapsekit.training.builders import load_training_data

    if not 0 <= budget <= 1:
        raise ParameterError(f"--budget must be a fraction of the run between 0 and 1, got {budget:g}")
    data = load_training_data(config) if data is None else data
    if config.model.arch == "linear":
        exact = adjusted(config, data)       # raw moments, the schedule's final β: the linear optimum
        exact.notes.append("the linear model: the closed form is exact at the optimum")
        return exact
    closed = base(config, data)
    if budget == 0:
        return closed
    if needs_run_dir(config, budget, data.n) and run_dir is None:
        raise ParameterError(f"a budget of {budget:g} trains the first {prefix_epochs(config, budget)} epochs: give a "
                             "run directory (--out RUN), or --budget 0 for the closed form alone")
    return early(config, data, budget=budget, run_dir=run_dir, closed=closed)
