"""The sweep's figure: measured active dimensions against one grid key, with the theory's curve."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapsekit._io import atomic_path
from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.errors import ParameterError
from collapsekit.experiments.sweep.directory import load_sweep
from collapsekit.experiments.sweep.grid import Grid, resolve_key
from collapsekit.experiments.sweep.layout import SUMMARY_FILE
from collapsekit.experiments.sweep.summary import SweepResult, read_summary
from collapsekit.experiments.sweep.theory import fine_values, moments_cache, theory_curve
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


def plot_sweep(sweep: SweepResult | str | os.PathLike[str], *, x: str | None = None,
               path: str | os.PathLike[str] | None = None) -> Path:
    """Measured active dimensions against one grid key (β by default), with the theory's curve.

    Per group of the other grid values (one colour each): every seed's point, their mean, and the
    closed form's number of non-collapsed dimensions over a fine grid of the x values (a step
    curve; η_dec as configured). Failed and unfinished points are left out. Written atomically to
    ``path`` (default ``active_vs_<x>.png`` in the sweep directory).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator, NullFormatter

    from collapsekit.theory.prediction import symbol

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
    x_name = symbol(axis.rsplit(".", 1)[-1].replace("-", "_"))

    fig, ax = plt.subplots(figsize=(7.5, 4.6), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    moments = moments_cache()
    top = 0
    for number, combination in enumerate(itertools.product(*(grid[k] for k in others))):
        group = dict(zip(others, combination))
        colour = colours[number % len(colours)]
        name = ", ".join(f"{symbol(k)}={format_value(v)}" for k, v in group.items())
        label = f"{name}: " if name else ""
        mine = [row for row in rows if all(format_value(row[k]) == format_value(v) for k, v in group.items())]
        if mine:
            xs = np.array([float(row[axis]) for row in mine])
            ys = np.array([float(row["n_active_measured"]) for row in mine])
            seed_rank = np.array([seeds.index(row["seed"]) for row in mine], dtype=float)
            # Seeds often agree exactly: spread them a little sideways so each stays visible.
            spread = 0.03 * (seed_rank - (len(seeds) - 1) / 2)
            ax.scatter(xs * np.exp(spread) if log else xs + spread * np.ptp(values), ys, s=18, alpha=0.5,
                       color=colour, linewidths=0, label="each seed" if number == 0 and len(seeds) > 1 else None)
            centres = sorted(set(xs))
            ax.plot(centres, [ys[xs == c].mean() for c in centres], "o-", color=colour, ms=6, lw=1,
                    label=f"{label}measured" + (f", mean of {len(seeds)} seeds" if len(seeds) > 1 else ""))
            top = max(top, int(ys.max()))
        curve, theory = theory_curve(base, group, axis, fine, seeds[0], moments)
        if not np.isnan(curve).all():
            ax.step(fine, curve, where="post", ls="--", lw=1.4, color=colour, label=f"{label}theory ({theory})")
            top = max(top, int(np.nanmax(curve)))
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    # Ticks at the grid's own values: those are the settings that were trained.
    ax.set_xticks(sorted(set(values.tolist())), [format_value(v) for v in sorted(set(grid[axis]))])
    ax.set_xlabel(x_name)
    ax.set_ylabel(f"active latent dimensions (KL ≥ {KL_ACTIVE_THRESHOLD:g} nats)")
    ax.set_ylim(-0.3, top + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Measured active dimensions against {x_name}, with the closed-form prediction", fontsize=10,
                 loc="left")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    target = Path(path) if path is not None else out / f"active_vs_{axis.replace('.', '_')}.png"
    with atomic_path(target) as temporary:
        fig.savefig(temporary, format="png", dpi=130)
    plt.close(fig)
    return target
