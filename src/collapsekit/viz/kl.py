"""KL per dimension: sorted bars against the theory (:func:`plot_kl_per_dim`) and over epochs
(:func:`plot_kl_heatmap`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.report import CollapseReport, LevelReport
from collapsekit.viz.style import ACTIVE, COLLAPSED, THEORY, epochs_of, level_name, new_figure, style_axes


def _levels_of(report_or_level: CollapseReport | LevelReport | Sequence[LevelReport]) -> list[LevelReport]:
    if isinstance(report_or_level, CollapseReport):
        return list(report_or_level.levels)
    if isinstance(report_or_level, LevelReport):
        return [report_or_level]
    return list(report_or_level)


def _log_floor(values: np.ndarray, epsilon: float) -> float:
    """The bottom of a log axis for KL values (which may be exactly 0)."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    positive = finite[finite > 0]
    smallest = float(positive.min()) / 2 if positive.size else epsilon / 20
    return max(min(epsilon / 20, smallest), top * 1e-6)


def plot_kl_per_dim(report_or_level: CollapseReport | LevelReport | Sequence[LevelReport], *,
                    max_dims: int = 64, title: str | None = None) -> Figure:
    """Measured KL per latent dimension, sorted descending, one panel per level, with the theory.

    Bars are the measured E_x KL(q(z_j|x) ‖ p(z_j)) in nats on a log axis; (ε, δ)-collapsed
    dimensions are grey and hatched, active ones blue. The tick under each bar is the dimension's
    index. When a level carries a :class:`~collapsekit.diagnostics.report.TheoryComparison` its
    predicted KL (also sorted: dimensions are identified only up to permutation) is drawn over the
    bars with its label, "exact" or "linear-theory estimate"; a predicted 0 (a predicted collapse)
    is a downward triangle on the floor of the axis. The dashed line is the collapse threshold ε.

    Parameters
    ----------
    report_or_level : CollapseReport, LevelReport or sequence of LevelReport
    max_dims : int
        Show at most this many dimensions per level (the largest); the title says how many more.
    title : str, optional
        Figure title.
    """
    levels = _levels_of(report_or_level)
    if not levels:
        raise ValueError("plot_kl_per_dim needs at least one latent level")
    widest = min(max(level.latent_dim for level in levels), max_dims)
    fig = new_figure(max(9.0, min(15.0, 5.6 + 0.26 * widest)), 0.4 + 3.3 * len(levels))
    axes = fig.subplots(len(levels), 1, squeeze=False)[:, 0]
    for ax, level in zip(axes, levels):
        _kl_panel(ax, level, max_dims)
    legend: dict[str, Any] = {}                                   # one legend for every panel's entries
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    order = sorted(legend, key=lambda label: (not label.startswith("measured"), label.startswith("ε")))
    axes[0].legend([legend[label] for label in order], order, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   frameon=False, borderaxespad=0.0)
    if title:
        fig.suptitle(title, fontsize=11.5, fontweight="bold")
    return fig


def _kl_panel(ax: Any, level: LevelReport, max_dims: int) -> None:
    style_axes(ax)
    kl = np.asarray(level.kl_per_dim, float)
    order = np.asarray(level.order[:max_dims], int)
    collapsed = np.asarray(level.collapsed, bool)
    shown = kl[order]
    theory = level.theory
    predicted = np.asarray(theory.kl_per_dim[: len(order)], float) if theory is not None else np.zeros(0)
    floor = _log_floor(np.concatenate([shown, predicted]), level.epsilon)
    ranks = np.arange(order.size)
    heights = np.maximum(np.nan_to_num(shown, nan=0.0), floor)
    is_collapsed = collapsed[order]
    width = 0.78 if order.size >= 8 else 0.55
    if (~is_collapsed).any():
        ax.bar(ranks[~is_collapsed], heights[~is_collapsed] - floor, bottom=floor, width=width, color=ACTIVE,
               edgecolor="white", linewidth=0.4, label="measured KL (active)", zorder=2)
    if is_collapsed.any():
        ax.bar(ranks[is_collapsed], heights[is_collapsed] - floor, bottom=floor, width=width, color=COLLAPSED,
               edgecolor="#616161", hatch="///", linewidth=0.6, label="measured KL (collapsed)", zorder=2)
        for rank in ranks[is_collapsed]:
            ax.axvspan(rank - 0.5, rank + 0.5, color="#F2F2F2", zorder=0, linewidth=0)
    if theory is not None and predicted.size:
        label = f"predicted KL ({theory.label})"
        positive = predicted > floor
        ax.plot(ranks[: predicted.size], np.maximum(predicted, floor), color=THEORY, lw=1.2, alpha=0.55, zorder=3)
        ax.plot(ranks[: predicted.size][positive], predicted[positive], "D", color=THEORY, ms=5.5,
                markeredgecolor="white", markeredgewidth=0.6, label=label, zorder=4)
        if (~positive).any():
            ax.plot(ranks[: predicted.size][~positive], np.full((~positive).sum(), floor), "v", color=THEORY,
                    ms=6.5, markeredgecolor="white", markeredgewidth=0.6, clip_on=False,
                    label="predicted collapsed (KL = 0)", zorder=4)
    ax.axhline(KL_ACTIVE_THRESHOLD, color="black", ls="--", lw=1.0, zorder=3,
               label=f"{KL_ACTIVE_THRESHOLD:g} nats (active at or above)")
    ax.set_yscale("log")
    top = float(max(np.nanmax(heights), predicted.max() if predicted.size else 0.0, level.epsilon))
    ax.set_ylim(floor, top * 3.0)
    ax.set_xlim(-0.6, order.size - 0.4)
    ax.set_xticks(ranks)
    ax.set_xticklabels([str(j) for j in order], fontsize=8 if order.size <= 32 else 6.5,
                       rotation=0 if order.size <= 32 else 90)
    ax.set_xlabel(f"dimension of {level.name} (sorted by KL, largest first; tick = dimension index)")
    ax.set_ylabel("KL per dimension (nats)")
    ax.grid(True, axis="y", which="major", alpha=0.3, zorder=1)
    more = level.latent_dim - order.size
    headline = f"{level.name}: {level.n_collapsed} of {level.latent_dim} dimensions collapsed"
    if more > 0:
        headline += f" ({more} with the smallest KL not shown)"
    if theory is not None:
        headline += (f"\ntheory ({theory.label}): {theory.n_active_predicted} active predicted{theory.qualifier}, "
                     f"{theory.n_active_measured} measured")
    ax.set_title(headline, loc="left")



def plot_kl_heatmap(history: Sequence[dict[str, Any]], level: int = 0, *, epsilon: float = KL_ACTIVE_THRESHOLD,
                    name: str | None = None, max_dims: int = 64) -> Figure | None:
    """KL per dimension over epochs as a heatmap (rows: dimensions ordered by their final KL).

    The colour scale is logarithmic; KL can be exactly 0, so values below the floor
    (10⁻⁵ of the largest value, or the smallest positive one if larger) are drawn at the floor, and
    the colour bar marks ε. Returns ``None`` when no record has ``kl_per_dim`` for ``level``.

    Parameters
    ----------
    history : sequence of dict
        ``metrics.jsonl`` records (``epoch``, ``kl_per_dim``: per level a list per dimension).
    level : int
        Which latent level (0 = bottom).
    epsilon : float
        The collapse threshold, marked on the colour bar, nats.
    name : str, optional
        The level's name for labels (default ``z`` / ``z{level+1}``).
    """
    records = [r for r in history if isinstance(r.get("kl_per_dim"), list) and len(r["kl_per_dim"]) > level]
    if not records:
        return None
    n_levels = len(records[-1]["kl_per_dim"])
    name = name or level_name(level, n_levels)
    width = max(len(r["kl_per_dim"][level]) for r in records)
    matrix = np.full((len(records), width), np.nan)
    for i, record in enumerate(records):
        values = np.asarray(record["kl_per_dim"][level], float)
        matrix[i, : values.size] = values
    final = np.nan_to_num(matrix[-1], nan=-np.inf)
    order = np.argsort(-final, kind="stable")[:max_dims]
    data = matrix[:, order].T                                       # (dims, epochs)
    finite = data[np.isfinite(data)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    positive = finite[finite > 0]
    vmin = max(vmax * 1e-5, float(positive.min()) if positive.size else vmax * 1e-5)
    if vmin >= vmax:
        vmin = vmax / 10
    epochs = epochs_of(records)
    fig = new_figure(max(6.5, min(12.0, 4.0 + 0.12 * len(records))), max(2.8, min(9.0, 1.3 + 0.24 * order.size)))
    ax = fig.subplots()
    style_axes(ax)
    shown = np.where(np.isfinite(data), np.maximum(data, vmin), np.nan)
    first, last = float(epochs[0]), float(epochs[-1])
    step = (last - first) / max(len(records) - 1, 1) or 1.0
    image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="viridis",
                      norm=LogNorm(vmin=vmin, vmax=vmax),
                      extent=(first - step / 2, last + step / 2, order.size - 0.5, -0.5))
    ax.set_yticks(np.arange(order.size))
    ax.set_yticklabels([f"{name}[{j}]" for j in order], fontsize=8 if order.size <= 24 else 6)
    if order.size > 40:
        for i, tick in enumerate(ax.yaxis.get_ticklabels()):
            tick.set_visible(i % 2 == 0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"dimension of {name} (ordered by final KL)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    marked = vmin < epsilon < vmax
    bar.set_label("KL (nats, log scale)" + (f"; dashed: ε = {epsilon:g}" if marked else ""), fontsize=8.5)
    clipped = bool(np.any(finite < vmin))
    if marked:
        bar.ax.axhline(epsilon, color="white", lw=2.2)
        bar.ax.axhline(epsilon, color="black", lw=1.0, ls="--")
    more = width - order.size
    title = f"{name}: KL per dimension over training" + (f" ({more} smallest not shown)" if more else "")
    if clipped:
        title += f"\nvalues below {vmin:.1e} nats (KL can be 0) drawn in the darkest colour"
    ax.set_title(title, loc="left")
    return fig

