"""Pieces every model shares: Gaussian posteriors from encoder outputs, priors, sample counts."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from collapsekit.errors import DataError, ParameterError
from collapsekit._validation import positive
from collapsekit.models._checks import latent_dim_of


def posterior(encoded: object, latent_dim: int, level: str) -> Normal:
    """N(mu, exp(log_var)) from an encoder's ``(mu, log_var)``, checking the contract."""
    if not (isinstance(encoded, tuple) and len(encoded) == 2):
        raise ParameterError(f"encoder of {level} must return (mu, log_var), got {type(encoded).__name__}")
    mu, log_var = encoded
    if log_var is None:
        raise ParameterError(f"encoder of {level} returned no log-variance: build it with a std "
                             "('data', 'learnable' or a number), not std=None")
    if mu.shape[-1] != latent_dim or log_var.shape != mu.shape:
        raise ParameterError(f"encoder of {level} returned mu {tuple(mu.shape)} and log_var "
                             f"{tuple(log_var.shape)}; expected both (..., {latent_dim})")
    return Normal(mu, torch.exp(0.5 * log_var), validate_args=False)


def centred_prior(dim: int, std: float, like: Tensor) -> Normal:
    """N(0, std² I) over ``dim`` dimensions, batch shape (d,): it broadcasts to any (S, B, d)."""
    zeros = like.new_zeros(dim)
    return Normal(zeros, zeros + std, validate_args=False)


def check_output(mean: Tensor, target: Tensor) -> None:
    """The decoder must produce one value per target feature."""
    if mean.shape[-1] != target.shape[-1]:
        raise DataError(f"decoder output has {mean.shape[-1]} features but the target has {target.shape[-1]}")


def reference_tensor(module: nn.Module) -> Tensor:
    """A floating-point parameter or buffer of ``module``: new tensors take its device and dtype."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor
    return torch.zeros(())


class OneLevelModel(nn.Module):
    """What the VAE and the CVAE share: an encoder, a decoder, a likelihood and one latent level
    with prior N(0, η_enc² I)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: nn.Module, eta_enc: float = 1.0,
                 latent_dim: int | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.eta_enc = positive("eta_enc", eta_enc)
        self.latent_dim = latent_dim_of("latent_dim", encoder, latent_dim)

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Latent sizes, bottom to top: (d,)."""
        return (self.latent_dim,)
