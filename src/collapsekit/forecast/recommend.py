"""The largest β that keeps K dimensions active in a nonlinear run, from the base closed form (cost 0).

:func:`recommend_beta` scans β over a geometric grid around the configured value with the base closed form of
:mod:`collapsekit.forecast.early` (the one ``collapsekit forecast --budget 0`` returns) and its conformal
interval, and returns two answers: the largest β whose *forecast* count is ≥ K, and the largest whose interval's
*lower end* is ≥ K (kept with ≥ 90 % probability where the benchmark's coverage holds). The evidence is the
count forecast's measured accuracy on the benchmark (docs/forecast.md); the β it recommends was not itself
scored there. A batched pilot over a β grid (collapsekit.training.batched) would measure instead of forecast:
not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapsekit.activity import count_active
from collapsekit.errors import ParameterError
from collapsekit.forecast.accuracy import benchmark_accuracy
from collapsekit.forecast.closed_form import method_kl
from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of

__all__ = ["BetaRecommendation", "recommend_beta"]

#: β multipliers scanned: 2^(j/8) for j = −96 … 96 (a factor 4096 either way, steps of 9 %).
MULTIPLIERS = tuple(2.0 ** (j / 8) for j in range(-96, 97))


@dataclass
class BetaRecommendation:
    """The answer of :func:`recommend_beta` (β values as the configuration writes β: a list for a hierarchy,
    every level's β scaled by the same factor)."""

    keep: int
    beta: Any
    beta_safe: Any
    factor: float | None
    factor_safe: float | None
    forecast: int
    interval: tuple[int, int]
    latent_size: int
    method: str
    cost_fraction: float = 0.0
    benchmark: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"keep": self.keep, "beta": self.beta, "beta_safe": self.beta_safe, "factor": self.factor,
                "factor_safe": self.factor_safe, "forecast": self.forecast, "interval": list(self.interval),
                "latent_size": self.latent_size, "method": self.method, "cost_fraction": self.cost_fraction,
                "benchmark": self.benchmark, "notes": self.notes}


def _scaled(beta: Any, factor: float | None) -> Any:
    if factor is None:
        return None
    return [float(b) * factor for b in beta] if isinstance(beta, list) else float(beta) * factor


def recommend_beta(config: Any, keep: int, *, data: Any = None) -> BetaRecommendation:
    """The largest β that keeps ``keep`` dimensions of the summary level active at the end of the configured run.

    Parameters
    ----------
    config : RunConfig
        The run (its β is the centre of the scan; every other setting is held).
    keep : int
        Dimensions to keep, 1 … latent size.
    data : TrainingData, optional
        The run's rows, when already loaded.

    Returns
    -------
    BetaRecommendation
        ``beta``: the largest scanned β whose forecast count is ≥ ``keep``; ``beta_safe``: the largest whose
        conformal interval's lower end is ≥ ``keep`` (None where no β makes the interval that sure). Cost 0.
    """
    from collapsekit.forecast.early import BASE
    from collapsekit.training.builders import load_training_data

    latent = int(config.model.latent_dims[-1])
    if not 1 <= int(keep) <= latent:
        raise ParameterError(f"--keep must be between 1 and the latent size {latent}, got {keep}")
    data = load_training_data(config) if data is None else data
    kl_at, notes = method_kl(BASE, config, data)
    linear = config.model.arch == "linear"
    q = 0.0 if linear else half_width(CONFORMAL[BASE], regime_of(config))
    counts = np.array([count_active(kl_at(m)) for m in MULTIPLIERS])
    lows = np.array([conformal_interval(int(n), latent, q)[0] for n in counts])
    ok, sure = np.flatnonzero(counts >= keep), np.flatnonzero(lows >= keep)
    if ok.size == 0:
        raise ParameterError(f"no β within a factor 4096 of the configured one is forecast to keep {keep} of "
                             f"{latent} dimensions (at most {int(counts.max())})")
    best = int(ok.max())
    factor = MULTIPLIERS[best]
    factor_safe = MULTIPLIERS[int(sure.max())] if sure.size else None
    if factor_safe is None:
        notes.append(f"no β makes the interval's lower end reach {keep}: the forecast is ± {q:g} here")
    notes.append("the β is the base closed form's; the benchmark scored its count forecast, not this β")
    beta = config.objective.beta
    return BetaRecommendation(keep=int(keep), beta=_scaled(beta, factor), beta_safe=_scaled(beta, factor_safe),
                              factor=factor, factor_safe=factor_safe, forecast=int(counts[best]),
                              interval=conformal_interval(int(counts[best]), latent, q), latent_size=latent,
                              method=BASE,
                              benchmark=None if linear else benchmark_accuracy(BASE, regime=regime_of(config)),
                              notes=notes)
