"""The importance-weighted bound (Burda et al. 2016; docs/metrics.md §4 and §9.8).

For k samples z_1..z_k ~ q (all levels, drawn by the model's forward pass with ``n_samples=k``):

    log w_s = log p(target | z_s) + Σ_levels Σ_dims [log p(z_{l,s} | ·) − log q(z_{l,s} | ·)]
    L_k     = mean over the batch of [logsumexp_s log w_s − log k]

L_1 is the single-sample ELBO estimate (β = 1, Monte Carlo KL); L_k increases with k towards
log p(target) in expectation. The full log-densities are used, never the analytic KL: substituting
it would change the bound (docs/metrics.md §4). The gradient of logsumexp is Σ_s w̃_s ∇log w_s with the
self-normalised weights w̃, as in Burda's code, through autograd.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from collapsekit.errors import ParameterError
from collapsekit.objectives._checks import integer
from collapsekit.objectives.terms import LossTerms, check_beta_scale, level_terms, reconstruction_per_sample

if TYPE_CHECKING:
    from collapsekit.models.output import ModelOutput


def log_importance_weights(output: ModelOutput) -> Tensor:
    """log w_s = log p(target, z_s) − log q(z_s | target), shape (S, B), nats."""
    log_w = -reconstruction_per_sample(output)
    for level in output.levels:
        # Posterior parameters of (B, d) broadcast against the (S, B, d) sample.
        log_w = log_w + (level.prior.log_prob(level.sample) - level.posterior.log_prob(level.sample)).sum(-1)
    return log_w


def iwae_bound(output: ModelOutput) -> Tensor:
    """Per-example bound logsumexp_s log w_s − log S, shape (B,), nats (S = the output's samples).

    For evaluation (importance-sampled log-likelihood) run the model in ``eval()`` mode, under
    ``torch.no_grad()``, ideally in float64 for large S (docs/metrics.md §4), and in chunks of samples
    concatenated along the sample dimension if memory is short: logsumexp over all of them.
    """
    log_w = log_importance_weights(output)
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


class IWAE:
    """Negative importance-weighted bound with ``k`` samples as a training objective.

    Parameters
    ----------
    k : int
        Number of importance samples, ≥ 1. The model must be run with ``n_samples=k``; a different
        sample count raises :class:`ParameterError` (silently using another k would train and
        report a different bound).

    Notes
    -----
    ``reconstruction`` and ``kl`` are reported for monitoring (sample means, analytic KL at the top
    level), not used in the loss. IWAE has no KL weight to schedule: ``beta_scale`` other than 1
    is an error (:func:`collapsekit.objectives.bind_schedule` catches the pairing up front).
    """

    name = "iwae"

    def __init__(self, k: int = 1) -> None:
        self.k = integer("k", k, 1)

    def __call__(self, output: ModelOutput, beta_scale: float = 1.0) -> LossTerms:
        if check_beta_scale(beta_scale) != 1.0:
            raise ParameterError(f"beta_scale = {beta_scale!r}: the IWAE objective has no KL weight to schedule; "
                                 "use the constant schedule (or the elbo objective for a warm-up)")
        samples = int(output.levels[0].sample.shape[0]) if output.levels else 0
        if samples != self.k:
            raise ParameterError(f"IWAE with k = {self.k} got {samples} samples per example: run the model with "
                                 f"n_samples={self.k}")
        bound = iwae_bound(output).mean()
        terms = level_terms(output)
        return LossTerms(-bound, terms.reconstruction, terms.kl, terms.kl_per_dim, {"iwae_bound": bound})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k}

    def __repr__(self) -> str:
        return f"IWAE(k={self.k})"
