"""Small VAEs trained briefly on CPU for the doctor's tests: a healthy one and one per planted defect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from collapsekit.data import gaussian_decay, load_digits
from collapsekit.models import (BernoulliLikelihood, GaussianLikelihood, LinearDecoder, LinearEncoder, MLPDecoder,
                                MLPEncoder, VAE)

DIGITS = torch.as_tensor(load_digits().x[:512])


def elbo(beta: float = 1.0, *, recon: str = "sum", kl: str = "sum") -> Callable[[Any, Tensor], Tensor]:
    """A β-ELBO loss_fn with a chosen reduction: ``recon="mean"`` averages the log-likelihood over features,
    ``kl="mean"`` averages the KL over latent dimensions (the two bugs of issue 12)."""
    def loss_fn(model: VAE, batch: Tensor) -> Tensor:
        out = model(batch)
        log_p = out.likelihood.log_prob(out.target).mean()
        if recon == "mean":
            log_p = log_p / out.target.shape[-1]
        level = out.levels[0]
        terms = kl_divergence(level.posterior, level.prior)
        return -log_p + beta * (terms.sum(-1).mean() if kl == "sum" else terms.mean())
    return loss_fn


def squared_error(beta: float = 1.0) -> Callable[[Any, Tensor], Tensor]:
    """Σ (x − mean)² + β·KL: a squared error without the ½ of the Gaussian log-density."""
    def loss_fn(model: VAE, batch: Tensor) -> Tensor:
        out = model(batch)
        level = out.levels[0]
        return (out.likelihood.mean - out.target).pow(2).sum(-1).mean() + \
            beta * kl_divergence(level.posterior, level.prior).sum(-1).mean()
    return loss_fn


def mlp_vae(latent: int = 4, *, decoder: nn.Module | None = None, encoder: nn.Module | None = None,
            gaussian: bool = False, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    likelihood = GaussianLikelihood(eta_dec=1.0) if gaussian else BernoulliLikelihood()
    return VAE(encoder or MLPEncoder(64, latent, hidden=(32,)), decoder or MLPDecoder(latent, 64, hidden=(32,)),
               likelihood)


def train(model: nn.Module, loss_fn: Callable[[Any, Tensor], Tensor], *, steps: int = 150, lr: float = 3e-3,
          data: Tensor = DIGITS, batch: int = 128, params: Callable[[nn.Module], Any] | None = None,
          seed: int = 0) -> torch.optim.Optimizer:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters() if params is None else params(model), lr=lr)
    for step in range(steps):
        start = (step * batch) % data.shape[0]
        optimizer.zero_grad()
        loss_fn(model, data[start:start + batch]).backward()
        optimizer.step()
    return optimizer


class BlindDecoder(nn.Module):
    """A decoder wired to ignore z (it decodes z · 0)."""

    def __init__(self, latent: int) -> None:
        super().__init__()
        self.inner = MLPDecoder(latent, 64, hidden=(32,))

    def forward(self, z: Tensor) -> Tensor:
        return self.inner(z * 0)


class DetachedEncoder(nn.Module):
    """An encoder whose mean is detached from the graph."""

    def __init__(self, latent: int) -> None:
        super().__init__()
        self.inner = MLPEncoder(64, latent, hidden=(32,))
        self.latent_dim = latent

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_var = self.inner(x)
        return mu.detach(), log_var


def linear_data(n: int = 512) -> Tensor:
    return torch.as_tensor(gaussian_decay(6, n, decay=0.6, scale=2.0, seed=0, exact=True).x, dtype=torch.float32)


def linear_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(LinearEncoder(6, 4), LinearDecoder(4, 6), GaussianLikelihood(eta_dec=1.0))


class AutoregressiveBernoulli(torch.distributions.Distribution):
    """p(x | z) = Π_j Bernoulli(x_j | x_{j−1}, z): teacher-forced on the x it scores; no closed-form mean."""

    arg_constraints: dict = {}

    def __init__(self, z: Tensor, decoder: "AutoregressiveDecoder") -> None:
        self.z, self.decoder = z, decoder
        super().__init__(batch_shape=z.shape[:1], validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        logits = self.decoder.context * previous + self.decoder.bias + self.decoder.from_z(self.z * self.decoder.z_gate)
        return torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)


class AutoregressiveDecoder(nn.Module):
    """z → an autoregressive Bernoulli over 64 pixels (each conditioned on the one before it); ``use_z=False``
    severs z (the planted defect)."""

    def __init__(self, latent: int, use_z: bool = True) -> None:
        super().__init__()
        self.context = nn.Parameter(torch.zeros(64))
        self.bias = nn.Parameter(torch.zeros(64))
        self.from_z = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, 64))
        self.z_gate = 1.0 if use_z else 0.0

    def forward(self, z: Tensor) -> AutoregressiveBernoulli:
        return AutoregressiveBernoulli(z, self)


def pair_elbo(model: tuple[nn.Module, nn.Module], batch: Tensor) -> Tensor:
    """The ELBO of a model given as (encoder → (mu, log_var), decoder → Distribution)."""
    encoder, decoder = model
    mu, log_var = encoder(batch)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1).mean()
    return -decoder(q.rsample()).log_prob(batch).mean() + kl
