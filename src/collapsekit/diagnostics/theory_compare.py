"""Theory beside measurement: the linear closed form on the same data and hyper-parameters.

For a VAE, a CVAE or a two-level hierarchy trained with the β-ELBO and a Gaussian likelihood,
the closed form (docs/theory.md §2) says which dimensions collapse and the KL each keeps. For a linear model the
numbers are exact (at the optimum); for MLP/conv models they are a *linear-theory estimate* and
every report labels them so. Latent dimensions are identified only up to permutation, so the
prediction is set beside the measurement sorted by KL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from collapsekit._validation import zero_beta, zero_beta_note
from collapsekit.activity import count_active
from collapsekit.diagnostics.explain import Explanation
from collapsekit.diagnostics.forecast_accuracy import benchmark_accuracy
from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of
from collapsekit.diagnostics.report import CollapseReport, TheoryComparison
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments, Prediction, predict_cvae, predict_mhvae, predict_vae

EXACT, ESTIMATE = "exact", "linear-theory estimate"


@dataclass
class TheorySetting:
    """What the linear theory needs to know about a trained model.

    Attributes
    ----------
    kind : str
        The model family (:data:`collapsekit.models.MODEL_FAMILIES`); only those with a closed form get a prediction.
    linear : bool
        The model is the theory's linear model (numbers are exact, not an estimate).
    latent_dims : list of int
        Bottom to top.
    beta : list of float
        True KL weight per level (bottom to top), after any schedule.
    eta_enc, eta_dec : float
        Prior std; decoder std (the learned value when η_dec was learned).
    encoder_std : "learnable", "data" or float
        One-level models: learnable or data-dependent stds use the learnable-Σ closed form; a
        fixed number uses Theorem 1.
    sigma1, sigma2 : float or None
        Hierarchy: fixed std of z₁ (None when learnable or data-dependent: no closed form); fixed std
        of z₂, or None when learnable or data-dependent (the learnable-Σ₂ closed form).
    likelihood, objective : str
        The theory covers a Gaussian likelihood and the β-ELBO; anything else gets no prediction.
    regime : dict, optional
        The configuration's regime labels (:func:`~collapsekit.diagnostics.forecast_intervals.regime_of`), which
        pick the benchmark row and conformal half-width an estimate quotes; None: the whole split's.
    """

    kind: str
    linear: bool
    latent_dims: list[int]
    beta: list[float]
    eta_enc: float = 1.0
    eta_dec: float = 1.0
    encoder_std: str | float = "learnable"
    sigma1: float | None = 0.5
    sigma2: float | None = None
    likelihood: str = "gaussian"
    objective: str = "elbo"
    notes: list[str] = field(default_factory=list)
    regime: dict[str, str] | None = None

    @classmethod
    def from_config(cls, config: Any, *, eta_dec: float | None = None, beta_scale: float = 1.0) -> "TheorySetting":
        """From a :class:`~collapsekit.training.RunConfig`; ``eta_dec`` overrides a learned η_dec,
        ``beta_scale`` is the schedule's factor at the end of training."""
        m, o = config.model, config.objective
        levels = len(m.latent_dims)
        betas = list(o.beta) if isinstance(o.beta, list) else [float(o.beta)] * levels
        if len(betas) == 1:
            betas = betas * levels
        std = m.encoder_std if m.encoder_std != "auto" else ("learnable" if m.arch == "linear" else "data")
        notes = []
        if config.schedule.name == "capacity":
            notes.append("a capacity objective targets a KL, not a β: the theory's β-ELBO optimum does not apply")
        if o.free_bits:
            notes.append(f"free bits ({o.free_bits:g} nats) change the objective below the floor: "
                         "the prediction is for the plain β-ELBO")
        return cls(kind=m.kind, linear=m.arch == "linear", latent_dims=list(m.latent_dims),
                   beta=[b * beta_scale for b in betas], eta_enc=m.eta_enc,
                   eta_dec=m.eta_dec if eta_dec is None else eta_dec, encoder_std=std,
                   sigma1=m.sigma1 if isinstance(m.sigma1, float) else None,
                   sigma2=m.sigma2 if isinstance(m.sigma2, float) else None, likelihood=m.likelihood,
                   objective=o.name if config.schedule.name != "capacity" else "capacity", notes=notes,
                   regime=regime_of(config))

    @property
    def closed_form(self) -> str | None:
        """The theory's model that describes this kind (``"vae"``, ``"cvae"``, ``"mhvae"``), from the registry
        (:class:`~collapsekit.models.ModelFamily`); None: none does."""
        from collapsekit.models.registry import closed_form

        return closed_form(self.kind)

    @property
    def conditional(self) -> bool:
        """The kind models y given x (its data are (x, y) pairs), from the registry."""
        from collapsekit.models.registry import MODEL_FAMILIES

        family = MODEL_FAMILIES.get(self.kind)
        return family is not None and family.conditional

    @property
    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters as the explanation engine and reports name them."""
        return {"beta": self.beta if len(self.beta) > 1 else self.beta[0], "eta_enc": self.eta_enc,
                "eta_dec": self.eta_dec, "latent_dims": self.latent_dims, "encoder_std": self.encoder_std,
                "sigma1": self.sigma1, "sigma2": self.sigma2}


def unsupported_reason(setting: TheorySetting) -> str | None:
    """Why the closed forms do not describe this model, or None when they do."""
    if setting.closed_form is None:
        return (f"no closed form describes a {setting.kind} model (the theory covers the VAE, the CVAE and the "
                "two-level hierarchical VAE)")
    if setting.objective == "elbo" and zero_beta(setting.beta):
        return "β = 0 puts no weight on the KL (a plain autoencoder); the closed forms need β > 0"
    if setting.likelihood != "gaussian":
        return f"the closed forms assume a Gaussian likelihood; this model's is {setting.likelihood}"
    if setting.objective != "elbo":
        return f"the closed forms describe the β-ELBO optimum; this model was trained with {setting.objective}"
    hierarchy = setting.closed_form == "mhvae"
    if hierarchy and len(setting.latent_dims) != 2:
        return f"the closed forms cover two-level hierarchies; this one has {len(setting.latent_dims)} levels"
    if hierarchy and setting.latent_dims[1] > setting.latent_dims[0]:
        return "the MHVAE closed form needs d₂ ≤ d₁"
    if hierarchy and setting.sigma1 is None:
        return "the MHVAE closed forms assume a fixed σ₁; this model's is learnable or data-dependent"
    return None


def predict_for(setting: TheorySetting, moments: Moments) -> dict[str, tuple[Prediction, np.ndarray]]:
    """The prediction for each latent level: {level name: (prediction, predicted KL per dim)}."""
    if setting.closed_form == "cvae":
        p = predict_cvae(moments, latent_dim=setting.latent_dims[0], beta=setting.beta[0], eta_enc=setting.eta_enc,
                         eta_dec=setting.eta_dec)
        return {"z": (p, p.kl_per_dim)}
    if setting.closed_form == "vae":
        std = setting.encoder_std if isinstance(setting.encoder_std, float) else None
        p = predict_vae(moments, latent_dim=setting.latent_dims[0], beta=setting.beta[0], eta_enc=setting.eta_enc,
                        eta_dec=setting.eta_dec, encoder_std=std)
        return {"z": (p, p.kl_per_dim)}
    if setting.sigma1 is None:
        raise ParameterError(unsupported_reason(setting) or "σ₁ is not fixed")
    p = predict_mhvae(moments, latent_dims=setting.latent_dims, beta1=setting.beta[0], beta2=setting.beta[1],
                      eta_enc=setting.eta_enc, eta_dec=setting.eta_dec, sigma1=setting.sigma1, sigma2=setting.sigma2)
    assert p.level1 is not None
    return {"z1": (p, np.asarray(p.level1["kl_per_dim"])), "z2": (p, p.kl_per_dim)}


def moments_for(setting: TheorySetting, x: Any, y: Any | None = None) -> Moments:
    """Second moments of the data the model saw: of x, or of (x, y) for a CVAE."""
    as_array = lambda a: a.detach().cpu().double().numpy() if hasattr(a, "detach") else np.asarray(a, float)  # noqa: E731
    return Moments.from_data(as_array(x), None if not setting.conditional or y is None else as_array(y))


def compare_with_theory(report: CollapseReport, setting: TheorySetting, moments: Moments) -> CollapseReport:
    """Attach a :class:`TheoryComparison` to each level the theory describes (in place; returns it).

    Where the theory does not apply the reason is added to ``report.notes`` and nothing is attached.
    """
    reason = unsupported_reason(setting)
    if reason is not None:
        report.notes.append(f"no theory prediction: {reason}")
        return report
    report.notes.extend(setting.notes)
    exact = setting.linear and not setting.notes
    intervals = {} if exact else _intervals(setting, moments)
    benchmark = None if exact else benchmark_accuracy("posthoc", "linear" if setting.linear else "nonlinear",
                                                      setting.regime)
    for name, (prediction, kl_predicted) in predict_for(setting, moments).items():
        try:
            level = report.level(name)
        except KeyError:
            continue
        predicted_sorted = np.sort(np.asarray(kl_predicted, float))[::-1]
        critical = prediction.critical_beta if name != "z1" else np.full(predicted_sorted.size, np.nan)
        order = np.argsort(-np.asarray(kl_predicted, float), kind="stable")
        # One rule for both counts (collapsekit.activity): the closed form's KL per dimension against the
        # same 0.01 nats as the measurement. A mode barely above its threshold keeps less than that at the
        # optimum (the linear VAE's KL is ½·log(λ/βη_dec²): under 0.01 nats within 2 % of the threshold).
        level.theory = TheoryComparison(
            model=prediction.model, theorem=prediction.theorem, exact=exact, label=EXACT if exact else ESTIMATE,
            kl_per_dim=[float(v) for v in predicted_sorted],
            measured_sorted=[float(v) for v in np.sort(np.asarray(level.kl_per_dim))[::-1]],
            n_active_predicted=count_active(predicted_sorted),
            n_active_measured=level.n_active,
            critical_beta=[float(v) for v in np.asarray(critical, float)[order]],
            hyperparameters=_plain(prediction.hyperparameters), interval=intervals.get(name), benchmark=benchmark)
    return report


def _intervals(setting: TheorySetting, moments: Moments) -> dict[str, list[int]]:
    """Per level: the predicted count ± the post-hoc closed form's split-conformal half-width calibrated on the
    benchmark's tuning split (:data:`~collapsekit.diagnostics.forecast_intervals.CONFORMAL`), as
    ``collapsekit.forecast`` states its intervals (the configuration's regime's where calibrated, else pooled)."""
    q = half_width(CONFORMAL["posthoc"], setting.regime)
    return {name: list(conformal_interval(count_active(kl), len(kl), q))
            for name, (_, kl) in predict_for(setting, moments).items()}


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, Sequence) and not isinstance(value, str):
            value = [float(v) if v is not None else None for v in value]
        out[key] = value
    return out


def zero_beta_explanation(level: str, beta: object) -> Explanation:
    """The explanation of collapsed dimensions in a run with β = 0: no prescription from the collapse theory,
    which does not apply (a plain autoencoder's unused dimensions keep their starting KL, near 0)."""
    return Explanation(level, "generic", zero_beta_note(beta) or "β = 0",
                       "nothing from the collapse theory; a smaller latent size drops dimensions the decoder does "
                       "not use", {})
