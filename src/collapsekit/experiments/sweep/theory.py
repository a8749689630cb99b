"""The closed form's count beside a sweep: at one point, and as a curve over a fine grid of one key.

The sweep's figure and the presets' figures draw their theory curves with :func:`fine_values` and
:func:`theory_curve`: one rule for the x values, one for the counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsekit.activity import count_active
from collapsekit.errors import CollapsekitError
from collapsekit.experiments.sweep.grid import integer_key
from collapsekit.experiments.sweep.points import point_config

if TYPE_CHECKING:
    from collapsekit.theory import Moments
    from collapsekit.training import RunConfig, TrainingData

#: x values of the plot's theory curve: each is one closed-form prediction (an eigendecomposition of
#: the data's residual moments: about 0.4 s for an MNIST CVAE on one core).
CURVE_POINTS = 80

#: A theory curve spans the grid a little beyond its ends, so that the steps there show: on a log axis
#: from the smallest value ÷ CURVE_MARGIN to the largest × CURVE_MARGIN, on a linear one the range
#: widened by CURVE_PAD of itself on each side (never below 0 for a grid of positive values).
CURVE_MARGIN = 1.5
CURVE_PAD = 0.05


def predicted_active(config: RunConfig, data: TrainingData | Moments, *, eta_dec: float | None = None,
                     beta_scale: float = 1.0) -> tuple[int | None, str]:
    """Top-level dimensions the closed form keeps from collapse, and the label of that number.

    The setting, the moments and the prediction come from :mod:`collapsekit.diagnostics.theory_compare`
    (what ``collapsekit diagnose`` sets beside its measurement), so the two always agree.

    Parameters
    ----------
    config : RunConfig
    data : TrainingData or Moments
        The data the point trains on, or its moments already computed (a curve over many β).
    eta_dec : float, optional
        The learned η_dec, when it was learned.
    beta_scale : float
        The schedule's factor on β at the end of training.

    Returns
    -------
    (int or None, str)
        The count (None where the theory does not apply) and ``"exact"``,
        ``"linear-theory estimate"`` or ``"no prediction: <why>"``.
    """
    from collapsekit.diagnostics.theory_compare import (ESTIMATE, EXACT, TheorySetting, moments_for, predict_for,
                                                        unsupported_reason)
    from collapsekit.theory import Moments

    setting = TheorySetting.from_config(config, eta_dec=eta_dec, beta_scale=beta_scale)
    reason = unsupported_reason(setting)
    if reason is not None:
        return None, f"no prediction: {reason}"
    moments = data if isinstance(data, Moments) else moments_for(setting, data.x, data.y)
    try:
        _, top_kl = list(predict_for(setting, moments).values())[-1]
    except CollapsekitError as exc:                       # e.g. more latent dimensions than data dimensions
        return None, f"no prediction: {exc}"
    return count_active(top_kl), EXACT if setting.linear and not setting.notes else ESTIMATE


def predicted_interval(config: RunConfig, count: int | None, label: str, latent_size: int) -> tuple[int, int] | None:
    """The interval of an estimated count, as the reports state it: the count ± the post-hoc closed form's
    split-conformal half-width for the configuration's regime (:mod:`collapsekit.diagnostics.forecast_intervals`),
    clipped to ``[0, latent_size]``. None for an exact prediction or none at all."""
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of
    from collapsekit.diagnostics.theory_compare import ESTIMATE

    if count is None or label != ESTIMATE:
        return None
    return conformal_interval(count, latent_size, half_width(CONFORMAL["posthoc"], regime_of(config)))


def predicted_cell(row: Mapping[str, Any]) -> str:
    """A row's predicted count as every table prints it, with its interval where it is an estimate: ``2 (0–4)``
    (``n_active_predicted`` and ``n_active_predicted_lo``/``_hi`` of a summary row); "" where there is none."""
    count, lo, hi = row.get("n_active_predicted"), row.get("n_active_predicted_lo"), row.get("n_active_predicted_hi")
    if count is None:
        return ""
    return f"{count}" if lo is None or hi is None else f"{count} ({lo}–{hi})"


def estimate_accuracy(config: RunConfig, label: str | None) -> str | None:
    """The benchmark's measured accuracy beside an estimated count, as the reports' theory column quotes it
    (:func:`~collapsekit.diagnostics.forecast_accuracy.comparable` of the post-hoc closed form for the
    configuration's regime), e.g. "within ±1 on 40 % of the 30 benchmark runs with a learned η_dec"; None for an
    exact prediction or none at all."""
    from collapsekit.diagnostics.forecast_accuracy import comparable
    from collapsekit.diagnostics.forecast_intervals import regime_of
    from collapsekit.diagnostics.theory_compare import ESTIMATE

    if label != ESTIMATE:
        return None
    return comparable("posthoc", str(config.model.arch), regime_of(config))


def estimate_accuracies(base: RunConfig, grid: Mapping[str, Sequence[Any]],
                        rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The distinct :func:`estimate_accuracy` clauses of a sweep's estimated rows (one per regime its grid
    spans, in row order); [] where every count is exact or missing. Each row's configuration is rebuilt from its
    grid values and seed, since a grid key (``model.learn_eta_dec``) may change the regime quoted."""
    from collapsekit.diagnostics.theory_compare import ESTIMATE

    clauses: list[str] = []
    for row in rows:
        if row.get("theory") != ESTIMATE:
            continue
        try:
            config = point_config(base, {key: row[key] for key in grid}, int(row["seed"]))
        except (CollapsekitError, KeyError, TypeError, ValueError):   # a row this grid does not describe
            continue
        clause = estimate_accuracy(config, ESTIMATE)
        if clause is not None and clause not in clauses:
            clauses.append(clause)
    return clauses


def fine_values(key: str, values: Sequence[Any], log: bool, n: int = CURVE_POINTS) -> list[Any]:
    """Many x values spanning a grid key's ``values``: every integer for an integer key (latent sizes,
    epochs), else ``n`` values spaced evenly on the axis (geometrically when ``log``)."""
    low, high = min(values), max(values)
    if integer_key(key) or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return list(range(int(low), int(high) + 1))
    if log:
        return [float(v) for v in np.geomspace(low / CURVE_MARGIN, high * CURVE_MARGIN, n)]
    pad = CURVE_PAD * (high - low or 1.0)
    start = low - pad if low <= 0 else max(low - pad, low / CURVE_MARGIN)
    return [float(v) for v in np.linspace(start, high + pad, n)]


def theory_curve(base: RunConfig, settings: Mapping[str, Any], key: str, values: Sequence[Any], seed: int,
                 moments: Moments | Callable[[RunConfig], Moments]) -> tuple[np.ndarray, str]:
    """Predicted active (non-collapsed) top-level dimensions at each of ``values`` of grid key ``key``
    (the other grid keys at ``settings``), NaN where the theory gives no number; and its label.

    ``moments`` are the data's (or small ones with the same leading spectrum), or a function of a
    point's configuration that returns them (called for each point: cache it).
    """
    counts, label = [], ""
    for value in values:
        try:
            config = point_config(base, {**settings, key: value}, seed)
            count, label = predicted_active(config, moments if not callable(moments) else moments(config))
        except CollapsekitError:
            count = None
        counts.append(np.nan if count is None else count)
    return np.asarray(counts, dtype=float), label


def moments_cache(cache: dict[str, Any] | None = None) -> Callable[[RunConfig], Moments]:
    """The data's moments of a point's configuration, computed once per data setting (not once per x)."""
    store: dict[str, Any] = {} if cache is None else cache

    def moments(config: RunConfig) -> Moments:
        from collapsekit.diagnostics.theory_compare import TheorySetting, moments_for
        from collapsekit.training import load_training_data

        setting = TheorySetting.from_config(config)
        key = json.dumps([config.data.model_dump(mode="json"), config.train.seed, setting.conditional])
        if key not in store:
            data = load_training_data(config)
            store[key] = moments_for(setting, data.x, data.y)
        return store[key]

    return moments
