"""Why did these latent dimensions collapse, and what setting would keep them? Causes and prescriptions.

One engine, shared by :class:`~collapsekit.training.monitor.CollapseMonitor` (during training) and by
the reports (after training): given the dimensions *measured* collapsed and what is known of the run
(model kind, data moments, hyper-parameters, KL schedule), :func:`explain_collapse` returns one
:class:`Explanation` per cause that applies, most specific first:

``loss_reduction``
    The reconstruction loss is averaged over the D features instead of summed: a β·D model.
``warmup``
    The KL warm-up is not over when the run ends, or β is still ramping now.
``cvae_correlation``
    CVAE: x already explains most of y, so the residual left to z is small (Theorem 2).
``learnable_sigma2``
    Hierarchy: the top level's encoder variance Σ₂ is learnable (Theorem 3); a fixed σ₂ cannot
    collapse exactly (Theorem 5).
``beta``
    β·η_dec² exceeds the data's spectrum: the closed forms say how many dimensions the data support
    and which β keeps more (``predicted`` holds the numbers; "(predicted)" in the text).
``rank``
    More latent dimensions than the data have nonzero modes: no β keeps the extra ones.
``not_predicted``
    The theory predicts no collapse at these settings: the cause is outside the linear theory.
``generic``
    Nothing is known about the data: the usual remedies, without invented numbers.

Numbers come from :mod:`collapsekit.theory` (never re-derived here). For a model that is not linear
they are a *linear-theory estimate* (the text says so); for the linear models they are exact.
β is the true KL weight, KL in nats (docs/theory.md §1.0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from collapsekit._io import jsonable
from collapsekit._validation import positive, positive_vector
from collapsekit.errors import ParameterError
from collapsekit.formatting import cell
from collapsekit.activity import DURING_TRAINING, KL_ACTIVE_THRESHOLD
from collapsekit.theory import Moments, Prediction, predict, recommend_beta

#: Model kinds understood here (the registry's names).
MODEL_KINDS = ("vae", "cvae", "hvae")
#: Every cause :func:`explain_collapse` can name, in the order explanations are returned.
CAUSES = ("loss_reduction", "warmup", "cvae_correlation", "learnable_sigma2", "rank", "beta", "not_predicted",
          "generic")
#: The most a prescription lowers β by before it settles for fewer dimensions (two orders of magnitude):
#: keeping a mode whose eigenvalue is 10⁻⁸ of the largest is not advice anyone can use.
MAX_BETA_REDUCTION = 100.0
#: KL (nats) the weakest dimension a prescribed β keeps should carry at the optimum, when the spectrum allows:
#: a β just below a critical value keeps its mode with ≈ 0 nats, which a monitor measures as collapsed.
MIN_KEPT_NATS = 0.25
EXACT, ESTIMATE = "exact", "linear-theory estimate"


@dataclass(frozen=True)
class Explanation:
    """One likely cause of a collapse and what to change.

    Attributes
    ----------
    level : str
        The latent level it is about (``"z"``, ``"z1"``, ``"z2"``, ...).
    cause : str
        One of :data:`CAUSES`.
    message : str
        What is wrong, with numbers and units.
    prescription : str
        What to change; predicted effects say "(predicted)".
    predicted : dict
        The numbers behind the text, JSON-ready (empty when nothing was computed). For ``beta``:
        ``beta`` (the suggested KL weight; ``beta2`` for a hierarchy's top level is under the same
        key), ``parameter`` (``"beta"`` or ``"beta2"``), ``n_active`` and ``n_collapsed`` predicted at
        that β, ``beta_bound`` (any β below it keeps ``target_active``), ``eta_dec`` (the η_dec that
        does the same at the current β), ``current`` (the prediction at the current settings),
        ``label`` (``"exact"`` or ``"linear-theory estimate"``).
    """

    level: str
    cause: str
    message: str
    prescription: str
    predicted: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the same field names)."""
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Explanation:
        """Undo :meth:`to_dict`."""
        return cls(level=str(values["level"]), cause=str(values["cause"]), message=str(values["message"]),
                   prescription=str(values["prescription"]), predicted=dict(values.get("predicted") or {}))

    def __str__(self) -> str:
        return f"{self.message}. → {self.prescription}"


@dataclass(frozen=True)
class ScheduleInfo:
    """Where the KL schedule stands, as far as an explanation needs it.

    Attributes
    ----------
    name : str, optional
        The schedule's name (``"linear"``, ``"sigmoid"``, ``"cyclical"``, ``"capacity"``, ...).
    warmup_steps : int, optional
        Optimiser steps until the KL weight (or capacity) reaches its final value.
    total_steps : int, optional
        Optimiser steps of the whole run.
    step : int, optional
        Optimiser steps done so far.
    scale : float, optional
        The factor on β now, relative to its final value (1: β is at its final value).
    """

    name: str | None = None
    warmup_steps: int | None = None
    total_steps: int | None = None
    step: int | None = None
    scale: float | None = None

    @classmethod
    def from_schedule(cls, schedule: Any, *, total_steps: int | None = None, step: int | None = None) -> ScheduleInfo:
        """Read a :mod:`collapsekit.objectives.schedules` object at ``step`` (steps done so far).

        The scale is ``value(step − 1) / end`` for the β schedules; a capacity schedule controls C,
        not β, so its scale is left unknown.
        """
        name = getattr(schedule, "name", None)
        warmup = getattr(schedule, "warmup_steps", None)
        if warmup is None and getattr(schedule, "controls", "beta_scale") == "capacity":
            warmup = getattr(schedule, "steps", None)
        scale = None
        if step is not None and step > 0 and getattr(schedule, "controls", "beta_scale") == "beta_scale":
            end = float(getattr(schedule, "end", getattr(schedule, "value_", 1.0)) or 1.0)
            scale = float(schedule.value(step - 1)) / end if end > 0 else None
        return cls(name=name, warmup_steps=None if warmup is None else int(warmup),
                   total_steps=None if total_steps is None else int(total_steps), step=step, scale=scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the settings an explanation reads ----------------------------------------------------------------
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
    """Normalise a hyper-parameter dict: ``beta`` (a number, or one per level bottom to top),
    ``eta_enc``, ``eta_dec``, ``encoder_std``, ``sigma1``, ``sigma2`` ("learnable" or a number),
    ``latent_dims`` (or ``latent_dim``). Missing values take the library's defaults (β = 1, η = 1,
    σ₁ = 0.5, learnable σ₂).

    Raises
    ------
    ParameterError
        Naming the field, for an unknown model kind or a value out of its domain.
    """
    if kind not in MODEL_KINDS:
        raise ParameterError(f"model_kind must be one of {list(MODEL_KINDS)}, got {kind!r}")
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
                   latent_dims=dims)


# -- text helpers --------------------------------------------------------------------------------------
def _g(value: float) -> str:
    """A number for a person: 3 significant digits, no trailing zeros."""
    return cell(value, 3)


def _round_down(value: float) -> float:
    """``value`` rounded down to 2 significant digits (a setting a person types; never above ``value``)."""
    if value <= 0 or not math.isfinite(value):
        return value
    unit = 10.0 ** (math.floor(math.log10(value)) - 1)
    rounded = math.floor(value / unit) * unit
    tidy = float(f"{rounded:.2g}")          # 0.43000000000000005 → 0.43
    return tidy if tidy <= value else rounded


def _dims_text(dims: Sequence[int], limit: int = 24) -> str:
    dims = list(dims)
    shown = ", ".join(str(d) for d in dims[:limit])
    return shown + (f", … ({len(dims) - limit} more)" if len(dims) > limit else "")


def collapse_summary(collapsed: Sequence[int], latent_dim: int, *, level: str = "z", epochs: int | None = None,
                     n_collapsed_now: int | None = None) -> str:
    """The first line of a collapse warning: how many, which, by what measure.

    The count is the headline rule (:mod:`collapsekit.activity`) applied to the epoch's batches;
    ``collapsed`` lists the dimensions collapsed for at least ``epochs`` epochs (those the warning is about).

    >>> collapse_summary([0, 2], 4, level="z", epochs=2)
    "z: 2 of 4 dimensions collapsed (mean KL < 0.01 nats on this epoch's batches, for ≥ 2 epochs): 0, 2"
    >>> collapse_summary([0, 2], 4, level="z", epochs=2, n_collapsed_now=3)
    "z: 3 of 4 dimensions collapsed (mean KL < 0.01 nats on this epoch's batches; 2 of them for ≥ 2 epochs): 0, 2"
    """
    now = len(collapsed) if n_collapsed_now is None else int(n_collapsed_now)
    measure = f"mean KL < {_g(KL_ACTIVE_THRESHOLD)} nats {DURING_TRAINING}"
    if epochs is not None:
        span = f"for ≥ {epochs} epoch{'s' if epochs != 1 else ''}"
        measure += f", {span}" if now == len(collapsed) else f"; {len(collapsed)} of them {span}"
    noun = "dimension" if latent_dim == 1 else "dimensions"
    return f"{level}: {now} of {latent_dim} {noun} collapsed ({measure}): {_dims_text(collapsed)}"


def format_explanations(summary: str, explanations: Sequence[Explanation]) -> str:
    """The full text of a warning: the summary, then one line per cause ("what is wrong. → what to change")."""
    lines = [summary]
    lines += [f"  - {e}" for e in explanations]
    return "\n".join(lines)


def _settings_text(setting: Setting, beta_name: str, beta_value: float, extra: Sequence[str] = (),
                   scale: float = 1.0) -> str:
    weight = f"{beta_name} = {_g(beta_value)}"
    if scale != 1.0:
        weight += f" (the weight in force: {100 * scale:.0f}% of the final {_g(beta_value / scale)})"
    parts = [*extra, weight, f"η_dec = {_g(setting.eta_dec)}"]
    if setting.eta_enc != 1.0:
        parts.append(f"η_enc = {_g(setting.eta_enc)}")
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# -- the engine ----------------------------------------------------------------------------------------
def explain_collapse(collapsed: Sequence[int], latent_dim: int, *, model_kind: str = "vae",
                     moments: Moments | None = None, hyper: Mapping[str, Any] | None = None, level: str = "z",
                     schedule: ScheduleInfo | None = None, linear: bool = False, loss_reduction: str = "sum",
                     n_features: int | None = None) -> list[Explanation]:
    """Likely causes of a measured collapse, each with a prescription.

    Parameters
    ----------
    collapsed : sequence of int
        Indices of the dimensions measured collapsed in ``level``.
    latent_dim : int
        Size of ``level``.
    model_kind : {"vae", "cvae", "hvae"}
    moments : Moments, optional
        Raw second moments of the training data (``Moments.from_data(x[, y])``); without them no
        number is predicted.
    hyper : dict, optional
        ``beta`` (number, or one per level bottom to top), ``eta_enc``, ``eta_dec``, ``encoder_std``,
        ``sigma1``, ``sigma2``, ``latent_dims`` (see :func:`read_hyper`).
    level : str
        The level's name: ``"z"``, or ``"z1"``, ``"z2"``, ... bottom to top in a hierarchy. The
        closed forms describe a one-level model's ``z`` and the top level of a two-level hierarchy.
    schedule : ScheduleInfo, optional
        Where the KL schedule stands; the theory then uses the KL weight in force, β·scale.
    linear : bool
        True for the theory's linear models: numbers are exact. Otherwise they are labelled
        "linear-theory estimate".
    loss_reduction : {"sum", "mean"}
        How the user's reconstruction loss reduces over features (plain loops); ``"mean"`` adds the
        β·D hint.
    n_features : int, optional
        D, the number of features the reconstruction is over (for that hint).

    Returns
    -------
    list of Explanation
        Empty when ``collapsed`` is empty; otherwise at least one (``generic`` when nothing else applies).
    """
    dims = sorted({int(d) for d in collapsed})
    latent_dim = int(latent_dim)
    if latent_dim < 1:
        raise ParameterError(f"latent_dim must be ≥ 1, got {latent_dim}")
    if dims and (dims[0] < 0 or dims[-1] >= latent_dim):
        raise ParameterError(f"collapsed: dimension indices must be in 0..{latent_dim - 1}, got {dims}")
    if loss_reduction not in ("sum", "mean"):
        raise ParameterError(f"loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}")
    if moments is not None and not isinstance(moments, Moments):
        raise ParameterError("moments must be a collapsekit.theory.Moments; build one with Moments.from_data(x[, y])")
    setting = read_hyper(model_kind, hyper)
    if not dims:
        return []
    out: list[Explanation] = []
    if loss_reduction == "mean":
        out.append(_loss_reduction(level, setting, n_features))
    scale = 1.0 if schedule is None or schedule.scale is None else float(schedule.scale)
    if schedule is not None:
        warm = _warmup(level, schedule)
        if warm is not None:
            out.append(warm)
    label = EXACT if linear else ESTIMATE
    theory = _Theory.build(setting, moments, level, latent_dim, scale)
    if setting.kind == "cvae" and theory is not None:
        corr = _cvae_correlation(level, setting, theory, label)
        if corr is not None:
            out.append(corr)
    if setting.kind == "hvae" and _is_top(level, setting) and setting.sigma2_learnable:
        sig = _learnable_sigma2(level, setting, scale)
        if sig is not None:
            out.append(sig)
    if theory is not None:
        out.extend(_beta(level, setting, theory, len(dims), latent_dim, label))
    if not any(e.cause in ("beta", "rank", "learnable_sigma2", "cvae_correlation", "not_predicted") for e in out):
        out.append(_generic(level, setting, moments is not None and theory is None))
    order = {cause: i for i, cause in enumerate(CAUSES)}
    return sorted(out, key=lambda e: order[e.cause])


# -- the theory at the current settings -----------------------------------------------------------------
def _level_index(level: str) -> int | None:
    """0-based index of ``"z1"``, ``"z2"``, ...; None for other names."""
    if len(level) > 1 and level[0] == "z" and level[1:].isdigit():
        return int(level[1:]) - 1
    return None


def _is_top(level: str, setting: Setting) -> bool:
    if setting.kind != "hvae":
        return True
    index = _level_index(level)
    n_levels = len(setting.latent_dims) if setting.latent_dims else 2
    return index is not None and index == n_levels - 1


@dataclass(frozen=True)
class _Theory:
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
              scale: float) -> _Theory | None:
        if moments is None or scale <= 0:
            return None
        common = {"eta_enc": setting.eta_enc, "eta_dec": setting.eta_dec}
        if setting.kind in ("vae", "cvae"):
            if setting.kind == "cvae" and not moments.conditional:
                raise ParameterError("a CVAE's explanation needs paired moments: Moments.from_data(x, y)")
            limit = moments.d_x if setting.kind == "vae" else int(moments.d_y or 0)
            k = min(latent_dim, limit)
            kwargs: dict[str, Any] = {"latent_dim": k, **common}
            if setting.kind == "vae":
                kwargs["encoder_std"] = setting.encoder_std
            model, key, name, beta = setting.kind, "beta", "β", setting.beta(0) * scale
        else:
            if not _is_top(level, setting) or setting.sigma1 is None:
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


# -- one function per cause -----------------------------------------------------------------------------
def _loss_reduction(level: str, setting: Setting, n_features: int | None) -> Explanation:
    beta = setting.betas[-1]
    if n_features:
        effect = (f"with β = {_g(beta)} and D = {n_features} it trains like β = {_g(beta * n_features)} "
                  f"(β·D; β·D/2 = {_g(beta * n_features / 2)} if the squared error lacks the ½ of a Gaussian "
                  "log-density)")
    else:
        effect = "the KL weighs D times more than β says (β·D; β·D/2 for a plain squared error)"
    return Explanation(level, "loss_reduction",
                       "the reconstruction loss is averaged over the D features instead of summed, so it is a "
                       f"β·D model: {effect}",
                       "sum the reconstruction over features (reduction='sum') and average over the batch only, "
                       "or divide β by D",
                       {"n_features": n_features, "effective_beta": None if not n_features else beta * n_features})


def _warmup(level: str, schedule: ScheduleInfo) -> Explanation | None:
    warm, total, scale = schedule.warmup_steps, schedule.total_steps, schedule.scale
    what = "warm-up" if schedule.name != "capacity" else "capacity increase"
    if warm is not None and total is not None and warm >= total:
        at_end = "" if scale is None else f" (the KL weight is at {100 * scale:.0f}% of β now)"
        return Explanation(level, "warmup",
                           f"the {what} ({warm} steps) is longer than the run ({total} steps): training ends before "
                           f"the KL weight reaches its final value{at_end}, so the model is never trained at its "
                           "final objective and the dimensions measured now are not those of the final β",
                           f"shorten the {what} to well under {total} steps or train longer; judge collapse after it "
                           "ends",
                           {"warmup_steps": warm, "total_steps": total, "scale": scale})
    if scale is not None and scale < 1.0 - 1e-9:
        step = "" if schedule.step is None else f" at step {schedule.step}"
        return Explanation(level, "warmup",
                           f"β is still ramping{step}: the KL weight is {100 * scale:.0f}% of its final value, so "
                           "more dimensions may collapse as it grows (the theory below uses the weight in force)",
                           "judge collapse after the warm-up ends; if dimensions collapse this early, lower the "
                           "final β or lengthen the warm-up",
                           {"warmup_steps": warm, "total_steps": total, "scale": scale})
    return None


def _cvae_correlation(level: str, setting: Setting, theory: _Theory, label: str) -> Explanation | None:
    """Theorem 2: the CVAE encodes only y's residual on x, E ⪯ E[yyᵀ], so it never keeps more than a VAE on y."""
    m = theory.moments
    assert m.yy is not None
    total = float(np.trace(m.yy))
    left = float(np.trace(m.residual()))
    fraction = left / total if total > 0 else 0.0
    on_y = predict("vae", Moments(xx=m.yy), **{**theory.kwargs, "beta": theory.beta})
    kept = theory.prediction.n_active
    lost = on_y.n_active - kept
    if lost < 1:
        return None
    tail = "" if label == EXACT else f" ({label})"
    return Explanation(
        level, "cvae_correlation",
        f"the x–y correlation leaves little for z: x explains {100 * (1 - fraction):.0f}% of y's second moment, "
        f"leaving {100 * fraction:.0f}% (tr E / tr E[yyᵀ] = {_g(fraction)}) to z; at "
        f"{_settings_text(setting, 'β', theory.beta, scale=theory.scale)} a VAE on y alone would keep "
        f"{on_y.n_active} dimensions, the CVAE keeps {kept}{tail}",
        "lower β or η_dec (the β line gives values), or condition on an x that predicts y less (the decoder "
        "already regresses y on x; z only carries the residual)",
        {"residual_fraction": fraction, "n_active_vae_on_y": on_y.n_active, "n_active": kept,
         "dimensions_lost_to_correlation": lost, "label": label})


def _learnable_sigma2(level: str, setting: Setting, scale: float) -> Explanation | None:
    """Theorem 3 (learnable Σ₂) against Theorem 5 (fixed σ₂): docs/theory.md §2."""
    beta1, beta2 = setting.beta(0) * scale, setting.beta(1) * scale
    eta_dec, s1 = setting.eta_dec, setting.sigma1
    if s1 is None:
        return Explanation(level, "learnable_sigma2",
                           "z₂'s encoder variance Σ₂ is learnable: in the linear hierarchy that is what lets z₂ "
                           "collapse exactly (Theorem 3); with a fixed σ₂ ≠ η_enc it cannot (Theorem 5)",
                           "fix σ₂ (sigma2 = a number ≠ η_enc), or raise β₁ / lower β₂", {})
    tau = beta2 / beta1 * eta_dec**2
    if s1**2 < tau:
        return Explanation(
            level, "learnable_sigma2",
            f"z₂'s encoder variance Σ₂ is learnable (Theorem 3): with σ₁² = {_g(s1**2)} below "
            f"(β₂/β₁)·η_dec² = {_g(tau)}, a z₂ dimension collapses exactly when its θ is below "
            f"β₂η_dec²/(√β₁·σ₁) = {_g(beta2 * eta_dec**2 / (math.sqrt(beta1) * s1))}; with σ₂ fixed (Theorem 5) "
            "exact collapse cannot happen, though modes can still be inactive",
            f"fix σ₂ (sigma2 = a number ≠ η_enc, Theorem 5), or make σ₁² ≥ (β₂/β₁)η_dec², so that no z₂ "
            f"dimension collapses whatever the data (Theorem 3): β₁ ≥ {_g(beta2 * eta_dec**2 / s1**2)}, or "
            f"β₂ < {_g(beta1 * s1**2 / eta_dec**2)}, or σ₁ > {_g(eta_dec * math.sqrt(beta2 / beta1))}",
            {"beta1_min": beta2 * eta_dec**2 / s1**2, "beta2_max": beta1 * s1**2 / eta_dec**2,
             "sigma1_min": eta_dec * math.sqrt(beta2 / beta1), "tau": tau})
    return None


def _beta(level: str, setting: Setting, theory: _Theory, n_collapsed: int, latent_dim: int,
          label: str) -> list[Explanation]:
    """β (β₂) or β·η_dec² too large for the spectrum; or more latent dimensions than data modes."""
    pred = theory.prediction
    name = theory.beta_name
    predicted_collapsed = pred.n_collapsed + theory.extra_dims
    current = {"beta": theory.beta, "n_active": pred.n_active, "n_collapsed": predicted_collapsed,
               "theorem": pred.theorem}
    extra = [] if theory.model != "mhvae" else [f"β₁ = {_g(theory.kwargs['beta1'])}",
                                                 f"σ₁ = {_g(theory.kwargs['sigma1'])}"]
    settings = _settings_text(setting, name, theory.beta, extra, theory.scale)
    estimate = "" if label == EXACT else f" ({label})"
    # Modes with a nonzero critical β: at most that many dimensions can ever be active.
    k_limit = min(pred.latent_dim, int(np.count_nonzero(pred.inactive_beta > 0)))
    out: list[Explanation] = []
    if k_limit < latent_dim:
        out.append(Explanation(
            level, "rank",
            f"the data have {k_limit} usable modes for {latent_dim} latent dimensions: at most {k_limit} can be "
            f"active whatever {name}",
            f"use at most {k_limit} latent dimensions, or accept {latent_dim - k_limit} collapsed",
            {"usable_modes": k_limit, "label": label}))
    if pred.n_collapsed == 0:
        if not out:
            inactive = pred.latent_dim - pred.n_active
            note = "" if not inactive else f", {inactive} inactive but not collapsed (fixed encoder std ≠ η_enc)"
            out.append(Explanation(
                level, "not_predicted",
                f"at {settings} the theory predicts no collapse ({pred.n_active} of {pred.latent_dim} active"
                f"{note}){estimate}, so {name} is not what collapses them", _GENERIC_OTHER,
                {"current": current, "label": label}))
        return out
    spectrum = theory.moments.cvae_spectrum() if theory.model == "cvae" else pred.spectrum
    shown = ", ".join(_g(v) for v in spectrum[:6]) + (", …" if spectrum.size > 6 else "")
    if theory.model == "mhvae":
        rule = f"{name} is below its critical value (Theorem {3 if theory.kwargs['sigma2'] is None else 5})"
    else:
        rule = (f"its eigenvalue of {'E' if theory.model == 'cvae' else 'E[xxᵀ]'} exceeds βη_dec² = "
                f"{_g(theory.beta * setting.eta_dec**2)}")
    message = (f"with {settings} the data's {theory.spectrum_name} supports {pred.n_active} of {latent_dim} "
               f"(a dimension stays active only while {rule}; eigenvalues {shown}): predicted collapsed "
               f"{predicted_collapsed}, measured {n_collapsed}{estimate}")
    if k_limit <= pred.n_active:           # every usable mode is already active: only the rank is to blame
        return out
    # Keep every usable mode if a β at most MAX_BETA_REDUCTION× lower does it; else as many as such a β keeps,
    # and at least one more than now.
    target = next((k for k in range(k_limit, pred.n_active, -1)
                   if theory.bound(k) >= theory.beta / MAX_BETA_REDUCTION), pred.n_active + 1)
    upper = theory.bound(target)
    lower = theory.bound(target + 1) if target < k_limit else 0.0
    # Aim halfway (geometrically) between the target-th critical β and the next one, so that neither mode
    # sits near its critical point; without a close next one, ½·log(upper/β) = MIN_KEPT_NATS for the last kept.
    suggested = _round_down(math.sqrt(upper * max(lower, upper * math.exp(-4.0 * MIN_KEPT_NATS))))
    after = theory.at(suggested)
    # After a warm-up the weight in force is the final β, so the prescribed value is the final β itself;
    # the η_dec alternative holds that final β fixed.
    final_beta = theory.beta / theory.scale
    eta_dec = setting.eta_dec * math.sqrt(suggested / final_beta)   # every critical β scales as 1/η_dec²
    ramp = "" if theory.scale == 1.0 else " (its final value, after the warm-up)"
    why = "the threshold is βη_dec²" if theory.model != "mhvae" else "every critical β₂ scales as 1/η_dec²"
    tag = "(predicted)" if label == EXACT else f"(predicted; {label})"
    prescription = (f"{name} ≤ {_g(suggested)}{ramp} keeps {after.n_active} of {latent_dim} {tag}; or keep {name} "
                    f"and lower η_dec to ≤ {_g(eta_dec)} ({why})")
    if after.n_active < k_limit:
        everything = theory.bound(k_limit)
        prescription += f"; all {k_limit} usable modes need {name} < {_g(everything)}"
    predicted = {"parameter": theory.beta_key, "beta": suggested, "beta_bound": upper,
                 "target_active": target, "n_active": after.n_active,
                 "n_collapsed": after.n_collapsed + theory.extra_dims, "eta_dec": eta_dec, "current": current,
                 "label": label, "theorem": pred.theorem}
    out.append(Explanation(level, "beta", message, prescription, predicted))
    return out


_GENERIC_OTHER = ("look beyond β: a decoder strong enough to model the data without z, an encoder that lags the "
                  "decoder (aggressive encoder updates), or try free bits (a floor of λ nats per dimension on the "
                  "KL) or a KL warm-up")


def _generic(level: str, setting: Setting, theory_unavailable: bool) -> Explanation:
    beta = ", ".join(_g(b) for b in setting.betas)
    why = ("the closed forms do not describe this level" if theory_unavailable else
           "no data moments were given, so no number can be predicted (pass moments= or data= for a prediction)")
    return Explanation(level, "generic",
                       f"these dimensions carry (almost) no information about the input at β = {beta}, "
                       f"η_dec = {_g(setting.eta_dec)}; {why}",
                       "lower β, or lower η_dec (the collapse threshold is βη_dec²); free bits (a floor of λ nats per "
                       "dimension on the KL) or a KL warm-up keep dimensions in use", {})
