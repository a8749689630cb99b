"""β-ELBO with one β per level and optional free bits; the capacity objective of Burgess et al.

With the full log-density in the reconstruction (docs/theory.md §1.0), the β-ELBO loss per example is

    loss = −E_q log p(target | z) + Σ_l β_l · KL_l,

β_l the **true** weight on level l's KL term (bottom to top: β₁ on z₁'s term, β₂ on the top KL
of a two-level hierarchy, docs/theory.md §1.3). A schedule multiplies every β_l by the same factor.

Free bits (Kingma et al. 2016, docs/metrics.md §9.4), per dimension on the batch-averaged KL:

    loss = −E_q log p(target | z) + Σ_l β_l · Σ_d max(λ, mean_batch KL_{l,d}),

so a dimension whose batch-averaged KL is below λ gets no gradient from the KL term at all (the
max is taken *after* averaging over the batch, as in the paper; the per-example masks of other
code bases are a different objective). ``LossTerms.kl`` still reports the true, unclipped KL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from collapsekit.errors import ParameterError
from collapsekit.objectives._checks import non_negative, positive
from collapsekit.objectives.terms import LossTerms, check_beta_scale, level_terms

if TYPE_CHECKING:
    from collapsekit.models.output import ModelOutput


class BetaELBO:
    """Negative β-ELBO, one β per latent level, optional free bits.

    Parameters
    ----------
    beta : float or sequence of float
        KL weight(s), finite and ≥ 0. A number applies to every level; a sequence gives one β per
        level from the bottom (z or z₁) to the top, and its length must equal the model's number of
        levels (checked when called, since the objective is built before the model). β = 1 is the
        ELBO. **β = 0 is allowed** for training (a noisy autoencoder; the encoder variance then
        has no pressure at all) although the collapse theory needs β > 0: the theory checks its own
        inputs.
    free_bits : float, optional
        λ ≥ 0 in nats **per latent dimension**, applied to the batch-averaged KL of that dimension
        (Kingma et al. 2016 with one dimension per group). The total floor is λ·Σ_l d_l.
    """

    name = "elbo"

    def __init__(self, beta: float | Sequence[float] = 1.0, free_bits: float | None = None) -> None:
        if isinstance(beta, (str, bytes)) or not isinstance(beta, Sequence):
            self.beta: float | tuple[float, ...] = non_negative("beta", beta)
        else:
            if len(beta) == 0:
                raise ParameterError("beta: an empty list; give one number, or one per latent level")
            self.beta = tuple(non_negative(f"beta[{i}]", b) for i, b in enumerate(beta))
        self.free_bits = None if free_bits is None else non_negative("free_bits", free_bits)
        # β per level as a tensor, one per (values, device, dtype): building it from Python floats at every
        # step would copy it to the device each time (a blocking host-to-device copy on a GPU).
        self._weights: dict[tuple[Any, ...], torch.Tensor] = {}

    def weights(self, n_levels: int, like: torch.Tensor) -> torch.Tensor:
        """:meth:`betas` as a tensor on ``like``'s device and dtype, built once and cached."""
        betas = self.betas(n_levels)
        key = (betas, like.device, like.dtype)
        cached = self._weights.get(key)
        if cached is None:
            cached = self._weights[key] = like.new_tensor(betas)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_weights": {}}             # device tensors stay where they were made

    def betas(self, n_levels: int) -> tuple[float, ...]:
        """One β per level (bottom to top) for a model with ``n_levels`` levels."""
        if isinstance(self.beta, float):
            return (self.beta,) * n_levels
        if len(self.beta) != n_levels:
            raise ParameterError(f"beta has {len(self.beta)} values {list(self.beta)} but the model has "
                                 f"{n_levels} latent level{'s' if n_levels != 1 else ''}: give one β per level, "
                                 "bottom (z₁) to top, or a single number")
        return self.beta

    def __call__(self, output: ModelOutput, beta_scale: float = 1.0) -> LossTerms:
        """Evaluate on one forward pass.

        Parameters
        ----------
        output : ModelOutput
            Any number of samples S; every value is averaged over them.
        beta_scale : float
            The schedule's factor: level l is weighted by ``beta[l] * beta_scale``.

        Returns
        -------
        LossTerms
            ``extras["kl_objective"]`` (L,) holds the per-level KL as the loss sees it (with the free-bits
            floor) when free bits are on.
        """
        scale = check_beta_scale(beta_scale)
        terms = level_terms(output)
        if self.free_bits is None:
            kl_objective = terms.kl
        else:
            # clamp has zero gradient below its floor: that is the whole point of free bits.
            kl_objective = torch.stack([k.clamp(min=self.free_bits).sum() for k in terms.kl_per_dim])
        weight = self.weights(len(terms.kl_per_dim), kl_objective) * scale
        loss = terms.reconstruction + (weight * kl_objective).sum()
        extras = {} if self.free_bits is None else {"kl_objective": kl_objective}
        return LossTerms(loss, terms.reconstruction, terms.kl, terms.kl_per_dim, extras)

    def to_dict(self) -> dict[str, Any]:
        """Settings as plain values: ``build_objective(**d)`` rebuilds the objective."""
        beta = self.beta if isinstance(self.beta, float) else list(self.beta)
        return {"name": self.name, "beta": beta, "free_bits": self.free_bits}

    def __repr__(self) -> str:
        return f"BetaELBO(beta={self.beta!r}, free_bits={self.free_bits!r})"


class CapacityELBO:
    """Capacity-controlled objective of Burgess et al. (2018), "Understanding disentangling in β-VAE":

        loss = −E_q log p(target | z) + γ · | Σ_l KL_l − C |,

    C in nats per example, raised over training by the :class:`~collapsekit.objectives.schedules.Capacity`
    schedule (C = 0 pulls the KL to zero, like a β = γ model; a larger C lets the KL grow to C).
    The KL is the total over levels; no β appears. This is not a bound: report the ELBO and IWAE
    separately (``LossTerms.negative_elbo``).

    Parameters
    ----------
    gamma : float
        γ > 0; Burgess et al. used 1000 with a Bernoulli likelihood.
    """

    name = "capacity"

    def __init__(self, gamma: float = 1000.0) -> None:
        self.gamma = positive("gamma", gamma)

    def __call__(self, output: ModelOutput, capacity: float = 0.0) -> LossTerms:
        """Evaluate at capacity C = ``capacity`` nats (the schedule's value; 0 outside training)."""
        target = non_negative("capacity", capacity)
        terms = level_terms(output)
        loss = terms.reconstruction + self.gamma * (terms.kl.sum() - target).abs()
        # new_full fills on the device from the scalar (no host-to-device copy, unlike new_tensor)
        return LossTerms(loss, terms.reconstruction, terms.kl, terms.kl_per_dim,
                         {"capacity": loss.new_full((), target)})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gamma": self.gamma}

    def __repr__(self) -> str:
        return f"CapacityELBO(gamma={self.gamma!r})"
