"""The fast mode's collapse-monitor sums: every run's per-batch sums kept at once, handed to each run's
:class:`~collapsekit.training.monitor.CollapseMonitor` at the epoch's end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

class StackedMonitorSums:
    """The fast mode's collapse-monitor sums: what each run's :meth:`CollapseMonitor.update_level` adds per
    batch (Σ KL, Σ μ and Σ μ² around the epoch's first batch mean, in float32, and the largest batch
    for the MI estimate), for every run at once; :meth:`hand_over` gives each run's monitor its sums."""

    def __init__(self, monitors: Sequence[Any]) -> None:
        self.monitors = list(monitors)
        self.active = any(monitor is not None for monitor in self.monitors)
        self.count = 0
        self.kl: Tensor | None = None
        self.reservoir: tuple[Tensor, Tensor] | None = None

    @torch.no_grad()
    def update(self, loc: Tensor, std: Tensor, kl_per_dim: Tensor) -> None:
        """One step: ``loc`` and ``std`` (K, B, d), ``kl_per_dim`` (K, d) the batch-mean KL."""
        if not self.active:
            return
        loc, std = loc.detach().float(), std.detach().float()
        batch = loc.shape[1]
        if self.kl is None:
            self.shift = loc.mean(1, keepdim=True)
            self.kl = torch.zeros_like(kl_per_dim, dtype=torch.float32)
            self.s1 = torch.zeros_like(self.kl)
            self.s2 = torch.zeros_like(self.kl)
        centred = loc - self.shift
        self.kl += kl_per_dim.detach().float() * batch
        self.s1 += centred.sum(1)
        self.s2 += (centred * centred).sum(1)
        self.count += batch
        if self.reservoir is None or batch >= self.reservoir[0].shape[1]:    # the largest (newest) batch
            self.reservoir = (loc, std * std)

    def hand_over(self) -> None:
        if self.kl is None or self.reservoir is None:
            return
        n = float(self.count)
        shift, s1, s2 = self.shift[:, 0].double(), self.s1.double(), self.s2.double()
        mean, square = s1 + n * shift, s2 + 2 * shift * s1 + n * shift * shift          # unshifted, float64
        for k, monitor in enumerate(self.monitors):
            if monitor is not None:
                monitor.add_sums("z", kl=self.kl[k], mean=mean[k], square=square[k], count=self.count,
                                 reservoir=(self.reservoir[0][k], self.reservoir[1][k]))
