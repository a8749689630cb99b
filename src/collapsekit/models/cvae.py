"""The conditional VAE of the paper: q(z|x,y), p(z) = N(0, η_enc² I) independent of x, p(y|x,z).

The paper's structure (docs/theory.md §1.2, docs/experiments.md §2, notes a–c) is additive in both directions:
the encoder mean is x-branch(x) + y-branch(y) and the decoder mean is f(x) + g(z).
:class:`AdditiveEncoder` and :class:`AdditiveDecoder` build it from any blocks; with
:class:`~collapsekit.models.blocks.LinearEncoder` / :class:`~collapsekit.models.blocks.LinearDecoder`
branches it is exactly the linear CVAE W₁x + W₂y, U₁z + U₂x, with no biases.
:class:`CVAE` itself only needs ``encoder(x, y) -> (mu, log_var)`` and ``decoder(x, z) -> output``,
so a concatenating CVAE works too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from collapsekit.errors import DataError, ParameterError
from collapsekit.models._checks import (batch, count, n_samples as _n_samples, output_activation)
from collapsekit.models._latent import OneLevelModel, centred_prior, check_output, posterior, reference_tensor
from collapsekit.models.blocks import SharedStd, StdSpec
from collapsekit.models.output import LatentLevel, ModelOutput


def _branch_latent_dim(branches: Sequence[nn.Module], given: int | None) -> int:
    known = {int(d) for d in (getattr(b, "latent_dim", None) for b in branches) if d is not None}
    if given is not None:
        given = count("latent_dim", given)
        if known - {given}:
            raise ParameterError(f"latent_dim = {given} but the branches have latent sizes {sorted(known)}")
        return given
    if len(known) != 1:
        raise ParameterError(f"latent_dim: the branches have latent sizes {sorted(known) or 'unknown'}; "
                             "pass latent_dim=...")
    return known.pop()


class AdditiveEncoder(nn.Module):
    """Encoder of the paper's CVAE: mu = mu_x(x) + mu_y(y).

    Parameters
    ----------
    x_branch, y_branch : nn.Module
        Encoders returning ``(mu, log_var)`` with ``log_var`` possibly None (a mean-only branch,
        e.g. ``LinearEncoder(..., std=None)``).
    std : None, "learnable", float or sequence of float
        None: the posterior log-variance is the **sum of the branches' log-variances**,
        log σ² = ℓ_x(x) + ℓ_y(y), so σ depends on both x and y. (The paper adds raw linear σ
        outputs, σ = σ_x + σ_y, and uses only σ²; that form reaches σ = 0 where the two cancel,
        and log σ² = −∞, so the log-space sum is used instead — the same additive structure.)
        Otherwise one data-independent std vector (:class:`~collapsekit.models.blocks.SharedStd`),
        the linear theory's Σ; the branches must then be mean-only.
    init_std : float or sequence of float
        Starting std of a learnable shared std.
    latent_dim : int, optional
        Read from the branches' ``latent_dim`` when omitted.
    """

    def __init__(self, x_branch: nn.Module, y_branch: nn.Module, std: StdSpec = None,
                 init_std: float | Sequence[float] = 1.0, latent_dim: int | None = None) -> None:
        super().__init__()
        self.x_branch, self.y_branch = x_branch, y_branch
        self.latent_dim = _branch_latent_dim((x_branch, y_branch), latent_dim)
        heads = [getattr(b, "has_log_var", None) for b in (x_branch, y_branch)]
        self.shared_std: SharedStd | None = None
        if std is None:
            if heads == [False, False]:
                raise ParameterError("std=None needs a branch with a log-variance; give a branch a std, "
                                     "or pass std='learnable' or a number")
        else:
            if any(heads):
                raise ParameterError(f"std={std!r} replaces the branches' log-variances: build the branches "
                                     "mean-only (std=None) or pass std=None to sum theirs")
            self.shared_std = SharedStd(self.latent_dim, std, init_std)  # type: ignore[arg-type]

    @property
    def has_log_var(self) -> bool:
        return True

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        mu_x, log_var_x = self.x_branch(x)
        mu_y, log_var_y = self.y_branch(y)
        mu = mu_x + mu_y
        if self.shared_std is not None:
            return mu, self.shared_std(mu)
        parts = [v for v in (log_var_x, log_var_y) if v is not None]
        if not parts:
            raise ParameterError("neither CVAE encoder branch returned a log-variance")
        return mu, sum(parts[1:], parts[0]).expand_as(mu)


class AdditiveDecoder(nn.Module):
    """Decoder of the paper's CVAE: output = f(x) + g(z).

    ``f(x)`` is (B, D) and ``g(z)`` (S, B, D); their sum broadcasts to (S, B, D). With linear
    branches this is U₂x + U₁z (docs/theory.md §1.2). ``out_activation`` (None, "tanh", "sigmoid",
    "relu") is applied to the sum.
    """

    def __init__(self, x_branch: nn.Module, z_branch: nn.Module, out_activation: str | None = None) -> None:
        super().__init__()
        self.x_branch, self.z_branch = x_branch, z_branch
        self.out_activation = output_activation("out_activation", out_activation)
        self.latent_dim = getattr(z_branch, "latent_dim", None)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.out_activation(self.x_branch(x) + self.z_branch(z))


class CVAE(OneLevelModel):
    """Conditional VAE: q(z|x,y) Gaussian, p(z) = N(0, η_enc² I) (independent of x), p(y|x,z); target y.

    Parameters
    ----------
    encoder : nn.Module
        ``encoder(x, y) -> (mu, log_var)``, each (B, d); e.g. :class:`AdditiveEncoder`.
    decoder : nn.Module
        ``decoder(x, z) -> output``: x is (B, D_x), z is (S, B, d), the output (S, B, D_y);
        e.g. :class:`AdditiveDecoder`.
    likelihood : nn.Module
        ``likelihood(output) -> Distribution`` with event dimension 1.
    eta_enc : float
        Prior standard deviation η_enc.
    latent_dim : int, optional
        Read from ``encoder.latent_dim`` when omitted.
    """

    def forward(self, x: Tensor, y: Tensor | None = None, *, n_samples: int = 1) -> ModelOutput:
        """Encode (x, y), draw ``n_samples`` reparameterised z per example, decode y from (x, z).

        Returns
        -------
        ModelOutput
            ``target`` = y; one level ``"z"`` (posterior (B, d), prior of batch shape (d,), sample (S, B, d));
            likelihood of batch shape (S, B).
        """
        x = batch("x", x)
        if y is None:
            raise DataError("a CVAE needs the output y as well as the condition x")
        y = batch("y", y)
        if x.shape[0] != y.shape[0]:
            raise DataError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        q = posterior(self.encoder(x, y), self.latent_dim, "z")
        z = q.rsample((_n_samples(n_samples),))
        mean = self.decoder(x, z)
        check_output(mean, y)
        level = LatentLevel(name="z", posterior=q, prior=centred_prior(self.latent_dim, self.eta_enc, z), sample=z)
        return ModelOutput(target=y, likelihood=self.likelihood(mean), levels=[level])

    def generate(self, x: Tensor, n_samples: int = 1) -> Distribution:
        """p(y|x,z) for z ~ p(z), ``n_samples`` per row of x: batch shape (S, B)."""
        x = batch("x", x)
        ref = reference_tensor(self)
        z = self.eta_enc * torch.randn(_n_samples(n_samples), x.shape[0], self.latent_dim,
                                       device=ref.device, dtype=ref.dtype)
        return self.likelihood(self.decoder(x, z))

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, eta_enc={self.eta_enc:g}"
