"""A small diffusers ``AutoencoderKL`` (8×8 digits in [-1, 1] → 4 × 4 × 4 latents), built from a config and trained
here with latent diffusion's autoencoder loss reduced to L1 + weight · KL: what the adapter's and the doctor's
tests diagnose. Import it after ``optional.require("diffusers")``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderKL

from collapsekit.data.digits import load_digits

CONFIG = dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
              up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
              latent_channels=4, norm_num_groups=4, sample_size=8)
#: The digits as images in [-1, 1], (N, 1, 8, 8).
IMAGES = torch.tensor(load_digits().x, dtype=torch.float32).reshape(-1, 1, 8, 8) * 2 - 1


def l1_plus_kl(weight: float) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """Latent diffusion's autoencoder loss, reduced to L1 + weight · KL (per image, averaged over the batch)."""
    def loss_fn(model: Any, batch: torch.Tensor) -> torch.Tensor:
        posterior = model.encode(batch).latent_dist
        return (model.decode(posterior.sample()).sample - batch).abs().sum((1, 2, 3)).mean() + \
            weight * posterior.kl().mean()
    return loss_fn


def train_autoencoder_kl(weight: float, steps: int = 80) -> tuple[AutoencoderKL, torch.optim.Optimizer]:
    """A fresh model trained ``steps`` Adam steps (lr 2e-3, batches of 64 of the first 1,500 digits), seeded (~5 s)."""
    torch.manual_seed(0)
    model = AutoencoderKL(**CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = IMAGES[torch.randint(0, 1500, (64,), generator=generator)]
        optimizer.zero_grad()
        l1_plus_kl(weight)(model, batch).backward()
        optimizer.step()
    return model, optimizer
