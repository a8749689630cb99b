"""Pythae's Gaussian VAE family (``pythae>=0.1.2,<0.2``; tested with 0.1.2) behind the adapter protocol.

Every supported model shares Pythae's conventions: ``model.encoder(x)`` returns ``embedding`` (μ) and
``log_covariance`` (log σ²) of shape (B, latent_dim), ``model.decoder(z)["reconstruction"]`` has x's
shape, the prior is N(0, I) and ``model_config.reconstruction_loss`` is ``"mse"`` (the loss is
½‖x − x̂‖², a unit-variance Gaussian likelihood: what Pythae's own ``get_nll`` scores) or ``"bce"``
(Bernoulli with probabilities x̂). Models whose posterior or prior is something else — VAMP's
VampPrior, the flows of VAE_IAF/VAE_LinNF, HVAE/RHVAE, the hyperspherical SVAE, the hyperbolic PoincareVAE —
are refused with the reason. Pythae is imported only when one of its models is adapted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from collapsekit.errors import ParameterError
from collapsekit.adapters.batches import batch_inputs

#: Pythae's model classes (their ``__name__``) with a Gaussian posterior from the encoder and an N(0, I)
#: prior, with the KL weight of their training loss (None: the loss has no single KL weight) and what a
#: reader must know about the objective.
SUPPORTED: dict[str, tuple[str | None, str | None]] = {
    "VAE": ("1", None),
    "BetaVAE": ("beta", None),
    "DisentangledBetaVAE": ("beta", "DisentangledBetaVAE: its loss is β·|KL − C(t)| (a capacity target), not β·KL"),
    "BetaTCVAE": (None, "BetaTCVAE: its loss weights the KL's three parts (index-code MI α, total correlation β, "
                        "dimension-wise KL γ), so no single β applies"),
    "FactorVAE": ("1", "FactorVAE: its loss adds γ·(total correlation) from a discriminator to the ELBO"),
    "INFOVAE_MMD": ("info", "InfoVAE: its loss adds an MMD term between the aggregate posterior and the prior"),
    "MSSSIM_VAE": ("beta", "MSSSIM_VAE: trained with a structural-similarity loss, not a likelihood; the "
                           "likelihood here is the unit-variance Gaussian stand-in"),
    "IWAE": (None, "IWAE: trained on the importance-weighted bound, which has no KL weight"),
    "MIWAE": (None, "MIWAE: trained on the importance-weighted bound, which has no KL weight"),
    "PIWAE": (None, "PIWAE: trained on importance-weighted bounds, which have no KL weight"),
    "CIWAE": (None, "CIWAE: trained on a convex combination of the ELBO and the IWAE bound"),
}
#: Pythae models that are refused, with the reason.
REFUSED = {
    "VAMP": "its prior is the VampPrior (a mixture of posteriors), not N(0, I)",
    "VAE_IAF": "its posterior is an inverse autoregressive flow, not the encoder's Gaussian",
    "VAE_LinNF": "its posterior is a normalising flow, not the encoder's Gaussian",
    "HVAE": "its posterior is transformed by Hamiltonian dynamics",
    "RHVAE": "its posterior is transformed by Riemannian Hamiltonian dynamics",
    "SVAE": "its posterior is a von Mises–Fisher distribution on the sphere",
    "PoincareVAE": "its latent space is hyperbolic",
}


def is_pythae_model(model: object) -> bool:
    """A model of Pythae's (its class, or a base class, defined under ``pythae.models``), without importing
    Pythae."""
    return isinstance(model, nn.Module) and any(cls.__module__.startswith("pythae.models")
                                                for cls in type(model).__mro__)


def _family(model: nn.Module) -> str:
    for cls in type(model).__mro__:
        if cls.__module__.startswith("pythae.") and (cls.__name__ in SUPPORTED or cls.__name__ in REFUSED):
            return cls.__name__
    raise ParameterError(f"pythae {type(model).__name__} is not supported: supported are {', '.join(SUPPORTED)}")


class PythaeAdapter:
    """A Pythae VAE-family model (see the module docstring for which).

    Parameters
    ----------
    model : pythae.models.BaseAE
    beta : float, optional
        Overrides the KL weight read from the model's configuration.
    """

    def __init__(self, model: nn.Module, *, beta: float | None = None) -> None:
        family = _family(model)
        if family in REFUSED:
            raise ParameterError(f"pythae {type(model).__name__} is not supported: {REFUSED[family]}")
        config = model.model_config
        self.model = model
        self.name = f"pythae {type(model).__name__}"
        self.prior_std = 1.0
        self.reconstruction_loss = str(getattr(config, "reconstruction_loss", "mse"))
        if self.reconstruction_loss not in ("mse", "bce"):
            raise ParameterError(f"pythae reconstruction_loss {self.reconstruction_loss!r}: expected 'mse' or 'bce'")
        weight, note = SUPPORTED[family]
        if beta is not None:
            self.beta: float | None = float(beta)
        elif weight == "1":
            self.beta = 1.0
        elif weight == "info":                      # InfoVAE: (1 − α)·KL + (α + λ − 1)·MMD
            self.beta = 1.0 - float(config.alpha)
        elif weight is not None:
            self.beta = float(getattr(config, weight))
        else:
            self.beta = None
        self.notes: list[str] = [] if note is None else [note]
        self.notes.append("likelihood: " + ("unit-variance Gaussian N(x̂, I), as Pythae's 'mse' loss and get_nll"
                                            if self.reconstruction_loss == "mse" else
                                            "Bernoulli with probabilities x̂, as Pythae's 'bce' loss"))

    def modules(self) -> Sequence[nn.Module]:
        return [self.model]

    def inputs(self, batch: object) -> Tensor:
        """A tensor, ``(x, ...)`` or Pythae's ``DatasetOutput``/dict with ``"data"``."""
        return batch_inputs(batch)

    def posterior(self, x: Tensor) -> Normal:
        out = self.model.encoder(x)
        return Normal(out["embedding"], torch.exp(0.5 * out["log_covariance"]), validate_args=False)

    def decode(self, z: Tensor) -> Distribution:
        recon = self.model.decoder(z)["reconstruction"]
        dims = recon.dim() - 1
        if self.reconstruction_loss == "mse":
            return Independent(Normal(recon, torch.ones_like(recon), validate_args=False), dims, validate_args=False)
        probs = recon.clamp(1e-7, 1 - 1e-7)
        return Independent(Bernoulli(probs=probs, validate_args=False), dims, validate_args=False)


def from_pythae(model: nn.Module, **options: object) -> PythaeAdapter:
    return PythaeAdapter(model, **options)  # type: ignore[arg-type]
