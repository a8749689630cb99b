"""What every diagnostics figure shares: the colour-blind-safe palette, a pyplot-free figure, the axes style.

Colours are the Okabe–Ito palette, readable with every common colour-vision deficiency; state is
never shown by colour alone (collapsed bars are also hatched, lines also differ in marker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

#: Okabe & Ito's colour-blind-safe palette.
PALETTE = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
           "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000"}
LEVEL_COLOURS = [PALETTE[c] for c in ("blue", "vermillion", "green", "purple", "orange", "sky")]
LEVEL_MARKERS = ["o", "s", "^", "D", "v", "P"]
ACTIVE = PALETTE["blue"]
COLLAPSED = "#BDBDBD"
THEORY = PALETTE["vermillion"]


def new_figure(width: float, height: float) -> Figure:
    """A figure built without pyplot (no global registry, no display, safe in threads)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def style_axes(ax: Any) -> None:
    """No top or right spine; small tick labels."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5)


def level_name(index: int, n_levels: int) -> str:
    """``"z"`` for a one-level model, ``"z1"``, ``"z2"``, ... in a hierarchy."""
    return "z" if n_levels == 1 else f"z{index + 1}"



def epochs_of(history: Sequence[dict[str, Any]]) -> np.ndarray:
    """The epoch of each ``metrics.jsonl`` record (its position when it has none)."""
    return np.asarray([record.get("epoch", i + 1) for i, record in enumerate(history)], float)



def note(ax: Any, text: str, *, centre: bool = False) -> None:
    """A boxed remark on a panel (what a run did not record, ...)."""
    ax.text(0.5 if centre else 0.03, 0.5 if centre else 0.04, text, transform=ax.transAxes, fontsize=8.5,
            ha="center" if centre else "left", va="center" if centre else "bottom", color="#424242",
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "#FFF8E1", "edgecolor": PALETTE["orange"]})

