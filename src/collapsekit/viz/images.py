"""Images of a trained model: reconstructions (:func:`plot_reconstructions`) and latent traversals
(:func:`plot_traversals`), each one mosaic (:func:`tile` cuts one image out)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from collapsekit.viz.style import PALETTE, new_figure


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
    fig = new_figure(max(4.5, 1.0 * count * aspect + 1.6), 2.7)
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
    fig = new_figure(max(5.5, 0.78 * len(offsets) * aspect + 2.4), 0.78 * len(dims) + 1.0)
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
