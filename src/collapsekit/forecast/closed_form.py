"""Closed-form forecasts: the linear optimum (docs/theory.md §2) at the end of a configured run.

Three variants, each a function of a configuration and its data with the methods' one signature
(``config, data, **constants -> Forecast``):

* :func:`closed_form` — what a user has before training: the configured β and η_dec, raw second moments (cost 0);
* :func:`posthoc` — the number today's sweep summary and ``diagnose`` compute: raw moments, the learned η_dec
  and the schedule's final β (it needs the trained model, so it is a reference, not a forecast);
* :func:`adjusted` — the closed form with what a nonlinear model changes, still before training: centred moments
  (every MLP/conv layer has a bias that absorbs the data's mean), the schedule's final β, a Gaussian stand-in
  η_dec² = mean p(1 − p) for a Bernoulli likelihood, and, where η_dec is learned, the η_dec the run reaches: the
  linear optimum's fixed point (reconstruction error = η_dec²) or, where Adam cannot get there in the run's steps,
  the farthest it gets (:func:`eta_reach`), times a β factor tuned on the benchmark; under free bits λ no
  dimension's KL ends below λ (:func:`~collapsekit.diagnostics.forecast_kernel.free_bits_floor`).

* :func:`shifted` — :func:`closed_form` with β multiplied by a factor per regime (the schedule: a cyclical
  schedule's effective β is lower, free bits keep every dimension above the threshold), the factors chosen on
  the benchmark's tuning split.

The interval of each is split-conformal (:mod:`collapsekit.diagnostics.forecast_intervals`): the forecast ± the 90 %
conformal quantile of the absolute count residual on the benchmark's tuning split (docs/forecast.md). An
explicit ``width`` c gives the older interval instead: the counts at β·c and β/c.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from collapsekit.activity import count_active
from collapsekit.diagnostics.forecast_accuracy import TUNED
from collapsekit.diagnostics.forecast_kernel import COMPACT_MODES, closed_form_kl, compact, free_bits_floor
from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of
from collapsekit.errors import ParameterError
from collapsekit.forecast.result import Forecast
from collapsekit.theory import Moments

__all__ = ["COMPACT_MODES", "adjusted", "bernoulli_eta", "centred_moments", "compact", "method_kl", "closed_form", "closed_form_kl", "final_beta_scale", "learned_eta_estimate",
           "eta_reach", "posthoc", "shifted", "total_steps"]

#: The adjusted method's factor on β (tuned on the benchmark's tuning split, bench/forecast/score.py; 1 = the
#: linear optimum), from the tuned constants' one home, :data:`collapsekit.diagnostics.forecast_accuracy.TUNED`.
DEFAULT_BETA_FACTOR = float(TUNED["adjusted"]["beta_factor"])
#: :func:`shifted`'s factor on β: per value of the regime field ``by`` where the tuning split had that regime,
#: else ``pooled`` (tuned likewise).
DEFAULT_SHIFT: dict[str, Any] = TUNED["shifted"]["shift"]


def _arrays(data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) as float64 arrays from a TrainingData, a Dataset or an (x, y) pair."""
    x, y = (data if isinstance(data, tuple) else (data.x, getattr(data, "y", None)))
    plain = lambda a: a.detach().cpu().double().numpy() if hasattr(a, "detach") else np.asarray(a, float)  # noqa: E731
    return plain(x), None if y is None else plain(y)


def _per_epoch(config: Any, n: int) -> int:
    return max(1, math.ceil(n / config.train.batch_size))


def total_steps(config: Any, n: int) -> int:
    """Optimiser steps of the configured run on ``n`` training rows (one process)."""
    return _per_epoch(config, n) * config.train.epochs


def final_beta_scale(config: Any, n: int) -> float:
    """The schedule's factor on β at the last step of the configured run (1 for a constant schedule)."""
    from collapsekit.objectives import build_schedule

    schedule = build_schedule(config.schedule.name, **config.schedule.settings)
    if config.schedule.name == "capacity":
        return 1.0
    return float(schedule.value(total_steps(config, n) - 1))


def bernoulli_eta(target: np.ndarray) -> float:
    """The Gaussian stand-in for a Bernoulli likelihood: η² = mean over coordinates of p(1 − p), p the mean of
    each coordinate (the Bernoulli log-likelihood's curvature at the mean, inverted)."""
    p = np.clip(target.mean(axis=0), 0.0, 1.0)
    return float(math.sqrt(max(float(np.mean(p * (1 - p))), 1e-6)))


def _moments(kind: str, x: np.ndarray, y: np.ndarray | None, centred: bool) -> Moments:
    if centred:
        x = x - x.mean(axis=0)
        y = None if y is None else y - y.mean(axis=0)
    return Moments.from_data(x, y if kind == "cvae" else None)


def _variances(kind: str, moments: Moments) -> np.ndarray:
    """The variance-like spectrum the decoder reconstructs: eig E[xxᵀ], or of the CVAE's residual E."""
    return np.asarray(moments.cvae_spectrum() if kind == "cvae" else moments.vae_spectrum() ** 2, float)


def learned_eta_estimate(config: Any, moments: Moments | np.ndarray, beta: float, iterations: int = 200) -> float:
    """The η_dec a learned decoder std settles at in the linear model: η² = (Σ over kept modes of min(λ, βη²) +
    the rest of the spectrum) / D, solved by fixed-point iteration from η² = mean λ. ``moments``: the data's
    moments, or their variance spectrum (descending) already computed."""
    spectrum = _variances(config.model.kind, moments) if isinstance(moments, Moments) else np.asarray(moments, float)
    dim = spectrum.size
    k = min(config.model.latent_dims[0], dim)
    eta2 = max(float(spectrum.mean()), 1e-8)
    for _ in range(iterations):
        kept = np.minimum(spectrum[:k], beta * eta2).sum()
        new = max(float((kept + spectrum[k:].sum()) / dim), 1e-8)
        if abs(new - eta2) <= 1e-10 * eta2:
            break
        eta2 = new
    return float(math.sqrt(eta2))


def eta_reach(config: Any, n: int) -> float:
    """The smallest decoder std a learned η_dec can reach in the configured run: η_dec is trained as log η_dec and
    Adam moves a parameter by at most about its learning rate per step, so log η_dec falls by at most the sum of
    the learning rates over the run's steps (half of it for a cosine decay): η₀ · exp(−Σ lr). On the benchmark
    this bound, not the linear optimum's fixed point, is where most learned-η_dec runs end (docs/forecast.md)."""
    total = config.optim.lr * total_steps(config, n) * (0.5 if config.optim.lr_schedule == "cosine" else 1.0)
    return float(config.model.eta_dec * math.exp(-total))


def _forecast(kl_at: Callable[[float], np.ndarray], *, width: float | None, method: str, notes: list[str],
              config: Any = None) -> Forecast:
    """The forecast from ``kl_at(m)``, the closed form's KL with β multiplied by m: the count at m = 1; the
    interval conformal (``width`` None: ± the method's calibrated half-width for the configuration's regime) or
    from m = width (fewer dimensions) and m = 1/width (more)."""
    kl = kl_at(1.0)
    if width is None:
        linear = config is not None and config.model.arch == "linear"     # exact at the optimum
        q = 0.0 if linear else half_width(CONFORMAL[method], regime_of(config) if config is not None else None)
        n = count_active(kl)
        return Forecast.from_kl(kl, interval=conformal_interval(n, len(kl), q), method=method, notes=notes)
    if not width >= 1:
        raise ParameterError(f"the interval factor must be ≥ 1, got {width:g}")
    if width == 1:
        return Forecast.from_kl(kl, method=method, notes=notes)
    lo, hi = count_active(kl_at(width)), count_active(kl_at(1 / width))
    return Forecast.from_kl(kl, interval=(lo, hi), method=method, notes=notes)


def method_kl(method: str, config: Any, data: Any, *, eta_dec: float | None = None, beta_factor: float | None = None,
              moments: Moments | None = None) -> tuple[Callable[[float], np.ndarray], list[str]]:
    """``(kl_at, notes)`` of a closed-form method: ``kl_at(m)`` is its KL per rank with β multiplied by m.

    ``method``: ``closed_form``, ``posthoc`` (``eta_dec``: the learned value) or ``adjusted`` (``beta_factor``;
    ``moments``: :func:`centred_moments` of ``data`` when already computed). The expensive parts (moments,
    spectra) are computed once, so a curve over many m costs little more than one forecast.
    """
    x, y = _arrays(data)
    kind = config.model.kind
    notes: list[str] = []
    if method in ("closed_form", "posthoc"):
        raw = compact(config, _moments(kind, x, y, centred=False))
        if config.model.likelihood != "gaussian":
            notes.append("the configured η_dec stands in for the Bernoulli likelihood (the closed form assumes a "
                         "Gaussian)")
        if method == "closed_form":
            return (lambda m: closed_form_kl(config, raw, beta_scale=m)), notes
        scale = final_beta_scale(config, x.shape[0])
        eta = eta_dec if config.model.learn_eta_dec else None
        notes.append("needs the trained model (learned η_dec): a reference, not a forecast")
        return (lambda m: closed_form_kl(config, raw, beta_scale=scale * m, eta_dec=eta)), notes
    if method != "adjusted":
        raise ParameterError(f"unknown closed-form method {method!r} (closed_form, posthoc, adjusted)")
    full = _moments(kind, x, y, centred=config.model.arch != "linear") if moments is None else moments
    reduced = compact(config, full)
    if beta_factor is None:     # a correction for nonlinear models: the linear model's closed form is exact
        beta_factor = 1.0 if config.model.arch == "linear" else DEFAULT_BETA_FACTOR
    scale = final_beta_scale(config, x.shape[0]) * beta_factor
    first = float(config.objective.beta[0] if isinstance(config.objective.beta, list) else config.objective.beta)
    stand_in = None
    spectrum = None
    reach = 0.0
    if config.model.likelihood == "bernoulli":
        stand_in = bernoulli_eta(y if kind == "cvae" and y is not None else x)
        notes.append(f"Gaussian stand-in for the Bernoulli likelihood: η_dec = {stand_in:.3g}")
    elif config.model.learn_eta_dec:
        spectrum = _variances(kind, full)
        reach = eta_reach(config, x.shape[0])
        notes.append("learned η_dec estimated as the linear optimum's fixed point or, if larger, the farthest Adam "
                     f"gets from η₀ in the run: {max(learned_eta_estimate(config, spectrum, first * scale), reach):.3g}")
    free_bits = config.objective.free_bits
    if free_bits:
        notes.append(f"free bits of {free_bits:g} nats: no dimension's KL ends below them (a floor on the closed form)")

    def kl_at(m: float) -> np.ndarray:
        eta = stand_in if spectrum is None else max(learned_eta_estimate(config, spectrum, first * scale * m), reach)
        return free_bits_floor(closed_form_kl(config, reduced, beta_scale=scale * m, eta_dec=eta), free_bits)

    return kl_at, notes


def closed_form(config: Any, data: Any, *, width: float | None = None) -> Forecast:
    """The closed form from the configuration alone: configured β (no schedule) and η_dec, raw second moments.

    Parameters
    ----------
    config : RunConfig
    data : TrainingData, Dataset or (x, y)
        The rows the run trains on.
    width : float, optional
        Interval factor c ≥ 1: the interval is the counts at β·c and β/c. Default: the split-conformal
        interval (:mod:`collapsekit.diagnostics.forecast_intervals`).

    Returns
    -------
    Forecast
        Cost 0. A Bernoulli likelihood is treated as a Gaussian of the configured η_dec (a note says so).
    """
    kl_at, notes = method_kl("closed_form", config, data)
    return _forecast(kl_at, width=width, method="closed_form", notes=notes, config=config)


def posthoc(config: Any, data: Any, *, eta_dec: float | None = None, width: float | None = None) -> Forecast:
    """The post-hoc closed form of ``diagnose`` and the sweep summary: raw moments, the learned η_dec (``eta_dec``,
    read from the trained model) and the schedule's final β factor."""
    kl_at, notes = method_kl("posthoc", config, data, eta_dec=eta_dec)
    return _forecast(kl_at, width=width, method="posthoc", notes=notes, config=config)


def centred_moments(config: Any, data: Any) -> Moments:
    """The second moments :func:`adjusted` uses (of x, or of (x, y) for a CVAE): centred, except for the linear
    model, which has no biases (its closed form is exact on the raw moments)."""
    x, y = _arrays(data)
    return _moments(config.model.kind, x, y, centred=config.model.arch != "linear")


def adjusted(config: Any, data: Any, *, width: float | None = None, beta_factor: float | None = None,
             moments: Moments | None = None) -> Forecast:
    """The closed form adjusted for a nonlinear model, from the configuration and data alone (cost 0).

    Centred moments (the biases absorb the mean; raw for the bias-free linear model), the schedule's final β
    times ``beta_factor``, η_dec: the configured one, the Gaussian stand-in :func:`bernoulli_eta` for a Bernoulli
    likelihood, or :func:`learned_eta_estimate` where η_dec is learned. ``moments``: :func:`centred_moments` of
    ``data`` when already computed.
    """
    kl_at, notes = method_kl("adjusted", config, data, beta_factor=beta_factor, moments=moments)
    return _forecast(kl_at, width=width, method="adjusted", notes=notes, config=config)


def shift_factor(config: Any, shift: dict[str, Any] | None = None) -> float:
    """:func:`shifted`'s factor on β for the configuration's regime (default :data:`DEFAULT_SHIFT`)."""
    shift = DEFAULT_SHIFT if shift is None else shift
    by = shift.get("by")
    regime = regime_of(config)
    if by is not None and regime.get(by) in shift.get("regimes", {}):
        return float(shift["regimes"][regime[by]])
    return float(shift["pooled"])


def shifted(config: Any, data: Any, *, shift: dict[str, Any] | None = None, width: float | None = None) -> Forecast:
    """A cost-0 closed form (``shift["base"]``: :func:`closed_form` or :func:`adjusted` at β factor 1) with β
    multiplied by the factor of the configuration's regime; base and factors chosen on the benchmark's tuning
    split (``shift``: default :data:`DEFAULT_SHIFT`)."""
    shift = DEFAULT_SHIFT if shift is None else shift
    factor = shift_factor(config, shift)
    base_kl, notes = method_kl(shift.get("base", "closed_form"), config, data, beta_factor=1.0)
    notes.append(f"β × {factor:.3g}: the benchmark's tuned factor for this regime")
    return _forecast(lambda m: base_kl(factor * m), width=width, method="shifted", notes=notes, config=config)
