"""Latent activity over training: active dimensions, minibatch I(x; z) and KL per level, per epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from collapsekit.activity import KL_ACTIVE_THRESHOLD, count_active
from collapsekit.viz.style import LEVEL_COLOURS, LEVEL_MARKERS, epochs_of, level_name, new_figure, note, style_axes


def _per_level_series(records: Sequence[dict[str, Any]], key: str) -> list[np.ndarray] | None:
    """``records[i][key][level]`` as one array per level (NaN where a record lacks it); None if absent."""
    present = [r.get(key) for r in records]
    if all(v is None for v in present):
        return None
    n_levels = max(len(v) if isinstance(v, (list, tuple)) else 1 for v in present if v is not None)
    series = [np.full(len(records), np.nan) for _ in range(n_levels)]
    for i, value in enumerate(present):
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for level, v in enumerate(values):
            if v is not None:
                series[level][i] = float(v)
    return series


def _ceilings(records: Sequence[dict[str, Any]], given: float | Sequence[float] | None,
              n_levels: int) -> list[float | None]:
    if given is None:
        for record in reversed(records):
            if record.get("mutual_info_ceiling") is not None:
                given = record["mutual_info_ceiling"]
                break
            if record.get("batch_size"):
                given = math.log(float(record["batch_size"]))
                break
    if given is None:
        return [None] * n_levels
    if isinstance(given, (int, float)):
        return [float(given)] * n_levels
    values: list[float | None] = [None if v is None else float(v) for v in given]
    return (values + [values[-1]] * n_levels)[:n_levels] if values else [None] * n_levels


def plot_activity_over_epochs(history: Sequence[dict[str, Any]], *,
                              mi_ceiling: float | Sequence[float] | None = None,
                              latent_dims: Sequence[int] | None = None) -> Figure | None:
    """Active units, minibatch I(x;z) and KL per level over epochs, one line per level.

    Panels: (1) the headline count of active dimensions (epoch-mean KL ≥ 0.01 nats, on the epoch's
    batches) and, dashed, Burda et al.'s active units where recorded; (2) He et al.'s minibatch MI estimate with its log B ceiling (from
    ``mi_ceiling``, a record's ``mutual_info_ceiling`` or ``batch_size``), or a note that the run did
    not record it; (3) KL per level (the rate), nats. Returns ``None`` for an empty history.
    """
    records = [r for r in history if isinstance(r, dict)]
    if not records:
        return None
    epochs = epochs_of(records)
    kl_levels = _per_level_series(records, "kl_per_level")
    if kl_levels is None and any("kl" in r for r in records):
        kl_levels = _per_level_series(records, "kl")
    per_dim = [r.get("kl_per_dim") for r in records]
    n_levels = max([len(s) for s in (kl_levels, _per_level_series(records, "active_units")) if s] or [1])
    names = [level_name(i, n_levels) for i in range(n_levels)]
    fig = new_figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    for ax in axes:
        style_axes(ax)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    def line(ax: Any, values: np.ndarray, i: int, label: str, dashed: bool = False) -> None:
        ax.plot(epochs, values, ls="--" if dashed else "-", marker=LEVEL_MARKERS[i % 6], ms=3.5, lw=1.6,
                color=LEVEL_COLOURS[i % 6], label=label)

    missing: list[str] = []
    ax = axes[0]
    # The headline count (collapsekit.activity) from every epoch's KL per dimension, on that epoch's
    # batches; Burda's active units, where recorded, dashed beside it under their own name.
    if any(isinstance(v, list) for v in per_dim):
        for i in range(n_levels):
            counts = np.asarray([count_active(v[i]) if isinstance(v, list) and len(v) > i else np.nan
                                 for v in per_dim], float)
            line(ax, counts, i, f"{names[i]}: active (KL ≥ {KL_ACTIVE_THRESHOLD:g} nats)")
    burda = _per_level_series(records, "active_units")
    if burda is not None:
        for i, values in enumerate(burda):
            line(ax, values, i, f"{names[i] if i < len(names) else f'z{i + 1}'}: Burda AU", dashed=True)
    else:
        missing.append("active units")
    if burda is None and not any(isinstance(v, list) for v in per_dim):
        note(ax, "no KL per dimension\nin this run's metrics", centre=True)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("active dimensions (epoch's batches);\ndashed: Burda AU (Var E[z_j] > 0.01)", loc="left")
    ax.set_ylabel("dimensions (count)")
    if latent_dims:
        ax.set_ylim(-0.3, max(latent_dims) + 0.5)
    else:
        ax.set_ylim(bottom=-0.3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))

    ax = axes[1]
    mi = _per_level_series(records, "mutual_info_minibatch")
    if mi is not None:
        ceilings = _ceilings(records, mi_ceiling, len(mi))
        for i, values in enumerate(mi):
            line(ax, values, i, f"{names[i] if i < len(names) else f'z{i + 1}'}")
        for value in sorted({c for c in ceilings if c is not None}):
            ax.axhline(value, color="black", ls=":", lw=1.2, label=f"log B = {value:.3g} nats (ceiling)")
        ax.set_title("I(x; z), minibatch estimate", loc="left")
    else:
        missing.append("mutual information")
        note(ax, "minibatch I(x; z) not recorded\nin this run's metrics (older run)", centre=True)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("I(x; z), minibatch estimate", loc="left")
    ax.set_ylabel("mutual information (nats)")

    ax = axes[2]
    if kl_levels is not None:
        for i, values in enumerate(kl_levels):
            line(ax, values, i, f"{names[i] if i < len(names) else f'z{i + 1}'}")
    ax.set_title("KL per level (rate)", loc="left")
    ax.set_ylabel("KL (nats per example)")
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if handles and (n_levels > 1 or any(label.startswith("log B") for label in labels)):
            ax.legend(frameon=True, framealpha=0.92, edgecolor="#DDDDDD")
    suffix = f" — not recorded: {', '.join(missing)}" if missing else ""
    fig.suptitle(f"Latent activity over training{suffix}", fontsize=11, fontweight="bold", x=0.01, ha="left")
    return fig

