"""One latent level's running sums over an epoch, on the device: what the monitor adds per batch."""

from __future__ import annotations

import torch
from torch import Tensor


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the monitor computes and sums in for inputs of ``dtype``: float64 stays float64,
    everything else (float16, bfloat16, float32) is float32. Summed in its own dtype, an epoch of
    float16 KL overflows (inf past 65,504) and bfloat16 keeps three digits."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class LevelSums:
    """One level's running sums over an epoch, on the device of its tensors, in float32 (float64 for
    float64 inputs) whatever the inputs' dtype: the callers cast each batch first.

    Posterior means are accumulated around a per-epoch shift (the first batch's mean), so that
    E[μ²] − E[μ]² does not cancel in float32 when |mean| ≫ std.
    """

    def __init__(self, mu: Tensor) -> None:
        d = mu.shape[-1]
        self.dim = int(d)
        self.shift = mu.mean(0)
        self.kl = torch.zeros(d, dtype=mu.dtype, device=mu.device)
        self.s1 = torch.zeros_like(self.kl)
        self.s2 = torch.zeros_like(self.kl)
        self.count = 0
        self.reservoir: tuple[Tensor, Tensor] | None = None    # (loc, var) of up to mi_examples rows
        self.presummed: list[Tensor] | None = None               # Σ KL, Σ μ, Σ μ² added by add_presummed
        self.presummed_count = 0

    def add(self, kl_sum: Tensor, mu: Tensor, n: int) -> None:
        centred = mu - self.shift
        self.kl += kl_sum
        self.s1 += centred.sum(0)
        self.s2 += (centred * centred).sum(0)
        self.count += n

    def add_presummed(self, kl_sum: Tensor, mean_sum: Tensor, square_sum: Tensor, n: int) -> None:
        """Sums over ``n`` examples made elsewhere (unshifted, float64 preferred), added at packing time."""
        if self.presummed is None:
            self.presummed = [kl_sum.double(), mean_sum.double(), square_sum.double()]
        else:
            self.presummed = [a + b.double() for a, b in zip(self.presummed, (kl_sum, mean_sum, square_sum))]
        self.presummed_count += n

    def keep(self, reservoir: tuple[Tensor, Tensor], limit: int) -> None:
        """Keep ``reservoir`` (loc, var), its first ``limit`` rows, for the minibatch MI estimate when its
        batch is at least as large as the rows kept (so the newest of the largest batches). A view: no
        copy, no host sync."""
        if self.reservoir is None or reservoir[0].shape[0] >= self.reservoir[0].shape[0]:
            self.reservoir = (reservoir[0][:limit], reservoir[1][:limit])

    def packed(self) -> Tensor:
        """float64 (3d + 1,): Σ KL, Σ μ, Σ μ² (unshifted: ranks have different shifts), count."""
        shift, s1, s2 = self.shift.double(), self.s1.double(), self.s2.double()
        n = float(self.count)
        kl, mean, square = self.kl.double(), s1 + n * shift, s2 + 2 * shift * s1 + n * shift * shift
        if self.presummed is not None:
            kl, mean, square = kl + self.presummed[0], mean + self.presummed[1], square + self.presummed[2]
        return torch.cat([kl, mean, square, s1.new_tensor([n + self.presummed_count])])
