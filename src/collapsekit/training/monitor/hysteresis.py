"""The collapse state of one latent level: per-dimension streaks and which dimensions were warned about.

The rules (the monitor's docstring, :mod:`collapsekit.training.monitor`): a dimension is confirmed
collapsed after ``patience`` consecutive epochs below the threshold; a warning waits (at most
``patience`` epochs) while other dimensions are on their way; a warned dimension is never warned about
again until it has recovered (``patience`` epochs at ``recover_factor`` × the threshold or more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Hysteresis:
    """Per-dimension streak counters of one level."""

    dim: int
    below: list[int] = field(default_factory=list)      # consecutive epochs with KL < threshold
    above: list[int] = field(default_factory=list)      # consecutive epochs with KL ≥ recover_factor·threshold
    warned: list[int] = field(default_factory=list)     # dimensions warned about and not yet recovered
    pending: int = 0                                    # consecutive epochs with confirmed, unwarned dimensions

    def __post_init__(self) -> None:
        self.below = self.below or [0] * self.dim
        self.above = self.above or [0] * self.dim

    def step(self, kl: np.ndarray, threshold: float, recover: float, patience: int) -> tuple[list[int], list[int],
                                                                                                 list[int]]:
        """Advance one epoch; return (confirmed collapsed, newly to warn about, recovered)."""
        for j, value in enumerate(kl):
            self.below[j] = self.below[j] + 1 if value < threshold else 0
            self.above[j] = self.above[j] + 1 if value >= recover * threshold else 0
        confirmed = self.confirmed(patience)
        recovered = [j for j in self.warned if self.above[j] >= patience]
        self.warned = [j for j in self.warned if j not in recovered]
        unwarned = [j for j in confirmed if j not in self.warned]
        self.pending = self.pending + 1 if unwarned else 0
        # Wait while other dimensions are on their way to confirmation, so that one warning names the
        # whole set of a collapse in progress; but never more than `patience` epochs.
        on_the_way = any(0 < self.below[j] < patience for j in range(self.dim))
        if not unwarned or (on_the_way and self.pending < patience):
            return confirmed, [], recovered
        self.warned = sorted(self.warned + unwarned)
        self.pending = 0
        return confirmed, unwarned, recovered

    def confirmed(self, patience: int) -> list[int]:
        """Dimensions below the threshold for at least ``patience`` epochs running."""
        return [j for j in range(self.dim) if self.below[j] >= patience]

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "below": list(self.below), "above": list(self.above), "warned": list(self.warned),
                "pending": self.pending}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Hysteresis:
        """Restore :meth:`to_dict` (``pending`` may be missing: it counts as 0)."""
        return cls(int(values["dim"]), [int(v) for v in values["below"]], [int(v) for v in values["above"]],
                   [int(v) for v in values["warned"]], int(values.get("pending", 0)))
