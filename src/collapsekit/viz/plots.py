"""The report's figures: per-dimension KL against the theory, KL over epochs, activity, images.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so no global
figure registry, no display, safe in threads) or ``None`` when it does not apply (no history, no
images). Colours are the Okabe–Ito palette, readable with every common colour-vision deficiency;
state is never shown by colour alone (collapsed bars are also hatched, lines also differ in
marker). Every quantity is labelled with its unit (nats).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from collapsekit.activity import KL_ACTIVE_THRESHOLD, count_active
from collapsekit.diagnostics.report import CollapseReport, LevelReport

__all__ = ["PALETTE", "plot_activity_over_epochs", "plot_kl_heatmap", "plot_kl_per_dim", "plot_reconstructions",
           "plot_traversals", "tile"]

#: Okabe & Ito's colour-blind-safe palette.
PALETTE = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
           "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000"}
_LEVEL_COLOURS = [PALETTE[c] for c in ("blue", "vermillion", "green", "purple", "orange", "sky")]
_LEVEL_MARKERS = ["o", "s", "^", "D", "v", "P"]
_ACTIVE = PALETTE["blue"]
_COLLAPSED = "#BDBDBD"
_THEORY = PALETTE["vermillion"]
_RC = {"font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "legend.fontsize": 8.5,
       "axes.spines.top": False, "axes.spines.right": False}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5)


def level_name(index: int, n_levels: int) -> str:
    """``"z"`` for a one-level model, ``"z1"``, ``"z2"``, ... in a hierarchy."""
    return "z" if n_levels == 1 else f"z{index + 1}"


# -- per-dimension KL, sorted, with the theory -------------------------------------------------------
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
    fig = _figure(max(9.0, min(15.0, 5.6 + 0.26 * widest)), 0.4 + 3.3 * len(levels))
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
    _style(ax)
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
        ax.bar(ranks[~is_collapsed], heights[~is_collapsed] - floor, bottom=floor, width=width, color=_ACTIVE,
               edgecolor="white", linewidth=0.4, label="measured KL (active)", zorder=2)
    if is_collapsed.any():
        ax.bar(ranks[is_collapsed], heights[is_collapsed] - floor, bottom=floor, width=width, color=_COLLAPSED,
               edgecolor="#616161", hatch="///", linewidth=0.6, label="measured KL (collapsed)", zorder=2)
        for rank in ranks[is_collapsed]:
            ax.axvspan(rank - 0.5, rank + 0.5, color="#F2F2F2", zorder=0, linewidth=0)
    if theory is not None and predicted.size:
        label = f"predicted KL ({theory.label})"
        positive = predicted > floor
        ax.plot(ranks[: predicted.size], np.maximum(predicted, floor), color=_THEORY, lw=1.2, alpha=0.55, zorder=3)
        ax.plot(ranks[: predicted.size][positive], predicted[positive], "D", color=_THEORY, ms=5.5,
                markeredgecolor="white", markeredgewidth=0.6, label=label, zorder=4)
        if (~positive).any():
            ax.plot(ranks[: predicted.size][~positive], np.full((~positive).sum(), floor), "v", color=_THEORY,
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
        headline += (f"\ntheory ({theory.label}): {theory.n_active_predicted} active predicted, "
                     f"{theory.n_active_measured} measured")
    ax.set_title(headline, loc="left")


# -- KL per dimension over epochs ------------------------------------------------------------------
def _epochs(history: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.asarray([record.get("epoch", i + 1) for i, record in enumerate(history)], float)


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
    epochs = _epochs(records)
    fig = _figure(max(6.5, min(12.0, 4.0 + 0.12 * len(records))), max(2.8, min(9.0, 1.3 + 0.24 * order.size)))
    ax = fig.subplots()
    _style(ax)
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


# -- active units and mutual information over epochs ------------------------------------------------
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
    epochs = _epochs(records)
    kl_levels = _per_level_series(records, "kl_per_level")
    if kl_levels is None and any("kl" in r for r in records):
        kl_levels = _per_level_series(records, "kl")
    per_dim = [r.get("kl_per_dim") for r in records]
    n_levels = max([len(s) for s in (kl_levels, _per_level_series(records, "active_units")) if s] or [1])
    names = [level_name(i, n_levels) for i in range(n_levels)]
    fig = _figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    for ax in axes:
        _style(ax)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    def line(ax: Any, values: np.ndarray, i: int, label: str, dashed: bool = False) -> None:
        ax.plot(epochs, values, ls="--" if dashed else "-", marker=_LEVEL_MARKERS[i % 6], ms=3.5, lw=1.6,
                color=_LEVEL_COLOURS[i % 6], label=label)

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
        _note(ax, "no KL per dimension\nin this run's metrics", centre=True)
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
        _note(ax, "minibatch I(x; z) not recorded\nin this run's metrics (older run)", centre=True)
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


def _note(ax: Any, text: str, *, centre: bool = False) -> None:
    ax.text(0.5 if centre else 0.03, 0.5 if centre else 0.04, text, transform=ax.transAxes, fontsize=8.5,
            ha="center" if centre else "left", va="center" if centre else "bottom", color="#424242",
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "#FFF8E1", "edgecolor": PALETTE["orange"]})


# -- reconstructions and traversals ---------------------------------------------------------------
def _as_tensor(values: Any, reference: Any) -> Any:
    import torch

    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    return tensor.to(device=reference.device, dtype=reference.dtype)


def _reference(model: Any) -> Any:
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor
    return torch.zeros(())


class _Decoder:
    """Posterior means and decoded means for our three model families."""

    def __init__(self, model: Any, conditional: bool) -> None:
        self.model = model
        self.conditional = conditional
        self.hierarchical = hasattr(model, "decoders")

    def posterior_mean(self, x: Any, y: Any) -> Any:
        output = self.model(x, y) if self.conditional else self.model(x)
        loc = output.levels[0].posterior.loc
        return loc[0] if loc.dim() > 2 else loc                  # (S, B, d) posteriors share S = 1

    def decode(self, z: Any, x: Any) -> Any:
        if self.hierarchical:
            out = self.model.decoders[0](z)
        elif self.conditional:
            out = self.model.decoder(x, z)
        else:
            out = self.model.decoder(z)
        return self.model.likelihood(out).mean


def _merge_images(merge: Callable[..., Any] | None, x: np.ndarray, target: np.ndarray,
                  image_shape: tuple[int, ...]) -> np.ndarray:
    """Whole images from (condition, target) rows; ``merge`` may take ``side`` (like quadrant_merge)."""
    if merge is None:
        return target
    try:
        parameters = inspect.signature(merge).parameters
    except (TypeError, ValueError):
        parameters = {}                                              # type: ignore[assignment]
    side = parameters.get("side")
    if side is not None and side.default is inspect.Parameter.empty:
        return np.asarray(merge(x, target, int(image_shape[0])))
    return np.asarray(merge(x, target))


class _Images:
    """Shared preparation of reconstructions and traversals; ``None``-returning checks."""

    def __init__(self, model: Any, x: Any, y: Any, image_shape: Sequence[int] | None,
                 merge: Callable[..., Any] | None, n: int) -> None:
        self.ok = False
        if image_shape is None or model is None or x is None:
            return
        self.shape = tuple(int(s) for s in image_shape)
        if len(self.shape) != 2:
            return
        self.reference = _reference(model)
        self.x = _as_tensor(x, self.reference)[:n]
        self.y = None if y is None else _as_tensor(y, self.reference)[:n]
        self.merge = merge
        self.decoder = _Decoder(model, conditional=self.y is not None)
        target_dim = int((self.y if self.y is not None else self.x).shape[-1])
        pixels = self.shape[0] * self.shape[1]
        if merge is None and target_dim != pixels:
            return
        self.ok = True

    def images(self, condition: Any, target: Any) -> np.ndarray:
        x = condition.detach().cpu().numpy().astype(np.float64)
        t = target.detach().cpu().numpy().astype(np.float64)
        merged = _merge_images(self.merge, x, t, self.shape) if self.y is not None else t
        return merged.reshape(-1, *self.shape)

    def condition_mask(self) -> np.ndarray | None:
        if self.y is None or self.merge is None:
            return None
        ones = np.ones((1, int(self.x.shape[-1])))
        zeros = np.zeros((1, int(self.y.shape[-1])))
        return _merge_images(self.merge, ones, zeros, self.shape).reshape(self.shape)


def _eval(model: Any) -> Any:
    import contextlib

    import torch

    @contextlib.contextmanager
    def scope() -> Any:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            model.train(was_training)

    return scope()


def _mask_segments(mask: np.ndarray) -> list[list[tuple[float, float]]]:
    """Pixel-edge segments around the pixels where ``mask`` is set (image coordinates)."""
    inside = np.pad(mask > 0.5, 1)
    segments: list[list[tuple[float, float]]] = []
    for r, c in zip(*np.nonzero(inside)):
        y, x = r - 1.5, c - 1.5                      # pixel (r-1, c-1) spans [x, x+1] × [y, y+1]
        if not inside[r - 1, c]:
            segments.append([(x, y), (x + 1, y)])
        if not inside[r + 1, c]:
            segments.append([(x, y + 1), (x + 1, y + 1)])
        if not inside[r, c - 1]:
            segments.append([(x, y), (x, y + 1)])
        if not inside[r, c + 1]:
            segments.append([(x + 1, y), (x + 1, y + 1)])
    return segments


def gap(image_shape: Sequence[int]) -> int:
    """Pixels between the tiles of an image grid."""
    return max(1, int(image_shape[0]) // 8)


def tile(mosaic: np.ndarray, row: int, col: int, image_shape: Sequence[int]) -> np.ndarray:
    """The image at (row, col) of a grid drawn by :func:`plot_reconstructions` / :func:`plot_traversals`."""
    height, width = int(image_shape[0]), int(image_shape[1])
    g = gap(image_shape)
    top, left = g + row * (height + g), g + col * (width + g)
    return np.asarray(mosaic)[top:top + height, left:left + width]


def _grid(ax: Any, images: np.ndarray, lo: float, hi: float, mask: np.ndarray | None) -> None:
    """Draw ``images`` (rows, cols, H, W) as one mosaic with thin separators (one imshow: fast, crisp)."""
    from matplotlib.collections import LineCollection

    rows, cols, height, width = images.shape
    g = gap((height, width))
    mosaic = np.full((g + rows * (height + g), g + cols * (width + g)), np.nan)
    for r in range(rows):
        for c in range(cols):
            top, left = g + r * (height + g), g + c * (width + g)
            mosaic[top:top + height, left:left + width] = np.clip(images[r, c], lo, hi)
    colours = colormaps["gray_r"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=colours, vmin=lo, vmax=hi, interpolation="nearest")
    frames = [[(left - 0.5, top - 0.5), (left + width - 0.5, top - 0.5), (left + width - 0.5, top + height - 0.5),
               (left - 0.5, top + height - 0.5), (left - 0.5, top - 0.5)]
              for top in (g + r * (height + g) for r in range(rows))
              for left in (g + c * (width + g) for c in range(cols))]
    ax.add_collection(LineCollection(frames, colors="#BDBDBD", linewidths=0.7))
    if mask is not None and 0 < mask.mean() < 1:
        base = _mask_segments(mask)
        segments = [[(x + g + c * (width + g), y + g + r * (height + g)) for x, y in segment]
                    for r in range(rows) for c in range(cols) for segment in base]
        ax.add_collection(LineCollection(segments, colors=PALETTE["orange"], linewidths=1.3))
    ax.set_xlim(-0.5, mosaic.shape[1] - 0.5)
    ax.set_ylim(mosaic.shape[0] - 0.5, -0.5)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([g + c * (width + g) + (width - 1) / 2 for c in range(cols)])
    ax.set_yticks([g + r * (height + g) + (height - 1) / 2 for r in range(rows)])
    ax.set_xticklabels([])
    ax.set_yticklabels([])


def _range(images: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.nanmin(images)), float(np.nanmax(images))
    if lo >= 0 and hi <= 1:
        return 0.0, 1.0
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def plot_reconstructions(model: Any, x: Any, y: Any = None, *, image_shape: Sequence[int] | None, n: int = 8,
                         merge: Callable[..., Any] | None = None) -> Figure | None:
    """Data (top row) and their reconstructions from the posterior mean (bottom row).

    The posterior mean of the first latent level is decoded and the likelihood's mean drawn
    (sigmoid of the logits for a Bernoulli likelihood). For a CVAE (``y`` given) the target is y
    and the condition x is kept: with ``merge`` (e.g. :func:`~collapsekit.data.quadrant_merge`,
    called as ``merge(x, y, side)``, or any ``merge(x, y)``) whole images are shown, the
    condition outlined in orange. For a hierarchy z₁'s mean is decoded by ``decoders[0]``.
    The images form one mosaic (the single ``AxesImage`` of ``fig.axes[0]``; :func:`tile` cuts
    one out).

    Returns ``None`` when there is nothing to draw as an image (no ``image_shape``, or a target that
    is not an image and no ``merge``).
    """
    prepared = _Images(model, x, y, image_shape, merge, n)
    if not prepared.ok:
        return None
    with _eval(model):
        mu = prepared.decoder.posterior_mean(prepared.x, prepared.y)
        mean = prepared.decoder.decode(mu, prepared.x)
    target = prepared.y if prepared.y is not None else prepared.x
    data = prepared.images(prepared.x, target)
    recon = prepared.images(prepared.x, mean)
    lo, hi = _range(data)
    count = data.shape[0]
    aspect = prepared.shape[1] / prepared.shape[0]
    fig = _figure(max(4.5, 1.0 * count * aspect + 1.6), 2.7)
    ax = fig.subplots()
    _grid(ax, np.stack([data, recon]), lo, hi, prepared.condition_mask())
    ax.set_yticklabels(["data", "reconstruction"], fontsize=9)
    ax.set_xticklabels([f"#{i}" for i in range(count)], fontsize=8, color="#616161")
    if prepared.decoder.hierarchical:
        what = "Reconstructions: z₁'s posterior mean decoded by decoders[0] (first level of the hierarchy)"
    elif prepared.y is not None:
        what = "Reconstructions of y from (x, posterior mean of z)" + (
            "; condition x outlined" if prepared.condition_mask() is not None else "")
    else:
        what = "Reconstructions: the posterior mean of z decoded (likelihood mean)"
    ax.set_title(what, loc="left", fontsize=10)
    return fig


def plot_traversals(model: Any, x: Any, y: Any = None, *, order: Sequence[int], image_shape: Sequence[int] | None,
                    n_dims: int = 8, span: float = 2.5, steps: int = 9, eta_enc: float | None = None,
                    kl: Sequence[float] | None = None, collapsed: Sequence[bool] | None = None,
                    merge: Callable[..., Any] | None = None, example: int = 0) -> Figure | None:
    """Latent traversals: one row per dimension (the first ``n_dims`` of ``order``, i.e. by KL).

    Around the posterior mean μ of one example (``x[example]``), dimension j is set to
    μ_j + t·η_enc for ``steps`` values of t in [−span, span], the others kept, and the decoder's
    mean image is drawn. A collapsed dimension's row stays constant: its decoder ignores it. For a
    CVAE the condition x is kept fixed and whole images shown through ``merge``; for a hierarchy the
    first level z₁ is traversed (decoded by ``decoders[0]``), as the title says. The images form
    one mosaic (:func:`tile` cuts one out).

    Parameters
    ----------
    order : sequence of int
        Dimension indices, largest KL first (``LevelReport.order``).
    eta_enc : float, optional
        Traversal scale; default the model's ``eta_enc`` (1 when it has none).
    kl, collapsed : sequences, optional
        Per-dimension KL (nats) and collapse flags, printed beside each row.

    Returns ``None`` for non-image data (see :func:`plot_reconstructions`).
    """
    prepared = _Images(model, x, y, image_shape, merge, max(example + 1, 1))
    dims = [int(j) for j in list(order)[:n_dims]]
    if not prepared.ok or not dims:
        return None
    import torch

    scale = float(eta_enc if eta_enc is not None else getattr(model, "eta_enc", 1.0))
    offsets = np.linspace(-span, span, int(steps))
    x_one = prepared.x[example:example + 1]
    y_one = None if prepared.y is None else prepared.y[example:example + 1]
    with _eval(model):
        mu = prepared.decoder.posterior_mean(x_one, y_one)[0]
        rows = []
        for j in dims:
            z = mu.repeat(len(offsets), 1)
            z[:, j] = mu[j] + torch.as_tensor(offsets * scale, dtype=z.dtype, device=z.device)
            condition = x_one.expand(len(offsets), -1)
            rows.append(prepared.images(condition, prepared.decoder.decode(z, condition)))
    images = np.stack(rows)                                       # (dims, steps, H, W)
    reference = prepared.images(x_one, y_one if y_one is not None else x_one)
    lo, hi = _range(reference)                                  # the data's grey levels, not the decoder's
    aspect = prepared.shape[1] / prepared.shape[0]
    fig = _figure(max(5.5, 0.78 * len(offsets) * aspect + 2.4), 0.78 * len(dims) + 1.0)
    ax = fig.subplots()
    _grid(ax, images, lo, hi, prepared.condition_mask())
    labels = []
    for j in dims:
        label = f"dim {j}"
        if kl is not None and j < len(kl):
            label += f"\nKL {kl[j]:.3g} nats"
        if collapsed is not None and j < len(collapsed) and bool(collapsed[j]):
            label += "\ncollapsed"
        labels.append(label)
    ax.set_yticklabels(labels, fontsize=8)
    for j, tick in zip(dims, ax.get_yticklabels()):
        if collapsed is not None and j < len(collapsed) and bool(collapsed[j]):
            tick.set_color("#757575")
    ax.xaxis.tick_top()
    ax.set_xticklabels(["t = 0 (μ)" if abs(t) < 1e-12 else f"{t:+.2g}".replace("-", "−") for t in offsets],
                       fontsize=8)
    hierarchical = prepared.decoder.hierarchical
    level = "z₁ (first level of the hierarchy, decoded by decoders[0])" if hierarchical else "z"
    fixed = "; condition x fixed" if y_one is not None else ""
    ax.set_title(f"Traversals of {level}: μ_j + t·η_enc, η_enc = {scale:g}{fixed}", loc="left", fontsize=10)
    return fig
