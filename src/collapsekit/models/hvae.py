"""The L-level Markovian hierarchical VAE; two levels are the paper's MHVAE (docs/theory.md §1.3).

Inference goes up, generation comes down:

    q(z₁|x) q(z₂|z₁) … q(z_L|z_{L−1})          (ancestral sampling from the sampled z_l)
    p(z_L) p(z_{L−1}|z_L) … p(z₁|z₂) p(x|z₁)   with p(z_L) = N(0, η_enc² I),
                                              p(z_l|z_{l+1}) = N(g_{l+1}(z_{l+1}), η² I)

The model returns the distributions; the β per level (β₁ on the z₁ term, …, β_L on the top KL)
belongs to the objective.

How to score a level below the top (for objectives): its term is
E_{q(z_l|·) q(z_{l+1}|z_l)}[log q(z_l|·) − log p(z_l|z_{l+1})], with z_{l+1} drawn *from* z_l. Estimate it
at the returned pair, ``−posterior.entropy() − prior.log_prob(sample)`` (or ``posterior.log_prob(sample)``
for the first part). The analytic ``kl_divergence(posterior, prior)`` at the sampled z_{l+1} treats z_l
as independent of z_{l+1} and is biased: in the linear MHVAE it exceeds the theory's term by
σ₁²·tr(U₂W₂)/η_dec² nats per example (tests/test_models_linear.py). Only the top level's analytic KL
is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal

from collapsekit.errors import DataError, ParameterError
from collapsekit._validation import positive
from collapsekit.models._checks import batch, count, latent_dim_of, n_samples as _n_samples, std_values
from collapsekit.models._latent import centred_prior, check_output, posterior, reference_tensor
from collapsekit.models.output import LatentLevel, ModelOutput

#: ``eta_dec_latent`` value that ties the latent conditionals' std to a Gaussian likelihood's η_dec.
SHARE_LIKELIHOOD_ETA = "likelihood"


class HierarchicalVAE(nn.Module):
    """Markovian hierarchical VAE with L ≥ 2 Gaussian latent levels.

    Parameters
    ----------
    encoders : sequence of nn.Module, length L
        ``encoders[0](x) -> (mu, log_var)`` for q(z₁|x); ``encoders[l](z_l) -> (mu, log_var)`` for
        q(z_{l+1}|z_l), applied to samples of shape (S, B, d_l). The paper's MHVAE fixes the std of
        level 1 (σ₁, e.g. ``LinearEncoder(..., std=0.5)``) and learns or fixes the upper ones;
        any of the std kinds of :mod:`collapsekit.models.blocks` is accepted at any level.
    decoders : sequence of nn.Module, length L
        ``decoders[0](z₁)`` is the likelihood's input (the mean of x); ``decoders[l](z_{l+1})`` is
        the mean of p(z_l | z_{l+1}), for l = 1 … L−1.
    likelihood : nn.Module
        ``likelihood(decoders[0](z₁)) -> Distribution`` with event dimension 1.
    eta_enc : float
        Std of the top prior p(z_L).
    eta_dec_latent : float, sequence of L−1 floats, or "likelihood"
        Std η of the latent conditionals p(z_l | z_{l+1}) (one value for every level, or one per
        level from the bottom). docs/theory.md §1.3 uses the data decoder's η_dec at every level: pass
        that value (the registry does). A float is **fixed**, even when the likelihood learns its
        η_dec: a learned pixel-noise scale says nothing about the scale of z, and a learnable
        prior std at lower levels is a different model from the theory's. ``"likelihood"`` ties
        every level to a :class:`~collapsekit.models.likelihoods.GaussianLikelihood`'s current
        η_dec (learned or not), gradients included.
    latent_dims : sequence of int, optional
        Read from the encoders' ``latent_dim`` when omitted.
    """

    log_eta_dec_latent: Tensor

    def __init__(self, encoders: Sequence[nn.Module], decoders: Sequence[nn.Module], likelihood: nn.Module,
                 eta_enc: float = 1.0, eta_dec_latent: float | Sequence[float] | str = 1.0,
                 latent_dims: Sequence[int] | None = None) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ParameterError(f"encoders: a hierarchy needs at least 2 levels, got {len(encoders)}")
        if len(decoders) != len(encoders):
            raise ParameterError(f"decoders: expected one per level ({len(encoders)}), got {len(decoders)}")
        self.encoders, self.decoders, self.likelihood = nn.ModuleList(encoders), nn.ModuleList(decoders), likelihood
        self.eta_enc = positive("eta_enc", eta_enc)
        if latent_dims is not None and len(latent_dims) != len(encoders):
            raise ParameterError(f"latent_dims has {len(latent_dims)} sizes for {len(encoders)} levels")
        given = [None] * len(encoders) if latent_dims is None else list(latent_dims)
        self._latent_dims = tuple(latent_dim_of(f"latent_dims[{i}]", enc, d)
                                  for i, (enc, d) in enumerate(zip(encoders, given)))
        self.share_likelihood_eta = isinstance(eta_dec_latent, str) and eta_dec_latent == SHARE_LIKELIHOOD_ETA
        if self.share_likelihood_eta:
            if not isinstance(getattr(likelihood, "scale", None), Tensor):
                raise ParameterError("eta_dec_latent='likelihood' needs a Gaussian likelihood (an η_dec to share)")
            fixed = np.ones(len(encoders) - 1)   # unused placeholder, keeps the state dict keys stable
        elif isinstance(eta_dec_latent, str):
            raise ParameterError(f"eta_dec_latent must be a number, {len(encoders) - 1} numbers or "
                                 f"'{SHARE_LIKELIHOOD_ETA}', got {eta_dec_latent!r}")
        else:
            fixed = std_values("eta_dec_latent", eta_dec_latent, len(encoders) - 1)
        self.register_buffer("log_eta_dec_latent", torch.as_tensor(np.log(fixed), dtype=torch.get_default_dtype()))

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Latent sizes, bottom (z₁) to top (z_L)."""
        return self._latent_dims

    @property
    def n_levels(self) -> int:
        """L."""
        return len(self._latent_dims)

    def latent_scale(self, level: int) -> Tensor:
        """η of p(z_level | z_{level+1}) (level counted from 1), a 0-d tensor."""
        if self.share_likelihood_eta:
            return self.likelihood.scale  # type: ignore[return-value]
        return self.log_eta_dec_latent[level - 1].exp()

    @property
    def eta_dec_latent(self) -> tuple[float, ...]:
        """Current η of p(z_l | z_{l+1}), l = 1 … L−1, as floats."""
        return tuple(float(self.latent_scale(level).detach()) for level in range(1, self.n_levels))

    def forward(self, x: Tensor, y: Tensor | None = None, *, n_samples: int = 1) -> ModelOutput:
        """Sample up the hierarchy (S samples of z₁ per example, one z_{l+1} per sample of z_l), then
        build every prior and the likelihood from those samples.

        Returns
        -------
        ModelOutput
            Levels ``"z1"`` … ``"zL"``: the z₁ posterior has loc (B, d₁), upper posteriors
            (S, B, d_l); samples (S, B, d_l); priors (S, B, d_l) below the top, batch shape (d_L,)
            at the top. The likelihood has batch shape (S, B).
        """
        x = batch("x", x)
        if y is not None:
            raise DataError("a hierarchical VAE reconstructs x and takes no y; use a CVAE for paired (x, y) data")
        posteriors: list[Normal] = []
        samples: list[Tensor] = []
        below: Tensor = x
        for level, (encoder, dim) in enumerate(zip(self.encoders, self._latent_dims), start=1):
            q = posterior(encoder(below), dim, f"z{level}")
            # z₁ gets S draws per example; each upper level one draw per draw of the level below.
            below = q.rsample((_n_samples(n_samples),)) if level == 1 else q.rsample()
            posteriors.append(q)
            samples.append(below)
        levels = []
        for level in range(1, self.n_levels):
            loc = self.decoders[level](samples[level])
            check_output(loc, samples[level - 1])
            prior = Normal(loc, self.latent_scale(level).to(loc.dtype).expand_as(loc), validate_args=False)
            levels.append(LatentLevel(f"z{level}", posteriors[level - 1], prior, samples[level - 1]))
        top = samples[-1]
        levels.append(LatentLevel(f"z{self.n_levels}", posteriors[-1],
                                  centred_prior(self._latent_dims[-1], self.eta_enc, top), top))
        mean = self.decoders[0](samples[0])
        check_output(mean, x)
        return ModelOutput(target=x, likelihood=self.likelihood(mean), levels=levels)

    def generate(self, n: int, *, noisy_latents: bool = True) -> Distribution:
        """p(x|z₁) after ancestral sampling from p(z_L) down (``noisy_latents=False`` follows the
        conditional means below the top)."""
        ref = reference_tensor(self)
        z = self.eta_enc * torch.randn(count("n", n), self._latent_dims[-1], device=ref.device, dtype=ref.dtype)
        for level in range(self.n_levels - 1, 0, -1):
            loc = self.decoders[level](z)
            z = loc + self.latent_scale(level).to(loc.dtype) * torch.randn_like(loc) if noisy_latents else loc
        return self.likelihood(self.decoders[0](z))

    def extra_repr(self) -> str:
        return f"latent_dims={self._latent_dims}, eta_enc={self.eta_enc:g}, eta_dec_latent={self.eta_dec_latent}"
