"""What every model's forward pass returns: the contract between models and objectives.

A model turns a batch into distributions; an objective (β-ELBO, IWAE, InfoVAE, free bits, ...)
turns distributions into a loss. Models never compute a loss, so every objective applies to every
model (a defect common in other VAE libraries: a loss baked into each model's forward).

Shapes: every sampled tensor has a leading sample dimension S (``n_samples``, 1 by default),
then the batch B, then features. Distributions are ``torch.distributions`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.distributions import Distribution, Normal


@dataclass
class LatentLevel:
    """One stochastic layer.

    Attributes
    ----------
    name : str
        ``"z"`` for a one-level model, ``"z1"``, ``"z2"``, ... from the bottom up in a hierarchy.
    posterior : Normal
        q(z | ·), diagonal; loc/scale of shape (S, B, d) (or (B, d) broadcastable to it when the
        posterior does not depend on samples of another level).
    prior : Normal
        p(z) or p(z | level above), diagonal, broadcastable to (S, B, d): N(0, η_enc²) at the top,
        N(mean(z_above), η_dec²) for a lower level of a hierarchy. For such a lower level the
        sample of the level above was drawn from *this* level's sample, so the analytic
        KL(posterior ‖ prior) at that sample is biased for E[log q − log p]; the unbiased
        single-sample estimate is −posterior.entropy() − prior.log_prob(sample). Only the top
        level's analytic KL is exact.
    sample : Tensor
        z ~ posterior (reparameterised), shape (S, B, d).
    """

    name: str
    posterior: Normal
    prior: Normal
    sample: Tensor

    @property
    def dim(self) -> int:
        return int(self.sample.shape[-1])


@dataclass
class ModelOutput:
    """A forward pass: the target, its likelihood under the sampled latents, and the latent levels.

    Attributes
    ----------
    target : Tensor
        What the model reconstructs, (B, D): x for a VAE or hierarchy, y for a CVAE.
    likelihood : Distribution
        p(target | z, ...), batch shape (S, B), event shape (D,): ``likelihood.log_prob(target)``
        gives one log-density per sample and example, in nats, every constant included.
    levels : list of LatentLevel
        Bottom (z or z1) to top.
    """

    target: Tensor
    likelihood: Distribution
    levels: list[LatentLevel]
