"""The sweep's figure: what it shows, gathered from a sweep directory (drawn by :mod:`collapsekit.viz.sweep`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.experiments.sweep.directory import load_sweep
from collapsekit.experiments.sweep.grid import Grid, resolve_key
from collapsekit.experiments.sweep.layout import SUMMARY_FILE
from collapsekit.experiments.sweep.summary import SweepResult, read_summary
from collapsekit.experiments.sweep.points import point_config
from collapsekit.experiments.sweep.theory import fine_values, moments_cache, predicted_interval, theory_curve
from collapsekit.experiments.values import format_value


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_axis(grid: Grid, x: str | None = None) -> str | None:
    """The grid key to plot against: the one that sets the same value as ``x`` (default ``beta``),
    else the first numeric key; None when the grid has no numeric key."""
    wanted = resolve_key(x or "beta")
    for key, values in grid.items():
        if resolve_key(key) == wanted:
            if not _numeric(values):
                raise ParameterError(f"cannot plot against {key}: its values are not numbers")
            return key
    if x is not None:
        raise ParameterError(f"cannot plot against {x}: the grid does not vary it (grid: {', '.join(grid)})")
    return next((key for key, values in grid.items() if _numeric(values)), None)


def theory_band(base: Any, settings: dict[str, Any], key: str, values: Sequence[Any], seed: int,
                curve: Any, theory: str) -> tuple[list[float], list[float]] | None:
    """The interval of an estimated theory curve at each of ``values`` (the summary's ``n_active_predicted_lo``
    and ``_hi`` rule, :func:`~collapsekit.experiments.sweep.theory.predicted_interval`); None for an exact curve."""
    import math

    lows, highs = [], []
    for value, count in zip(values, curve):
        interval = None
        if not math.isnan(float(count)):
            config = point_config(base, {**settings, key: value}, seed)
            interval = predicted_interval(config, int(count), theory, int(config.model.latent_dims[-1]))
        lows.append(math.nan if interval is None else float(interval[0]))
        highs.append(math.nan if interval is None else float(interval[1]))
    return None if all(math.isnan(h) for h in highs) else (lows, highs)


def plot_sweep(sweep: SweepResult | str | os.PathLike[str], *, x: str | None = None,
               path: str | os.PathLike[str] | None = None) -> Path:
    """Measured active dimensions against one grid key (β by default), with the theory's curve.

    Per group of the other grid values (one colour each): every seed's point, their mean, and the
    closed form's number of non-collapsed dimensions over a fine grid of the x values (a step
    curve; η_dec as configured). Failed and unfinished points are left out. Written atomically to
    ``path`` (default ``active_vs_<x>.png`` in the sweep directory).
    """
    import numpy as np

    from collapsekit.theory.prediction import symbol
    from collapsekit.viz.sweep import ActiveSeries, plot_active_against

    out = sweep.out_dir if isinstance(sweep, SweepResult) else Path(sweep)
    base, grid, seeds = load_sweep(out)
    axis = plot_axis(grid, x)
    if axis is None:
        raise ParameterError("nothing to plot against: the grid has no numeric key")
    rows = [row for row in read_summary(out / SUMMARY_FILE) if row["status"] == "done"]
    others = [key for key in grid if key != axis]
    values = np.asarray(grid[axis], dtype=float)
    log = bool(values.min() > 0 and values.max() / values.min() >= 10)
    fine = fine_values(axis, grid[axis], log)
    moments = moments_cache()
    series = []
    for combination in itertools.product(*(grid[k] for k in others)):
        group = dict(zip(others, combination))
        mine = [row for row in rows if all(format_value(row[k]) == format_value(v) for k, v in group.items())]
        curve, theory = theory_curve(base, group, axis, fine, seeds[0], moments)
        series.append(ActiveSeries(name=", ".join(f"{symbol(k)}={format_value(v)}" for k, v in group.items()),
                                   xs=[float(row[axis]) for row in mine],
                                   ys=[float(row["n_active_measured"]) for row in mine],
                                   seed_rank=[seeds.index(row["seed"]) for row in mine],
                                   curve=None if np.isnan(curve).all() else curve.tolist(), theory=theory,
                                   band=theory_band(base, group, axis, fine, seeds[0], curve, theory)))
    target = Path(path) if path is not None else out / f"active_vs_{axis.replace('.', '_')}.png"
    return plot_active_against(series, fine=fine, ticks=sorted(set(values.tolist())),
                               tick_labels=[format_value(v) for v in sorted(set(grid[axis]))],
                               x_name=symbol(axis.rsplit(".", 1)[-1].replace("-", "_")), n_seeds=len(seeds),
                               log=log, path=target)
