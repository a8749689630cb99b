"""The largest β that keeps K dimensions active in a nonlinear run: from the base closed form (cost 0), or from a
pilot that trains a prefix of the run at a few β (a stated cost).

:func:`recommend_beta` at ``budget`` 0 scans β over a geometric grid around the configured value with the base
closed form of :mod:`collapsekit.forecast.early` (the one ``collapsekit forecast --budget 0`` returns) and its
conformal interval, and returns two answers: the largest β whose *forecast* count is ≥ K, and the largest whose
interval's *lower end* is ≥ K (kept with ≥ 90 % probability where the benchmark's coverage holds).

At ``budget`` F > 0 it runs a *pilot*: the first ⌊F · epochs⌋ epochs of the run at each β of a small grid
(:func:`pilot_grid`: :data:`PILOT_POINTS` factors spanning the cost-0 scan's bracket around its answer), trained as
one batched program (:func:`~collapsekit.forecast.early.train_prefixes`, bit for bit the separate runs) into
``run_dir/beta-<factor>/``, each forecast with the early method (:func:`~collapsekit.forecast.early.early`, the
same constants as ``collapsekit forecast --budget F``); the answers are the largest *grid* β whose early forecast
keeps K and the largest whose early interval's lower end does. It costs ``points × ⌊F · epochs⌋ / epochs`` of a run
in optimiser steps, in one program. Where a prefix is not the run's beginning (a cyclical schedule, a long warm-up,
a cosine learning rate, a budget that buys no epoch) the cost-0 answer stands, with a note.

The evidence is the count forecast's measured accuracy on the benchmark (docs/forecast.md: the base closed
form's, or the early method's for a pilot); the β either recommends was not itself scored there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collapsekit.activity import count_active
from collapsekit.errors import ParameterError
from collapsekit.forecast.accuracy import benchmark_accuracy
from collapsekit.forecast.closed_form import method_kl
from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of

__all__ = ["BetaRecommendation", "PILOT_POINTS", "PILOT_REACH", "pilot_grid", "recommend_beta"]

#: β multipliers scanned: 2^(j/8) for j = −96 … 96 (a factor 4096 either way, steps of 9 %).
MULTIPLIERS = tuple(2.0 ** (j / 8) for j in range(-96, 97))
#: Grid points of a pilot (:func:`pilot_grid`).
PILOT_POINTS = 8
#: How far a pilot's grid reaches from the cost-0 factor, either way: at least the first, at most the second.
PILOT_REACH = (2.0, 8.0)
#: The file in a pilot's directory that names the configuration it is the pilot of.
PILOT_FILE = "pilot.yaml"


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
    #: Training programs this call ran (1: every grid point in one batched program; 0: no pilot, or every prefix
    #: read back from the run directory). ``cost_fraction`` is the pilot's cost however its prefixes were had.
    programs: int = 0
    #: The pilot's table, one row per grid β (ascending): ``factor``, ``beta``, ``forecast``, ``interval``
    #: (empty without a pilot).
    pilot: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"keep": self.keep, "beta": self.beta, "beta_safe": self.beta_safe, "factor": self.factor,
                "factor_safe": self.factor_safe, "forecast": self.forecast, "interval": list(self.interval),
                "latent_size": self.latent_size, "method": self.method, "cost_fraction": self.cost_fraction,
                "programs": self.programs, "pilot": self.pilot, "benchmark": self.benchmark, "notes": self.notes}


def _scaled(beta: Any, factor: float | None) -> Any:
    if factor is None:
        return None
    return [float(b) * factor for b in beta] if isinstance(beta, list) else float(beta) * factor


def recommend_beta(config: Any, keep: int, *, data: Any = None, budget: float = 0.0,
                   run_dir: str | Path | None = None, grid: Sequence[float] | None = None) -> BetaRecommendation:
    """The largest β that keeps ``keep`` dimensions of the summary level active at the end of the configured run.

    Parameters
    ----------
    config : RunConfig
        The run (its β is the centre of the scan; every other setting is held).
    keep : int
        Dimensions to keep, 1 … latent size.
    data : TrainingData, optional
        The run's rows, when already loaded.
    budget : float
        0 (the default): the base closed form's scan, cost 0. F in (0, 1]: a pilot that trains the first
        ⌊F · epochs⌋ epochs at every grid β (so it spends ``len(grid) × ⌊F · epochs⌋ / epochs`` of a run).
    run_dir : path, optional
        Where the pilot trains (required for one): ``run_dir/beta-<factor>/`` per grid β, each a prefix that
        ``collapsekit train --out DIR --resume --epochs N`` continues. Rerun with the same directory, the pilot
        reads the prefixes there instead of training them again.
    grid : sequence of float, optional
        The pilot's factors on the configured β (default :func:`pilot_grid`).

    Returns
    -------
    BetaRecommendation
        ``beta``: the largest β whose forecast count is ≥ ``keep`` (scanned, or of the pilot's grid; None where no
        grid β is); ``beta_safe``: the largest whose interval's lower end is ≥ ``keep`` (None where none is).
        A pilot's ``pilot`` table gives every grid β's forecast, ``programs`` how many programs trained it.

    Raises
    ------
    ParameterError
        ``keep`` or ``budget`` out of range, no β within a factor 4096 forecast to keep ``keep``, a pilot without
        ``run_dir``, or a ``run_dir`` that holds the pilot of another configuration.
    """
    from collapsekit.training.builders import load_training_data

    latent = int(config.model.latent_dims[-1])
    if not 1 <= int(keep) <= latent:
        raise ParameterError(f"--keep must be between 1 and the latent size {latent}, got {keep}")
    if not 0 <= budget <= 1:
        raise ParameterError(f"--budget must be a fraction of the run between 0 and 1, got {budget:g}")
    data = load_training_data(config) if data is None else data
    scanned, ends = _scan(config, int(keep), data)
    if budget == 0:
        return scanned
    return _pilot(config, int(keep), data, budget, run_dir, grid, scanned, ends)


def _scan(config: Any, keep: int, data: Any) -> tuple[BetaRecommendation, tuple[float, float]]:
    """The cost-0 answer, and its bracket: the largest factors of :data:`MULTIPLIERS` whose conformal interval's
    lower end, and upper end, still reach ``keep`` (the scan's smallest factor where no lower end does)."""
    from collapsekit.forecast.early import BASE

    latent = int(config.model.latent_dims[-1])
    kl_at, notes = method_kl(BASE, config, data)
    linear = config.model.arch == "linear"
    q = 0.0 if linear else half_width(CONFORMAL[BASE], regime_of(config))
    counts = np.array([count_active(kl_at(m)) for m in MULTIPLIERS])
    lows, highs = np.array([conformal_interval(int(n), latent, q) for n in counts]).T
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
    bracket = (factor_safe or MULTIPLIERS[0], MULTIPLIERS[int(np.flatnonzero(highs >= keep).max())])
    return BetaRecommendation(keep=keep, beta=_scaled(beta, factor), beta_safe=_scaled(beta, factor_safe),
                              factor=factor, factor_safe=factor_safe, forecast=int(counts[best]),
                              interval=conformal_interval(int(counts[best]), latent, q), latent_size=latent,
                              method=BASE,
                              benchmark=None if linear else benchmark_accuracy(BASE, regime=regime_of(config)),
                              notes=notes), bracket


def pilot_grid(config: Any, keep: int, *, data: Any = None, points: int = PILOT_POINTS) -> tuple[float, ...]:
    """The factors on the configured β a pilot trains at by default, ascending.

    ``points`` factors spaced geometrically across the cost-0 scan's bracket for ``keep``: from the largest factor
    whose conformal interval's lower end keeps ``keep`` (its ``factor_safe``) to the largest whose upper end
    does — the β range the closed form cannot tell apart — each end held between :data:`PILOT_REACH` of the
    cost-0 answer (at least ×2 and at most ×8 either way: the intervals of ± 4 dimensions would otherwise span
    the whole scan, and a grid of one point would measure nothing).
    """
    from collapsekit.training.builders import load_training_data

    if points < 2:
        raise ParameterError(f"a pilot's grid needs at least 2 points, got {points}")
    data = load_training_data(config) if data is None else data
    scanned, ends = _scan(config, int(keep), data)
    return _grid(scanned.factor, ends, points)


def _grid(factor: float, ends: tuple[float, float], points: int) -> tuple[float, ...]:
    """:func:`pilot_grid` from the cost-0 factor and its bracket."""
    near, far = PILOT_REACH
    low = min(max(ends[0], factor / far), factor / near)
    high = max(min(ends[1], factor * far), factor * near)
    step = math.log(high / low) / (points - 1)
    return tuple(low * math.exp(step * j) for j in range(points))


def _pilot(config: Any, keep: int, data: Any, budget: float, run_dir: str | Path | None,
           grid: Sequence[float] | None, scanned: BetaRecommendation,
           ends: tuple[float, float]) -> BetaRecommendation:
    """:func:`recommend_beta` at a budget: the pilot, or the cost-0 answer with a note where none applies."""
    from collapsekit.forecast.early import early, prefix_epochs, prefix_problem, train_prefixes

    epochs = prefix_epochs(config, budget)
    if config.model.arch == "linear":
        scanned.notes.append("the linear model: the closed form is exact at the optimum, so no pilot is trained")
        return scanned
    problem = prefix_problem(config, epochs, int(data.n))
    if problem is not None:
        scanned.notes.append(f"no pilot: {problem}; the cost-0 scan stands")
        return scanned
    if run_dir is None:
        raise ParameterError(f"a pilot at a budget of {budget:g} trains the first {epochs} epochs at every grid β: "
                             "give a run directory (--out DIR), or --budget 0 for the closed form alone")
    factors = sorted(_grid(scanned.factor or 1.0, ends, PILOT_POINTS) if grid is None else _checked(grid))
    run_dir = Path(run_dir)
    _claim(run_dir, config)
    beta = config.objective.beta
    configs = [config.with_overrides({"objective.beta": _scaled(beta, f)}) for f in factors]
    dirs = [run_dir / f"beta-{f:.6g}" for f in factors]
    runs = train_prefixes(configs, epochs, dirs, data=data)
    forecasts = [early(c, data, trajectory=t, budget=budget) for c, t in zip(configs, runs.trajectories)]
    table = [{"factor": f, "beta": c.objective.beta, "forecast": fc.n_active, "interval": list(fc.interval)}
             for f, c, fc in zip(factors, configs, forecasts)]
    ok = [i for i, fc in enumerate(forecasts) if fc.n_active >= keep]
    sure = [i for i, fc in enumerate(forecasts) if fc.interval[0] >= keep]
    best = max(ok) if ok else 0
    notes = [_spent(runs, len(factors), run_dir)]
    if not ok:
        smallest = _words(_scaled(beta, factors[0]))
        notes.append(f"no grid β was forecast to keep {keep}: the smallest ({smallest}) keeps "
                     f"{forecasts[0].n_active}; give a grid below it")
    elif best == len(factors) - 1:
        notes.append(f"the largest grid β keeps {keep}: a larger one may too; give a grid above it")
    notes.append(f"the cost-0 scan's answer was β = {_words(scanned.beta)} (forecast {scanned.forecast}, interval "
                 f"{scanned.interval[0]}–{scanned.interval[1]})")
    notes.append("the β is the pilot's early forecasts'; the benchmark scored the early count forecast, not this β")
    chosen = forecasts[best]
    return BetaRecommendation(
        keep=keep, beta=configs[best].objective.beta if ok else None,
        beta_safe=configs[max(sure)].objective.beta if sure else None,
        factor=factors[best] if ok else None, factor_safe=factors[max(sure)] if sure else None,
        forecast=chosen.n_active, interval=chosen.interval, latent_size=chosen.latent_size, method="early",
        cost_fraction=len(factors) * epochs / config.train.epochs, benchmark=benchmark_accuracy(
            "early", config.model.arch, regime_of(config)), notes=notes, programs=runs.programs, pilot=table)


def _words(beta: Any) -> str:
    """A β (a list for a hierarchy) to 4 digits."""
    return ", ".join(f"{b:.4g}" for b in beta) if isinstance(beta, list) else f"{beta:.4g}"


def _checked(grid: Sequence[float]) -> list[float]:
    """An explicit grid: positive finite factors whose run directories' names differ."""
    factors = [float(f) for f in grid]
    if not factors or not all(math.isfinite(f) and f > 0 for f in factors):
        raise ParameterError(f"grid: the factors on β must be positive numbers, got {list(grid)}")
    if len({f"{f:.6g}" for f in factors}) != len(factors):
        raise ParameterError(f"grid: two factors agree to 6 digits (one run directory each): {list(grid)}")
    return factors


def _claim(run_dir: Path, config: Any) -> None:
    """Make ``run_dir`` the pilot of ``config`` (its :data:`PILOT_FILE`), or refuse one that holds something else:
    another configuration's pilot, or a run."""
    from collapsekit.training.config import RunConfig
    from collapsekit.training.resume import config_differences

    marker = run_dir / PILOT_FILE
    if marker.is_file():
        differences = config_differences(RunConfig.load(marker), config,
                                         ignore=("train.progress", "train.loggers"))
        if differences:
            raise ParameterError(f"{run_dir} holds the pilot of another configuration: {'; '.join(differences)}")
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ParameterError(f"{run_dir} is not empty and holds no pilot ({PILOT_FILE}): give a new directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(config.to_yaml(), encoding="utf-8")


def _spent(runs: Any, points: int, run_dir: Path) -> str:
    """What the pilot trained this time, in words."""
    if runs.trained == 0:
        return f"read all {points} prefixes from {run_dir}: nothing trained this time"
    how = ("as one batched program" if runs.programs == 1 and runs.trained > 1 else
           f"one after another ({runs.unbatched})" if runs.unbatched else
           f"in {runs.programs} program{'s' * (runs.programs != 1)}")
    return f"trained {runs.trained} of {points} grid points {how}"
