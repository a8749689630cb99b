"""The presets' figures (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from collapsekit._io import atomic_path
from collapsekit.activity import KL_ACTIVE_THRESHOLD

_MEASURED, _THEORY, _KL = "#1565c0", "#e65100", "#757575"


def _kl_bar_axes(ax: Any, floor: float, title: str, *, legend_size: float) -> None:
    """The KL-per-dimension bar panel's frame: log axis from the floor, the 0.01-nat collapse line, labels."""
    ax.axhline(KL_ACTIVE_THRESHOLD, color="#c62828", lw=1, ls="--", label=f"{KL_ACTIVE_THRESHOLD:g} nats")
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 1.5)
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel(f"KL (nats; bars floored at {floor:g})")
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=legend_size, frameon=False)
    ax.grid(alpha=0.25, axis="y")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (PNG, atomically) and close it."""
    plt = _pyplot()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=dpi)
    plt.close(fig)
    return path


@dataclass
class Panel:
    """One panel of :func:`active_panels`: measured and predicted active dimensions along one axis.

    Attributes
    ----------
    title, xlabel : str
    xs : list of float
        The trained settings.
    measured, predicted : list
        Active dimensions measured (KL ≥ 0.01 nats) and predicted at each of ``xs``.
    curve : (ndarray, ndarray) or None
        The closed form's count over a fine grid (a step curve).
    theory_label : str
        ``exact`` or ``linear-theory estimate``.
    kl : list of float or None
        Measured KL (nats) at each of ``xs``, drawn on a second axis.
    log : bool
        Logarithmic x axis.
    xticklabels : list of str or None
        Tick labels at ``xs`` (default: the values).
    latent_size : int or None
        Drawn as the top of the y axis.
    """

    title: str
    xlabel: str
    xs: list[float]
    measured: list[int]
    predicted: list[Any]
    curve: tuple[np.ndarray, np.ndarray] | None = None
    theory_label: str = "theory"
    kl: list[float] | None = None
    log: bool = False
    xticklabels: list[str] | None = None
    latent_size: int | None = None


def active_panels(panels: Sequence[Panel], path: Path, title: str) -> Path:
    """Measured active dimensions (dots) against the prediction (crosses, and the closed form's step
    curve), one panel per swept axis; measured KL in grey on a second axis."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator, NullFormatter

    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.6 * len(panels) + 0.6, 7.6), 3.9), squeeze=False,
                             constrained_layout=True)
    for ax, panel in zip(axes[0], panels):
        xs = np.asarray(panel.xs, dtype=float)
        order = np.argsort(xs, kind="stable")
        if panel.curve is not None and np.isfinite(panel.curve[1]).any():
            ax.step(panel.curve[0], panel.curve[1], where="post", color=_THEORY, lw=1.3, ls="--",
                    label=f"theory ({panel.theory_label})")
        predicted = np.asarray([np.nan if p is None else p for p in panel.predicted], dtype=float)
        if np.isfinite(predicted).any():
            ax.plot(xs[order], predicted[order], "x", color=_THEORY, ms=8, mew=1.8, label="predicted")
        ax.plot(xs[order], np.asarray(panel.measured, dtype=float)[order], "o-", color=_MEASURED, ms=6, lw=1.2,
                label=f"measured (KL ≥ {KL_ACTIVE_THRESHOLD:g} nats)")
        if panel.log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs[order], panel.xticklabels and [panel.xticklabels[i] for i in order]
                      or [f"{v:g}" for v in xs[order]])
        top = max([panel.latent_size or 0, *panel.measured, *[p for p in panel.predicted if p is not None]])
        ax.set_ylim(-0.5, top + 0.8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel("active latent dimensions")
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.grid(alpha=0.25)
        if panel.kl is not None:
            twin = ax.twinx()
            twin.plot(xs[order], np.asarray(panel.kl, dtype=float)[order], "s:", color=_KL, ms=4, lw=1,
                      label="measured KL (nats)")
            twin.set_ylabel("KL (nats)", color=_KL)
            twin.tick_params(axis="y", colors=_KL)
            twin.set_ylim(bottom=0)
            handles = ax.get_legend_handles_labels()
            extra = twin.get_legend_handles_labels()
            ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7.5, frameon=False, loc="best")
        else:
            ax.legend(fontsize=7.5, frameon=False, loc="best")
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return save(fig, path)


def _mosaic(images: np.ndarray, gap: int = 1) -> np.ndarray:
    """(n, H, W) → one row (H, n·W + gaps), gaps NaN (drawn as background)."""
    n, h, w = images.shape
    row = np.full((h, n * w + (n - 1) * gap), np.nan)
    for i, image in enumerate(images):
        row[:, i * (w + gap): i * (w + gap) + w] = image
    return row


def reconstruction_grid(originals: np.ndarray, rows: Sequence[tuple[str, np.ndarray]], path: Path,
                        title: str) -> Path:
    """Originals on top, then one labelled row of reconstructions per trained setting.

    ``originals`` and every row's images are (n, H, W) in the data's range (clipped to [0, 1]).
    """
    plt = _pyplot()
    everything = [("data", originals), *rows]
    n, h, w = originals.shape
    label_width, tile = 1.7, 0.62                  # inches: room for the labels, one image
    width = label_width + tile * n * (w + 1) / w + 0.1
    row_height = tile * 1.08
    height = row_height * len(everything) + 0.45
    fig, axes = plt.subplots(len(everything), 1, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=label_width / width, right=1 - 0.1 / width, top=1 - 0.4 / height, bottom=0.05 / height,
                        hspace=0.08)
    cmap = plt.get_cmap("gray").with_extremes(bad="#ffffff")     # the gaps between images
    for ax, (label, images) in zip(axes[:, 0], everything):
        ax.imshow(np.clip(_mosaic(np.asarray(images, dtype=float)), 0.0, 1.0), cmap=cmap, vmin=0, vmax=1,
                  interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(-0.02, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=8.5)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    return save(fig, path, dpi=120)


def collapse_by_arm(arms: Sequence[tuple[str, Sequence[float], Sequence[int], Sequence[Any]]], xlabel: str,
                    profiles: Sequence[tuple[str, Sequence[float]]], path: Path, title: str, *,
                    log: bool = False) -> Path:
    """Left: collapsed dimensions (KL < 0.01 nats) against ``xlabel`` per arm, measured (solid) and
    predicted (dashed). Right: the KL profile of each arm at one setting (:func:`kl_profiles`)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10.8, 3.9), constrained_layout=True)
    ax = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, xs, measured, predicted) in enumerate(arms):
        colour = colours[i % len(colours)]
        order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
        x = np.asarray(xs, dtype=float)[order]
        ax.plot(x, np.asarray(measured, dtype=float)[order], "o-", color=colour, label=f"{label}: measured")
        known = np.asarray([np.nan if p is None else p for p in predicted], dtype=float)[order]
        if np.isfinite(known).any():
            ax.plot(x, known, "x--", color=colour, ms=8, mew=1.6, alpha=0.8, label=f"{label}: predicted")
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ticks = sorted({float(v) for _, xs, _, _ in arms for v in xs})
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"collapsed dims (KL < {KL_ACTIVE_THRESHOLD:g} nats)")
    ax.set_title("Collapsed latent dimensions", fontsize=10, loc="left")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7.5, frameon=False)
    ax = axes[1]
    width = 0.8 / max(len(profiles), 1)
    floor = 1e-4
    for i, (label, values) in enumerate(profiles):
        kl = np.maximum(np.asarray(values, dtype=float), floor)
        ax.bar(np.arange(kl.size) + (i - (len(profiles) - 1) / 2) * width, kl, width=width, label=label,
               color=colours[i % len(colours)])
    _kl_bar_axes(ax, floor, "KL per dimension", legend_size=7.5)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return save(fig, path)


def bars_by_category(labels: Sequence[str], measured: Sequence[float], predicted: Sequence[Any], path: Path,
                     title: str, *, ylabel: str, second: tuple[str, Sequence[float], Sequence[Any]] | None = None,
                     xlabel: str = "") -> Path:
    """Measured (bars) and predicted (markers) per category; optionally a second panel the same way."""
    plt = _pyplot()
    panels = [(ylabel, measured, predicted)] + ([second] if second is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 0.4, 3.8), squeeze=False,
                             constrained_layout=True)
    x = np.arange(len(labels))
    for ax, (label, values, theory) in zip(axes[0], panels):
        ax.bar(x, np.asarray(values, dtype=float), color=_MEASURED, alpha=0.8, label="measured")
        known = np.asarray([np.nan if t is None else t for t in theory], dtype=float)
        if np.isfinite(known).any():
            ax.plot(x, known, "_", color=_THEORY, ms=22, mew=2.5, label="predicted (linear-theory estimate)")
        ax.set_xticks(x, list(labels))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.25, axis="y")
        ax.legend(fontsize=7.5, frameon=False, loc="lower right")
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return save(fig, path)


def verification_figure(points: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                        trained: Sequence[tuple[str, Sequence[float], Sequence[float]]], path: Path,
                        title: str) -> Path:
    """Left: closed-form against numerical optimum values (singular values and stds), one marker
    set per setting, with the identity line. Right: KL per dimension of each trained linear model,
    predicted (outlined) and measured (filled), largest first."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.8, 4.0), constrained_layout=True)
    ax = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    high = 0.0
    for i, (label, closed, numerical) in enumerate(points):
        ax.plot(closed, numerical, "o", ms=5, alpha=0.8, color=colours[i % len(colours)], label=label)
        high = max(high, float(np.max(closed, initial=0)), float(np.max(numerical, initial=0)))
    ax.plot([0, high * 1.05], [0, high * 1.05], color="#9e9e9e", lw=1, zorder=0)
    ax.set_xlabel("closed form")
    ax.set_ylabel("numerical minimum (L-BFGS)")
    ax.set_title("Singular values and encoder stds at the optimum", fontsize=10, loc="left")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.25)
    ax = axes[1]
    width = 0.8 / max(len(trained), 1)
    floor = 1e-4
    for i, (label, predicted, measured) in enumerate(trained):
        offset = (i - (len(trained) - 1) / 2) * width
        k = np.arange(len(measured))
        colour = colours[i % len(colours)]
        ax.bar(k + offset, np.maximum(np.asarray(measured, dtype=float), floor), width=width, color=colour,
               alpha=0.75, label=f"{label}: trained")
        ax.bar(k + offset, np.maximum(np.asarray(predicted, dtype=float), floor), width=width, fill=False,
               edgecolor="black", lw=0.9, label="closed form" if i == 0 else None)
    _kl_bar_axes(ax, floor, "Trained linear models: KL per dimension", legend_size=7)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return save(fig, path)
