"""The report's figures: per-dimension KL against the theory, KL over epochs, activity, images.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so no global
figure registry, no display, safe in threads) or ``None`` when it does not apply (no history, no
images). Colours are the Okabe–Ito palette, readable with every common colour-vision deficiency;
state is never shown by colour alone (collapsed bars are also hatched, lines also differ in
marker). Every quantity is labelled with its unit (nats).

One module per figure family: :mod:`.kl` (KL per dimension, sorted and over epochs), :mod:`.activity_over_epochs`
(latent activity over training), :mod:`.images` (reconstructions, traversals); what they share is
:mod:`.style`. This module re-exports them.
"""

from __future__ import annotations

from collapsekit.viz.activity_over_epochs import plot_activity_over_epochs
from collapsekit.viz.images import gap, plot_reconstructions, plot_traversals, tile
from collapsekit.viz.kl import plot_kl_heatmap, plot_kl_per_dim
from collapsekit.viz.style import PALETTE, level_name

__all__ = ["PALETTE", "gap", "level_name", "plot_activity_over_epochs", "plot_kl_heatmap", "plot_kl_per_dim",
           "plot_reconstructions", "plot_traversals", "tile"]
