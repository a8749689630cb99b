"""Likelihoods p(target | decoder output): modules that turn a decoder's output into a distribution.

Each returns a ``torch.distributions`` object with event dimension 1, so that
``distribution.log_prob(target)`` is one value per (sample, example), in nats, with every
normalising constant — the convention of docs/theory.md §1.0 (β is the true weight on KL only when the
reconstruction term is the full log-density).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from collapsekit._validation import positive

_LOG_2PI = math.log(2 * math.pi)


class IsotropicGaussian(Distribution):
    """N(loc, scale² I) over the last dimension, with one scalar ``scale``.

    The density of ``Independent(Normal(loc, scale.expand_as(loc)), 1)``, computed without
    materialising scale², log scale and their quotient at the size of ``loc``: on an MNIST batch
    that made ``log_prob`` and its gradient about 3× dearer (a few % of an MLP VAE's step).

    Parameters
    ----------
    loc : Tensor
        (..., D) means.
    scale : Tensor
        0-d standard deviation (gradients flow to it).
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        self.loc, self.scale = loc, scale
        super().__init__(batch_shape=loc.shape[:-1], event_shape=loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def stddev(self) -> Tensor:
        return self.scale.expand_as(self.loc)

    @property
    def variance(self) -> Tensor:
        return self.stddev.pow(2)

    def log_prob(self, value: Tensor) -> Tensor:
        """One value per (sample, example): −‖value − loc‖²/(2 scale²) − (D/2)·log(2π scale²)."""
        features = self.loc.shape[-1]
        squared = (value - self.loc).pow(2).sum(-1)
        return -0.5 * squared / self.scale.pow(2) - features * (torch.log(self.scale) + 0.5 * _LOG_2PI)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        return self.loc + self.scale * torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    def entropy(self) -> Tensor:
        return self.loc.shape[-1] * (torch.log(self.scale) + 0.5 * (1 + _LOG_2PI)) * torch.ones(
            self.batch_shape, dtype=self.loc.dtype, device=self.loc.device)



class GaussianLikelihood(nn.Module):
    """p(target | mean) = N(mean, η_dec² I).

    ``log_prob(t) = −‖t − mean‖²/(2η_dec²) − (D/2)·log(2π η_dec²)``.

    Parameters
    ----------
    eta_dec : float
        Decoder standard deviation η_dec > 0 (a std, not a variance).
    learn : bool
        Train η_dec, as a log-parameter ``log_eta_dec`` (so it stays positive); otherwise a buffer
        of the same name, which keeps checkpoints interchangeable.
    """

    def __init__(self, eta_dec: float = 1.0, learn: bool = False) -> None:
        super().__init__()
        start = torch.tensor(math.log(positive("eta_dec", eta_dec)), dtype=torch.get_default_dtype())
        if learn:
            self.log_eta_dec: Tensor = nn.Parameter(start)
        else:
            self.register_buffer("log_eta_dec", start)

    @property
    def learnable(self) -> bool:
        """True when η_dec is trained."""
        return isinstance(self.log_eta_dec, nn.Parameter)

    @property
    def scale(self) -> Tensor:
        """η_dec as a 0-d tensor that carries gradients to ``log_eta_dec`` when learnable."""
        return self.log_eta_dec.exp()

    @property
    def eta_dec(self) -> float:
        """The current η_dec, as a float (for reports and configs)."""
        return float(self.log_eta_dec.detach().exp())

    def forward(self, mean: Tensor) -> Distribution:
        """N(mean, η_dec² I) with batch shape ``mean.shape[:-1]`` and event shape (D,)."""
        return IsotropicGaussian(mean, self.scale.to(mean.dtype))

    def extra_repr(self) -> str:
        return f"eta_dec={self.eta_dec:g}, learn={self.learnable}"


class BernoulliLikelihood(nn.Module):
    """p(target | logits) = Π_j Bernoulli(sigmoid(logits_j)).

    Targets in [0, 1] are accepted, not only {0, 1}: ``log_prob(t) = Σ_j t_j log p_j + (1 − t_j) log(1 − p_j)``,
    the negative binary cross-entropy. For grey-level pixels this is the usual non-binarised
    approximation: it is not a normalised density of t (the continuous Bernoulli would be), so
    its values are not comparable with a Gaussian likelihood's. Argument validation is off to allow it.
    The decoder must output logits (no sigmoid).
    """

    def forward(self, logits: Tensor) -> Distribution:
        """Bernoulli(logits) with batch shape ``logits.shape[:-1]`` and event shape (D,)."""
        return Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)


def decoder_eta(model: nn.Module | None) -> float | None:
    """η_dec of a model's Gaussian likelihood (its current value when learned); None for any other likelihood."""
    likelihood = getattr(model, "likelihood", None)
    return float(likelihood.eta_dec) if isinstance(likelihood, GaussianLikelihood) else None
