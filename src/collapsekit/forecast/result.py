"""What every forecast method returns: one :class:`Forecast` (count, interval, per-rank KL, cost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapsekit.activity import DEFINITION, count_active


@dataclass
class Forecast:
    """A forecast of the headline count of active dimensions at the end of a configured run.

    Attributes
    ----------
    n_active : int
        Forecast count of active dimensions (:mod:`collapsekit.activity`'s rule) of the summary level (the top
        level of a hierarchy).
    interval : (int, int)
        The stated interval ``[lo, hi]`` that should hold the measured count (its width is tuned on the benchmark's
        tuning split, docs/forecast.md).
    latent_size : int
        Dimensions of the summary level.
    kl_per_rank : list of float
        Forecast KL (nats per example) of each dimension, largest first.
    method : str
        The method's name (``closed_form``, ``posthoc``, ``adjusted``, ``early``).
    cost_fraction : float
        Optimiser steps the forecast spent, as a fraction of the configured run's steps.
    notes : list of str
        What the forecast assumed or could not use.
    """

    n_active: int
    interval: tuple[int, int]
    latent_size: int
    kl_per_rank: list[float]
    method: str
    cost_fraction: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        lo, hi = (int(v) for v in self.interval)
        n = int(self.n_active)
        lo, hi = max(0, min(lo, n)), min(self.latent_size, max(hi, n))
        self.interval = (lo, hi)
        self.n_active = n

    @classmethod
    def from_kl(cls, kl: Any, *, interval: tuple[int, int] | None = None, method: str, cost_fraction: float = 0.0,
                notes: list[str] | None = None) -> "Forecast":
        """The forecast whose count is the headline rule applied to ``kl`` (per dimension, any order)."""
        ranked = np.sort(np.nan_to_num(np.asarray(kl, float), nan=0.0))[::-1]
        n = count_active(ranked)
        return cls(n_active=n, interval=interval if interval is not None else (n, n), latent_size=int(ranked.size),
                   kl_per_rank=[float(v) for v in ranked], method=method, cost_fraction=float(cost_fraction),
                   notes=list(notes or []))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``n_active``, ``interval``, ``latent_size``, ``method``, ``cost_fraction``, ``kl_per_rank``,
        ``definition``, ``notes``."""
        return {"n_active": self.n_active, "interval": [self.interval[0], self.interval[1]],
                "latent_size": self.latent_size, "method": self.method, "cost_fraction": float(self.cost_fraction),
                "kl_per_rank": [float(v) for v in self.kl_per_rank], "definition": DEFINITION, "notes": self.notes}
