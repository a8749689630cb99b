"""The hyper-parameters an explanation reads (:class:`Setting`), normalised from a loose dict (:func:`read_hyper`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from collapsekit._validation import positive, positive_vector
from collapsekit.errors import ParameterError



@dataclass(frozen=True)
class Setting:
    """The hyper-parameters of a run, normalised (see :func:`read_hyper`)."""

    kind: str
    betas: tuple[float, ...]
    eta_enc: float
    eta_dec: float
    encoder_std: float | tuple[float, ...] | None   # VAE: None = learnable (or data-dependent)
    sigma1: float | None                            # hierarchy: None = not a fixed number
    sigma2: float | None                            # hierarchy: None = learnable
    sigma2_learnable: bool
    latent_dims: tuple[int, ...] | None
    closed_form: str | None = None                  # the theory's model of this kind ("vae", "cvae", "mhvae")

    def beta(self, level_index: int) -> float:
        """β of level ``level_index`` (0 = bottom); a single β applies to every level."""
        return self.betas[min(level_index, len(self.betas) - 1)]


def _std_setting(name: str, value: Any) -> float | tuple[float, ...] | None:
    """A fixed std (number or numbers) or None for "learnable", "data", "auto"."""
    if value is None or (isinstance(value, str) and value in ("learnable", "data", "auto")):
        return None
    if isinstance(value, str):
        raise ParameterError(f"{name} must be a number, 'learnable' or 'data', got {value!r}")
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = positive_vector(name, [float(v) for v in value], len(value))
        return tuple(float(v) for v in arr)
    return positive(name, value)


def read_hyper(kind: str, hyper: Mapping[str, Any] | None) -> Setting:
    """Normalise a hyper-parameter dict of a model of family ``kind`` (:data:`collapsekit.models.MODEL_FAMILIES`,
    registered ones too): ``beta`` (a number, or one per level bottom to top),
    ``eta_enc``, ``eta_dec``, ``encoder_std``, ``sigma1``, ``sigma2`` ("learnable" or a number),
    ``latent_dims`` (or ``latent_dim``). Missing values take the library's defaults (β = 1, η = 1,
    σ₁ = 0.5, learnable σ₂).

    Raises
    ------
    ParameterError
        Naming the field, for an unknown model kind or a value out of its domain.
    """
    from collapsekit.models.registry import MODEL_FAMILIES

    if kind not in MODEL_FAMILIES:
        raise ParameterError(f"model_kind must be one of {list(MODEL_FAMILIES)}, got {kind!r}")
    hyper = dict(hyper or {})
    beta = hyper.get("beta", 1.0)
    if isinstance(beta, (list, tuple, np.ndarray)):
        if len(beta) == 0:
            raise ParameterError("beta: an empty list; give one number, or one per latent level")
        betas = tuple(positive(f"beta[{i}]", b) for i, b in enumerate(beta))
    else:
        betas = (positive("beta", beta),)
    dims = hyper.get("latent_dims", hyper.get("latent_dim"))
    if dims is not None:
        dims = (int(dims),) if isinstance(dims, (int, np.integer)) else tuple(int(d) for d in dims)
    sigma1 = _std_setting("sigma1", hyper.get("sigma1", 0.5))
    sigma2_raw = hyper.get("sigma2", "learnable")
    sigma2 = _std_setting("sigma2", sigma2_raw)
    return Setting(kind=kind, betas=betas, eta_enc=positive("eta_enc", hyper.get("eta_enc", 1.0)),
                   eta_dec=positive("eta_dec", hyper.get("eta_dec", 1.0)),
                   encoder_std=_std_setting("encoder_std", hyper.get("encoder_std")),
                   sigma1=sigma1 if isinstance(sigma1, float) else None,
                   sigma2=sigma2 if isinstance(sigma2, float) else None,
                   sigma2_learnable=sigma2_raw is None or sigma2_raw == "learnable",
                   latent_dims=dims, closed_form=MODEL_FAMILIES[kind].closed_form)
