"""The data spectrum against the collapse threshold: the picture behind every prediction."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from collapsekit._io import atomic_path
from collapsekit.theory.prediction import Prediction

_SPECTRUM_LABEL = {"vae": "θ = eig E[xxᵀ]", "mhvae": "θ = eig E[xxᵀ]",
                   "cvae": "θ = eig E  (residual of y given x)"}


def _setting_label(prediction: Prediction, varying: Sequence[str]) -> str:
    from collapsekit.theory.prediction import format_setting, symbol

    hyper = prediction.hyperparameters
    parts = [f"{symbol(k)}={format_setting(hyper[k])}" for k in varying] or ["threshold"]
    return f"{', '.join(parts)}: {prediction.n_active}/{prediction.latent_dim} active"


def plot_spectrum(predictions: Sequence[Prediction], path: str | os.PathLike[str], *,
                  title: str | None = None) -> Path:
    """Draw θ per latent mode (log scale) with each prediction's threshold, and save a PNG.

    A mode is zeroed where θ is at or below the threshold line of a setting. All predictions
    must share one model and data spectrum (a hyper-parameter grid). The file is written
    atomically (temporary file, then rename). Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not predictions:
        raise ValueError("plot_spectrum needs at least one prediction")
    first = predictions[0]
    varying = [k for k in first.hyperparameters
               if len({repr(p.hyperparameters.get(k)) for p in predictions}) > 1]
    spectrum = first.spectrum
    k = first.latent_dim
    index = np.arange(1, spectrum.size + 1)
    positive = spectrum > 0

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    latent = positive & (index <= k)
    ax.plot(index[latent], spectrum[latent], "o", color="black", ms=5, label=f"θ of the {k} latent modes", zorder=3)
    rest = positive & (index > k)
    if rest.any():
        ax.plot(index[rest], spectrum[rest], ".", color="0.65", ms=4, label="θ beyond the latent size", zorder=2)
    colours = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, len(predictions)))
    for prediction, colour in zip(predictions, colours):
        threshold = np.asarray(prediction.threshold, float)
        label = _setting_label(prediction, varying)
        if np.all(np.isneginf(threshold)):
            ax.plot([], [], color=colour, label=label + " (never zero)")
            continue
        steps = np.arange(1, threshold.size + 1)
        ax.step(steps, np.where(np.isfinite(threshold), threshold, np.nan), where="mid",
                color=colour, lw=1.8, label=label)
    ax.set_yscale("log")
    # Keep the decades that decide collapse: the latent θ and the thresholds, not rounding noise.
    finite = np.concatenate([np.asarray(p.threshold, float) for p in predictions])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    relevant = np.concatenate([spectrum[latent], finite])
    if relevant.size:
        ax.set_ylim(bottom=relevant.min() / 4, top=relevant.max() * 2.5)
    ax.set_xlabel("latent mode (data spectrum in descending order)")
    ax.set_ylabel(_SPECTRUM_LABEL.get(first.model, "θ"))
    ax.set_title(title or f"{first.model.upper()}: modes with θ at or below the threshold collapse")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()

    with atomic_path(path) as temporary:
        try:
            fig.savefig(temporary, format="png")
        finally:
            plt.close(fig)
    return Path(path)
