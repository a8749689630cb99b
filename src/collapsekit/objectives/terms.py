"""What every objective returns (:class:`LossTerms`) and the per-level pieces they share.

Conventions (docs/theory.md §1.0): every value is in nats per example; ``kl`` is the KL itself, never
multiplied by β or a schedule's factor; ``loss`` is what gets backpropagated.

Two ways to score a latent level, and which one each level gets
---------------------------------------------------------------
* **analytic**: KL(q(z|·) ‖ p(z|·)) in closed form (``torch.distributions.kl_divergence``), exact
  and noise-free when the prior does not depend on a sample drawn *from this level's sample*.
  That holds for the top level of any model (fixed prior N(0, η_enc² I)) and for a CVAE's
  conditional prior p(z|x).
* **paired**: −H[q(z|·)] − log p(z_s|·) at the returned sample z_s. A level below the top of a
  bottom-up hierarchy has prior p(z_l | z_{l+1}) where z_{l+1} was drawn from q(z_{l+1} | z_l = z_s);
  the β_l term of docs/theory.md §1.3 is E_{q(z_l|·) q(z_{l+1}|z_l)}[log q(z_l|·) − log p(z_l|z_{l+1})],
  and only the paired estimate is unbiased for it. The analytic KL at the sampled z_{l+1} treats z_l
  as independent of z_{l+1}: in the linear two-level model it overstates the term by
  σ₁²·tr(U₂W₂)/η_dec² nats (tests/test_objectives.py checks both numbers against the closed form).
  The paired term is an expected log-ratio, not a KL between two fixed distributions: its Monte
  Carlo estimate is noisy and the term itself can be negative.

:func:`level_kl_per_dimension` applies the rule "paired below the top, analytic at the top" that
every objective uses. ``ModelOutput.levels`` run from the bottom (z or z₁) to the top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from collapsekit.errors import ParameterError
from collapsekit.objectives._checks import non_negative

if TYPE_CHECKING:  # the models package is only needed for the types: objectives work on any duck-typed output
    from collapsekit.models.output import LatentLevel, ModelOutput


@dataclass
class LossTerms:
    """The pieces of one objective evaluation, nats per example (batch mean, sample mean).

    Attributes
    ----------
    loss : Tensor
        Scalar to backpropagate: the objective per example (a negative bound for ELBO/IWAE).
    reconstruction : Tensor
        Scalar, −E log p(target | z): mean over the S samples and the batch.
    kl : Tensor
        Shape (L,), one value per level (bottom to top): the level's KL term, batch mean, never
        weighted by β or a schedule. Analytic at the top level, paired below it (module docstring).
        Free bits and capacity leave it untouched: it is always the true term.
    kl_per_dim : list of Tensor
        L tensors of shape (d_l,): the same terms per latent dimension; ``kl[l] == kl_per_dim[l].sum()``.
    extras : dict of str to Tensor
        Objective-specific values, e.g. ``"mmd"``, ``"iwae_bound"``, ``"kl_objective"``, ``"capacity"``.
    """

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor
    kl_per_dim: list[Tensor]
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def kl_total(self) -> Tensor:
        """Σ over levels of ``kl``: the rate R of Alemi et al. (nats per example)."""
        return self.kl.sum()

    @property
    def negative_elbo(self) -> Tensor:
        """reconstruction + Σ kl: the β = 1 negative ELBO whatever the training objective was (for a
        hierarchy a Monte Carlo estimate, through its paired terms)."""
        return self.reconstruction + self.kl_total

    def detached(self) -> LossTerms:
        """A copy with every tensor detached from the graph (for logging and accumulation)."""
        return LossTerms(loss=self.loss.detach(), reconstruction=self.reconstruction.detach(), kl=self.kl.detach(),
                         kl_per_dim=[k.detach() for k in self.kl_per_dim],
                         extras={key: value.detach() for key, value in self.extras.items()})

    def as_floats(self) -> dict[str, Any]:
        """Plain Python numbers for JSON: floats, and lists for ``kl`` (per level) and ``kl_per_dim``."""
        out: dict[str, Any] = {"loss": float(self.loss.detach()), "reconstruction": float(self.reconstruction.detach()),
                               "kl": float(self.kl.detach().sum()),
                               "kl_per_level": [float(v) for v in self.kl.detach().reshape(-1)],
                               "kl_per_dim": [[float(v) for v in k.detach().reshape(-1)] for k in self.kl_per_dim]}
        for key, value in self.extras.items():
            value = value.detach()
            out[key] = float(value) if value.numel() == 1 else [float(v) for v in value.reshape(-1)]
        return out


class Objective(Protocol):
    """What the trainer needs from an objective: call it on a forward pass, get :class:`LossTerms`.

    ``beta_scale`` is the schedule's factor on the KL weights (1 outside training). Capacity
    objectives take ``capacity`` instead (see :func:`collapsekit.objectives.bind_schedule`).
    """

    name: str

    def __call__(self, output: ModelOutput, beta_scale: float = 1.0) -> LossTerms: ...

    def to_dict(self) -> dict[str, Any]: ...


# -- per-level pieces ---------------------------------------------------------------------------
def kl_per_dimension(level: LatentLevel, *, paired: bool = False) -> Tensor:
    """KL(q ‖ p) of one level, elementwise, shape (S, B, d).

    Parameters
    ----------
    level : LatentLevel
        Posterior and prior are diagonal Normals broadcastable to the sample's shape (S, B, d).
    paired : bool
        False (default): the analytic KL(q(z|·) ‖ p(z|·)) per dimension, with the prior broadcast to
        (S, B, d). For a lower level of a hierarchy this is KL(q(z₁|x) ‖ p(z₁|z₂)) *given* each
        sampled z₂, which is **not** the β₁ term of docs/theory.md §1.3 (z₂ was drawn from z₁; module
        docstring). True: −H[q] − log p(z_s|·) at the returned sample, the unbiased estimate of
        that term.

    Returns
    -------
    Tensor
        Shape (S, B, d), nats. The analytic values are ≥ 0; the paired ones are single-sample
        estimates and can be negative.
    """
    shape = level.sample.shape
    if paired:
        # −H[q] is analytic: q(z_l|·) does not depend on the level above, so only log p needs the sample.
        values = -level.posterior.entropy() - level.prior.log_prob(level.sample)
    else:
        values = kl_divergence(level.posterior, level.prior)
    if values.dim() > len(shape) or values.shape[-1] != shape[-1]:
        raise ParameterError(f"level {level.name}: KL of shape {tuple(values.shape)} does not match its sample "
                             f"{tuple(shape)}; posterior and prior must be diagonal Normals over the last dimension")
    return values.expand(shape)


def level_kl_per_dimension(output: ModelOutput) -> list[Tensor]:
    """The KL term of every level, elementwise (S, B, d_l): paired below the top, analytic at the top.

    This is the rule every objective in this package uses (module docstring says why).
    """
    levels = _levels(output)
    top = len(levels) - 1
    return [kl_per_dimension(level, paired=index < top) for index, level in enumerate(levels)]


def reconstruction_per_sample(output: ModelOutput) -> Tensor:
    """−log p(target | z_s) per sample and example, shape (S, B), nats (every constant included)."""
    log_p = output.likelihood.log_prob(output.target)
    expected = tuple(_levels(output)[0].sample.shape[:-1])
    if log_p.dim() != len(expected) or log_p.shape[-1] != expected[-1]:
        # The classic silent bug: a per-feature density (no Independent) averaged or broadcast away.
        raise ParameterError(f"likelihood.log_prob(target) has shape {tuple(log_p.shape)}, expected one value per "
                             f"sample and example {expected}: give the likelihood event dimension 1 "
                             "(torch.distributions.Independent(..., 1))")
    return -log_p.expand(expected)


def batch_mean_per_dimension(values: Tensor) -> Tensor:
    """(S, B, d) → (d,): the mean over samples and examples (the batch-averaged KL per dimension)."""
    return values.mean(dim=tuple(range(values.dim() - 1)))


@dataclass
class LevelTerms:
    """Shared first step of every objective: reconstruction and per-level KL, not yet weighted."""

    reconstruction: Tensor      # scalar
    kl_per_dim: list[Tensor]    # L × (d_l,)

    @property
    def kl(self) -> Tensor:
        return torch.stack([k.sum() for k in self.kl_per_dim])


def level_terms(output: ModelOutput) -> LevelTerms:
    """Reconstruction (scalar) and batch-averaged KL per dimension of every level."""
    reconstruction = reconstruction_per_sample(output).mean()
    return LevelTerms(reconstruction, [batch_mean_per_dimension(k) for k in level_kl_per_dimension(output)])


def _levels(output: ModelOutput) -> list[LatentLevel]:
    levels = list(output.levels)
    if not levels:
        raise ParameterError("output.levels is empty: an objective needs at least one latent level")
    return levels


def check_beta_scale(value: float) -> float:
    """The schedule's factor: finite and ≥ 0."""
    return non_negative("beta_scale", value)
