"""A sweep's figure: measured active dimensions against one grid key, with the closed form's curve.

:func:`plot_active_against` draws what :func:`collapsekit.experiments.sweep.plot_sweep` gathers from a
sweep directory (the measured points and the theory's curve of each group of the other grid values).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collapsekit._io import atomic_path
from collapsekit.activity import KL_ACTIVE_THRESHOLD


@dataclass(frozen=True)
class ActiveSeries:
    """One group of a sweep (one value of each other grid key), drawn in one colour.

    Attributes
    ----------
    name : str
        The other grid values (``"η_dec=1"``); empty when the grid has one key.
    xs, ys : sequence of float
        Each finished point: its value of the plotted key and its measured active dimensions.
    seed_rank : sequence of int
        Each point's seed, as its index among the sweep's seeds (points of different seeds are spread apart).
    curve : sequence of float or None
        The closed form's count at each x of the figure's fine grid (NaN where it gives none); None: no curve.
    theory : str
        The curve's label (``"exact"``, ``"linear-theory estimate"``).
    band : (sequence of float, sequence of float) or None
        For an estimated curve: the lower and upper ends of its interval at each x of ``fine`` (NaN where none),
        drawn as a shaded band; None: no band (an exact curve).
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    seed_rank: Sequence[int]
    curve: Sequence[float] | None
    theory: str
    band: tuple[Sequence[float], Sequence[float]] | None = None


def plot_active_against(series: Sequence[ActiveSeries], *, fine: Sequence[float], ticks: Sequence[float],
                        tick_labels: Sequence[str], x_name: str, n_seeds: int, log: bool,
                        path: str | os.PathLike[str]) -> Path:
    """Measured active dimensions against one key, per group: every seed's point, their mean, and the closed
    form's count over ``fine`` (a step curve). Ticks at the grid's own values (the settings trained).
    Written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.6), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    span = float(np.ptp(np.asarray(ticks, dtype=float))) if len(ticks) else 0.0
    top = 0
    for number, group in enumerate(series):
        colour = colours[number % len(colours)]
        label = f"{group.name}: " if group.name else ""
        if len(group.xs):
            xs = np.asarray(group.xs, dtype=float)
            ys = np.asarray(group.ys, dtype=float)
            seed_rank = np.asarray(group.seed_rank, dtype=float)
            # Seeds often agree exactly: spread them a little sideways so each stays visible.
            spread = 0.03 * (seed_rank - (n_seeds - 1) / 2)
            ax.scatter(xs * np.exp(spread) if log else xs + spread * span, ys, s=18, alpha=0.5,
                       color=colour, linewidths=0, label="each seed" if number == 0 and n_seeds > 1 else None)
            centres = sorted(set(xs))
            ax.plot(centres, [ys[xs == c].mean() for c in centres], "o-", color=colour, ms=6, lw=1,
                    label=f"{label}measured" + (f", mean of {n_seeds} seeds" if n_seeds > 1 else ""))
            top = max(top, int(ys.max()))
        if group.curve is not None:
            curve = np.asarray(group.curve, dtype=float)
            ax.step(fine, curve, where="post", ls="--", lw=1.4, color=colour, label=f"{label}theory ({group.theory})")
            top = max(top, int(np.nanmax(curve)))
        if group.band is not None and not np.isnan(np.asarray(group.band[1], dtype=float)).all():
            lo, hi = (np.asarray(b, dtype=float) for b in group.band)
            ax.fill_between(fine, lo, hi, step="post", color=colour, alpha=0.12, lw=0,
                            label=f"{label}theory's interval (conformal, docs/forecast.md)")
            top = max(top, int(np.nanmax(hi)))
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(ticks), list(tick_labels))
    ax.set_xlabel(x_name)
    ax.set_ylabel(f"active latent dimensions (KL ≥ {KL_ACTIVE_THRESHOLD:g} nats)")
    ax.set_ylim(-0.3, top + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Measured active dimensions against {x_name}, with the closed-form prediction", fontsize=10,
                 loc="left")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    target = Path(path)
    with atomic_path(target) as temporary:
        fig.savefig(temporary, format="png", dpi=130)
    plt.close(fig)
    return target
