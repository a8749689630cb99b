"""Elementwise Gaussian densities and KL divergences in torch, the arithmetic every diagnostic shares.

All values are in nats and elementwise (one per example and latent dimension); callers sum or average.
Variances, not standard deviations, are passed: encoders return ``log_var``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def kl_to_prior(mean: Tensor, var: Tensor, prior_mean: Tensor | float = 0.0,
                prior_var: Tensor | float = 1.0) -> Tensor:
    """KL(N(mean, var) ‖ N(prior_mean, prior_var)) per element, nats (exact, analytic)."""
    prior_var_t = torch.as_tensor(prior_var, dtype=var.dtype, device=var.device)
    ratio = var / prior_var_t
    return 0.5 * (ratio + (mean - prior_mean) ** 2 / prior_var_t - 1.0 - torch.log(ratio))


def log_normal(value: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """log N(value; mean, var) per element, nats."""
    return -0.5 * (LOG_2PI + torch.log(var) + (value - mean) ** 2 / var)


def neg_entropy(var: Tensor) -> Tensor:
    """E_q[log q] = −H[N(·, var)] per element, nats."""
    return -0.5 * (LOG_2PI + 1.0 + torch.log(var))
