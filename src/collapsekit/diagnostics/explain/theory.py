"""The closed form that describes a level at the current settings (:class:`LevelTheory`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collapsekit.diagnostics.explain.setting import Setting
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments, Prediction, predict, recommend_beta


def level_index(level: str) -> int | None:
    """0-based index of ``"z1"``, ``"z2"``, ...; None for other names."""
    if len(level) > 1 and level[0] == "z" and level[1:].isdigit():
        return int(level[1:]) - 1
    return None


def is_top(level: str, setting: Setting) -> bool:
    """Whether ``level`` is the top of its model (any level of a one-level model)."""
    if setting.closed_form != "mhvae":
        return True
    index = level_index(level)
    n_levels = len(setting.latent_dims) if setting.latent_dims else 2
    return index is not None and index == n_levels - 1


@dataclass(frozen=True)
class LevelTheory:
    """The closed form that describes ``level``, with the keyword arguments to call it again."""

    model: str                 # "vae", "cvae" or "mhvae" (the theory's names)
    kwargs: dict[str, Any]     # for theory.predict / recommend_beta, without the β it varies
    beta_key: str              # "beta" or "beta2"
    beta_name: str             # "β" or "β₂"
    beta: float                # the KL weight in force (β · schedule scale)
    scale: float
    moments: Moments
    prediction: Prediction
    extra_dims: int            # latent dimensions beyond the data dimension (never active)

    @classmethod
    def build(cls, setting: Setting, moments: Moments | None, level: str, latent_dim: int,
              scale: float) -> LevelTheory | None:
        if moments is None or scale <= 0:
            return None
        common = {"eta_enc": setting.eta_enc, "eta_dec": setting.eta_dec}
        if setting.closed_form in ("vae", "cvae"):
            if setting.closed_form == "cvae" and not moments.conditional:
                raise ParameterError("a CVAE's explanation needs paired moments: Moments.from_data(x, y)")
            limit = moments.d_x if setting.closed_form == "vae" else int(moments.d_y or 0)
            k = min(latent_dim, limit)
            kwargs: dict[str, Any] = {"latent_dim": k, **common}
            if setting.closed_form == "vae":
                kwargs["encoder_std"] = setting.encoder_std
            model, key, name, beta = setting.closed_form, "beta", "β", setting.beta(0) * scale
        elif setting.closed_form != "mhvae":
            return None                # no closed form describes this model family
        else:
            if not is_top(level, setting) or setting.sigma1 is None:
                return None            # the closed forms describe z₂ of a two-level model with fixed σ₁
            if setting.latent_dims is not None and len(setting.latent_dims) != 2:
                return None
            d1, d2 = setting.latent_dims if setting.latent_dims is not None else (latent_dim, latent_dim)
            d1 = min(d1, moments.d_x)
            k = min(d2, d1)
            beta1 = setting.beta(0) * scale
            kwargs = {"latent_dims": (d1, k), "beta1": beta1, "sigma1": setting.sigma1,
                      "sigma2": None if setting.sigma2_learnable else setting.sigma2, **common}
            if not setting.sigma2_learnable and setting.sigma2 is None:
                return None            # a data-dependent σ₂: outside Theorems 3 and 5
            model, key, name, beta = "mhvae", "beta2", "β₂", setting.beta(1) * scale
        prediction = predict(model, moments, **kwargs, **{key: beta})
        return cls(model=model, kwargs=kwargs, beta_key=key, beta_name=name, beta=beta, scale=scale,
                   moments=moments, prediction=prediction, extra_dims=latent_dim - k)

    def at(self, beta: float) -> Prediction:
        return predict(self.model, self.moments, **self.kwargs, **{self.beta_key: beta})

    def bound(self, k: int) -> float:
        """The largest β keeping ≥ k dimensions active (0 when none does)."""
        try:
            return recommend_beta(self.moments, self.model, target_active=k, **self.kwargs)
        except ParameterError:
            return 0.0

    @property
    def spectrum_name(self) -> str:
        return "residual spectrum eig E" if self.model == "cvae" else "spectrum"
