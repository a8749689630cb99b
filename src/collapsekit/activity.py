"""The one definition of an active latent dimension, used by every headline count in collapsekit.

**A latent dimension is active when its rate — its KL to the prior, averaged over the examples it is
measured on — is at least 0.01 nats per example. Otherwise it is collapsed.**

    R_j = E_x KL(q(z_j | x) ‖ p(z_j)) ≥ 0.01 nats   ⇔   dimension j is active

Why this rule, and not one of the other measures:

* it answers "how many latent dimensions does my model use?": R_j bounds the information the dimension
  carries about the data, I(x; z_j) ≤ R_j, so a collapsed dimension carries under 0.01 nats;
* it is the quantity the closed-form theory predicts per dimension (``Prediction.kl_per_dim``), so a
  predicted count and a measured count apply the same rule to the same kind of number;
* it does not depend on the latent scale (Burda's active units compare a variance of means with 0.01,
  which moves with the prior std η_enc) and needs no per-example threshold (the paper's AU fraction and
  (ε, δ)-collapse count (example, dimension) pairs, a different question);
* it is cheap: the trainer's per-epoch sums already hold it, so the monitor can apply it while training.

Where it is measured, every output says so:

* after training (the trainer's final line, ``evaluation.json``, ``diagnose``, a sweep's ``summary.csv``,
  ``reproduce`` tables): the final weights, on the stated evaluation data;
* during training (the monitor): the same rule on the epoch's batches, whose weights change as it runs.

A hierarchy is counted per level; its top level is the summary. The other measures — Burda's active
units, the paper's AU fraction, (ε, δ)-collapse, Bonheme & Grzes's active/passive/mixed variables —
keep their own names wherever they appear (docs/metrics.md defines each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The rate, in nats per example, at and above which a latent dimension is active.
KL_ACTIVE_THRESHOLD = 0.01

#: The rule in one line, for reports, help texts and table captions.
DEFINITION = f"active: mean KL to the prior ≥ {KL_ACTIVE_THRESHOLD:g} nats per example; otherwise collapsed"

#: What the rule is applied to while training, for the monitor's outputs.
DURING_TRAINING = "on the epoch's batches"


def active_mask(kl_per_dim: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per dimension: is its mean KL (nats per example) at least :data:`KL_ACTIVE_THRESHOLD`?

    A NaN KL counts as not active.
    """
    kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        return kl >= KL_ACTIVE_THRESHOLD


def count_active(kl_per_dim: Sequence[float] | np.ndarray) -> int:
    """The headline count: dimensions whose mean KL is at least :data:`KL_ACTIVE_THRESHOLD` nats."""
    return int(np.count_nonzero(active_mask(kl_per_dim)))


@dataclass(frozen=True)
class LevelActivity:
    """The headline count of one latent level.

    Attributes
    ----------
    name : str
        The level (``"z"``, or ``"z1"``, ``"z2"``, ... bottom to top).
    kl_per_dim : tuple of float
        The mean KL per dimension the count was made from, nats per example.
    """

    name: str
    kl_per_dim: tuple[float, ...]

    @property
    def latent_size(self) -> int:
        return len(self.kl_per_dim)

    @property
    def active(self) -> list[bool]:
        return [bool(a) for a in active_mask(self.kl_per_dim)]

    @property
    def n_active(self) -> int:
        return count_active(self.kl_per_dim)

    @property
    def n_collapsed(self) -> int:
        return self.latent_size - self.n_active

    @property
    def collapsed_dims(self) -> list[int]:
        return [j for j, a in enumerate(self.active) if not a]

    def describe(self) -> str:
        """``"z: 11 of 16 dimensions active"``."""
        return f"{self.name}: {self.n_active} of {self.latent_size} dimensions active"


def level_activity(levels: Sequence[tuple[str, Sequence[float]]]) -> list[LevelActivity]:
    """One :class:`LevelActivity` per ``(name, kl_per_dim)``, bottom level first."""
    return [LevelActivity(str(name), tuple(float(v) for v in kl)) for name, kl in levels]


def summary_level(levels: Sequence[LevelActivity]) -> LevelActivity:
    """The level whose count is the run's summary: the top of a hierarchy (the last, bottom-up)."""
    if not levels:
        raise ValueError("no latent levels")
    return levels[-1]
