"""The closed form beside a preset's measurements: the count over a fine grid, and the values a short
run can be held to."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from collapsekit.errors import CollapsekitError
from collapsekit.experiments.reproduction.context import Context
from collapsekit.experiments.sweep.theory import fine_values, theory_curve

if TYPE_CHECKING:
    from collapsekit.theory import Moments
    from collapsekit.training import RunConfig

#: A β or η "near" a threshold: within this factor of it (the quick scale leaves such values out,
#: since training converges slowest there; see :func:`well_separated`).
QUICK_MARGIN = 1.15
#: x values of a preset's theory curve: on :func:`spectrum_moments` a prediction costs microseconds, so
#: the presets' curves are finer than a sweep's (:data:`collapsekit.experiments.sweep.CURVE_POINTS`).
CURVE_POINTS = 240


def spectrum_moments(ctx: Context, config: RunConfig) -> Moments:
    """Small moments with the same leading spectrum as ``data``'s, for counting active dimensions.

    Which dimensions collapse depends only on the θ paired with the latent dimensions, so the
    prediction on these moments gives the same counts as on the full ones, without an
    eigendecomposition of the data's moments per hyper-parameter value.
    """
    from collapsekit.diagnostics.theory_compare import TheorySetting, moments_for
    from collapsekit.theory import Moments

    k = config.model.latent_dims[0]                       # one-level latent, or z₁ of a hierarchy

    def make() -> Moments:
        data = ctx.training_data(config)
        setting = TheorySetting.from_config(config)
        moments = moments_for(setting, data.x, data.y)
        if setting.closed_form == "cvae":
            theta = np.clip(moments.cvae_spectrum()[:k], 0.0, None)
            return Moments(xx=np.eye(1), xy=np.zeros((1, theta.size)), yy=np.diag(theta))
        return Moments(xx=np.diag(moments.vae_spectrum()[:k] ** 2))

    key = json.dumps(["spectrum", config.data.model_dump(mode="json"), config.train.seed, config.model.kind, k])
    return ctx.cached(key, make)


def closed_form_curve(base: RunConfig, key: str, values: Sequence[float], seed: int, moments: Moments, *,
                      log: bool) -> tuple[np.ndarray, np.ndarray]:
    """(x, count): the closed form's active (non-collapsed) top-level dimensions over a fine grid of grid key
    ``key`` around ``values`` (NaN where the theory gives no number), from one spectrum.

    The x values and the counts are the sweep's (:func:`~collapsekit.experiments.sweep.fine_values`,
    :func:`~collapsekit.experiments.sweep.theory_curve`): one rule for every theory curve.
    """
    fine = fine_values(key, [float(v) for v in values], log, CURVE_POINTS)
    curve, _ = theory_curve(base, {}, key, fine, seed, moments)
    return np.asarray(fine, dtype=float), curve


def well_separated(candidates: Sequence[float], critical: Sequence[float] | np.ndarray, *, count: int,
                   margin: float = QUICK_MARGIN, regimes: Sequence[float] = ()) -> list[float]:
    """Up to ``count`` of ``candidates`` at least a factor ``margin`` from every critical value,
    covering as many different predicted counts (and ``regimes``) as possible.

    Training reaches the closed-form optimum slowest near a threshold (a dimension with KL
    ½·ln(θ/βη²) of a few hundredths of a nat keeps shrinking for thousands of steps), so a short
    run can only be held to the prediction away from it. Used at quick scale only.

    Parameters
    ----------
    candidates : sequence of float
        The paper's grid.
    critical : sequence of float
        Each dimension's critical value (it collapses at and above it).
    count : int
        How many values at most.
    margin : float
        The factor a value must keep from every critical value and regime boundary.
    regimes : sequence of float
        Boundaries where the closed form changes regime without a count changing (the MHVAE's
        β₂ = β₁σ₁²/η_dec²): values on either side count as different groups.
    """
    crit = np.asarray([c for c in critical if np.isfinite(c) and c > 0], dtype=float)
    bounds = np.asarray([*crit, *regimes], dtype=float)
    groups: dict[tuple[int, int], tuple[float, float]] = {}
    for value in candidates:
        distance = np.min(np.abs(np.log(value / bounds))) if bounds.size else np.inf
        if distance < math.log(margin):
            continue
        # collapsed at and above the critical value; the regime is which side of each boundary
        group = (int(np.count_nonzero(crit > value)), sum(value > r for r in regimes))
        if group not in groups or distance > groups[group][1]:
            groups[group] = (float(value), float(distance))
    if not groups:
        raise CollapsekitError("no value of the paper's grid is clear of the thresholds on this data")
    keys = sorted(groups)
    if len(keys) > count:                                   # spread over the available counts
        keys = [keys[round(i * (len(keys) - 1) / (count - 1))] for i in range(count)] if count > 1 else keys[:1]
    return sorted(groups[k][0] for k in dict.fromkeys(keys))

