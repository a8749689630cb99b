"""The result of a closed-form prediction: what the optimum of a linear model looks like."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from collapsekit._io import jsonable
from collapsekit.activity import KL_ACTIVE_THRESHOLD, count_active

#: Per-dimension fields, in the order the CLI prints them.
PER_DIMENSION = ("theta", "threshold", "decoder_sv", "encoder_sv", "encoder_std", "inactive",
                 "collapsed", "kl_per_dim", "critical_beta")


@dataclass(frozen=True)
class Prediction:
    """Closed-form optimum of a linear VAE, CVAE or two-level MHVAE.

    Every per-dimension array has one entry per latent dimension (the top level ``z₂`` for the
    MHVAE), in descending order of the data spectrum: entry *i* is the latent mode paired with
    the *i*-th largest θ.

    Attributes
    ----------
    model : {"vae", "cvae", "mhvae"}
    theorem : str
        Which closed form produced it.
    hyperparameters : dict
        The settings used (β, η_enc, η_dec, latent sizes, fixed stds).
    spectrum : ndarray
        Every θ of the data, descending, on one scale for every model: eigenvalues of a second
        moment (variance-like). VAE and MHVAE: eig E[xxᵀ]; CVAE: eig E, the residual second moment.
    theta : ndarray
        The θ paired with each latent dimension (the first entries of ``spectrum``).
    threshold : ndarray
        The encoder mode of a dimension is zero iff θ ≤ threshold (same units as θ: βη_dec² for
        a learnable encoder variance); ``-inf`` where it can never be zero.
    decoder_sv, encoder_sv : ndarray
        ω (decoder) and λ (whitened encoder) singular values at the optimum.
    encoder_std : ndarray
        Posterior standard deviation (σ; s₂ for the MHVAE's z₂).
    inactive : ndarray of bool
        Encoder mode is zero: the dimension carries no information about the input.
    collapsed : ndarray of bool
        Posterior equals the prior (inactive *and* encoder std = η_enc). With a fixed encoder
        std ≠ η_enc a dimension can be inactive without being collapsed.
    kl_per_dim : ndarray
        KL(q ‖ prior) of each dimension at the optimum, nats per example (without β).
    critical_beta : ndarray
        The β (β₂ for the MHVAE) at and above which the dimension collapses, all else fixed;
        ``inf`` where it never does.
    inactive_beta : ndarray
        The β (β₂) at and above which the encoder mode is zero; equals ``critical_beta``
        when the encoder variance is learnable.
    n_active, n_collapsed : int
        Dimensions with a nonzero encoder mode; dimensions whose posterior equals the prior.
    loss : float
        Optimal negative β-ELBO, nats per example, every Gaussian constant included.
    reconstruction : float
        Its expected negative log-likelihood part, nats per example.
    kl : float
        Total KL of the (top-level) latent, nats per example, without β; ``loss`` is
        ``reconstruction + β·kl`` (MHVAE: ``reconstruction + β₁·level1["kl"] + β₂·kl``).
    level1 : dict or None
        MHVAE only: the z₁ level (``encoder_sv`` λ, ``decoder_sv`` of U₁, ``inactive``,
        ``kl_per_dim`` = E KL(q(z₁|x) ‖ p(z₁|z₂)) per dimension and its sum ``kl``).
    """

    model: str
    theorem: str
    hyperparameters: dict[str, Any]
    spectrum: np.ndarray
    theta: np.ndarray
    threshold: np.ndarray
    decoder_sv: np.ndarray
    encoder_sv: np.ndarray
    encoder_std: np.ndarray
    inactive: np.ndarray
    collapsed: np.ndarray
    kl_per_dim: np.ndarray
    critical_beta: np.ndarray
    inactive_beta: np.ndarray
    loss: float
    reconstruction: float
    kl: float
    level1: dict[str, Any] | None = field(default=None)

    @property
    def latent_dim(self) -> int:
        """Number of (top-level) latent dimensions."""
        return int(self.theta.size)

    @property
    def n_active(self) -> int:
        """Dimensions whose encoder mode is nonzero (the closed form's analytic count)."""
        return int(np.count_nonzero(~self.inactive))

    @property
    def n_active_headline(self) -> int:
        """The headline count (:mod:`collapsekit.activity`) at the optimum: dimensions keeping KL ≥ 0.01 nats.

        The number a trained model's measurement is compared with; below :attr:`n_active` only where a
        mode lies so close above its threshold that the optimum gives it under 0.01 nats.
        """
        return count_active(self.kl_per_dim)

    @property
    def n_collapsed(self) -> int:
        """Dimensions whose posterior equals the prior."""
        return int(np.count_nonzero(self.collapsed))

    def verdict(self) -> str:
        """One line a person can act on."""
        setting = ", ".join(f"{symbol(k)} = {format_setting(v)}" for k, v in self.hyperparameters.items()
                            if k not in ("latent_dim", "latent_dims"))
        level = "z₂ " if self.model == "mhvae" else ""
        k = self.latent_dim
        text = (f"{self.model.upper()} ({setting}): {self.n_active_headline} of {k} {level}latent dimensions active "
                f"(KL ≥ {KL_ACTIVE_THRESHOLD:g} nats)")
        if self.n_active_headline != self.n_active:
            text += (f"; {self.n_active} modes are nonzero, {self.n_active - self.n_active_headline} of them keep "
                     f"under {KL_ACTIVE_THRESHOLD:g} nats (θ just above the threshold)")
        if self.n_collapsed:
            text += f", {self.n_collapsed} collapsed (posterior = prior)"
        inactive_only = k - self.n_active - self.n_collapsed
        if inactive_only:
            text += f", {inactive_only} inactive but not collapsed (fixed encoder std ≠ η_enc)"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the same field names; non-finite numbers become ``None``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = jsonable(getattr(self, f.name))
        out["n_active_headline"] = self.n_active_headline
        out["n_active"] = self.n_active
        out["n_collapsed"] = self.n_collapsed
        out["latent_dim"] = self.latent_dim
        return out


_SYMBOLS = {"beta": "β", "beta1": "β₁", "beta2": "β₂", "eta_enc": "η_enc", "eta_dec": "η_dec",
            "sigma1": "σ₁", "sigma2": "σ₂", "encoder_std": "σ"}


def symbol(name: str) -> str:
    """The printed name of a hyper-parameter: ``beta2`` → ``β₂`` (unknown names as they are)."""
    return _SYMBOLS.get(name, name)


def format_setting(value: Any) -> str:
    """A hyper-parameter's value as printed: ``None`` is a learnable std, floats in ``%g``, lists bracketed."""
    if value is None:
        return "learnable"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_setting(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
