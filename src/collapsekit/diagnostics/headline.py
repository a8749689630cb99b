"""The headline count of a model on data: one posterior pass, the mean KL per dimension, the one rule.

The trainer's final line, its ``evaluation.json`` and ``diagnose`` all measure through here (or through
:func:`~collapsekit.diagnostics.diagnose.diagnose_model`, which runs the same pass with the same defaults),
so that on the same weights and data they report the same count exactly.
"""

from __future__ import annotations

from torch import nn

from collapsekit.activity import LevelActivity, level_activity
from collapsekit.diagnostics.metrics import kl_per_dim
from collapsekit.diagnostics.posterior import collect_posterior

#: The statistics pass's defaults, shared with ``diagnose_model`` so that both give the same numbers.
BATCH_SIZE = 1024
POSTERIOR_SAMPLES = 8
SEED = 0


def measure_activity(model: nn.Module, x: object, y: object | None = None, *, batch_size: int = BATCH_SIZE,
                     n_samples: int = POSTERIOR_SAMPLES, seed: int = SEED) -> list[LevelActivity]:
    """The headline count of every latent level of one of collapsekit's models on ``x`` (and ``y``).

    Parameters
    ----------
    model : nn.Module
        A VAE, CVAE or hierarchy of :mod:`collapsekit.models`, on any device.
    x, y : tensor or array
        The evaluation data (y: a CVAE's outputs).
    batch_size, n_samples, seed
        As for :func:`~collapsekit.diagnostics.posterior.collect_posterior` (n_samples only matters for
        the Monte Carlo KL of a hierarchy's lower levels).

    Returns
    -------
    list of LevelActivity
        Bottom level first; the last is the summary (the top of a hierarchy).
    """
    stats = collect_posterior(model, x, y, batch_size=batch_size, n_samples=n_samples, seed=seed)
    return level_activity([(level.name, kl_per_dim(level.kl)["kl_per_dim"]) for level in stats.levels])
