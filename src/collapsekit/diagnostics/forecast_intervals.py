"""Split-conformal intervals for a forecast count, and the regime a configuration belongs to.

A forecast's stated interval is ``[n − q, n + q]`` clipped to ``[0, latent size]``, where ``q`` is the conformal
quantile of the absolute count residual |measured − forecast| on the benchmark's tuning split (docs/forecast.md):
the ⌈(m + 1)·level⌉-th smallest of m calibration scores. If the calibration configurations and a new one are
exchangeable, the new one's measured count lies in its interval with probability ≥ level (Vovk et al.; Lei et al.
2018, "Distribution-free predictive inference for regression"). Each calibration configuration contributes *one*
score, the largest residual over its seeds, so the guarantee is per configuration (all its seeds covered), not
broken by the seeds' correlation. Nothing is guaranteed for a configuration unlike the calibration set — a new
dataset, architecture or regime — and docs/forecast.md reports leave-one-dataset-out coverage, which may miss.

Constants (``{"pooled": q, "by": field, "regimes": {value: q}}``) are written by bench/forecast/score.py into the
package data file ``forecast_tuned.json`` (:data:`~.forecast_accuracy.TUNED`); :data:`CONFORMAL` names them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from collapsekit.diagnostics.forecast_accuracy import TUNED

__all__ = ["CONFORMAL", "LEVEL", "MIN_CONFIGURATIONS", "TUNED_AS", "calibrate", "conformal_interval", "conformal_quantile",
           "half_width", "regime_of"]

#: The coverage the intervals are calibrated for.
LEVEL = 0.9
#: Fewest calibration configurations a regime needs for its own quantile (with fewer, at level 0.9, the quantile
#: is the largest score or infinite); regimes with fewer use the pooled quantile.
MIN_CONFIGURATIONS = 19

#: The benchmark's name (score.py's, in the tuned constants) of the variant each method of :data:`CONFORMAL` ships,
#: where they differ.
TUNED_AS = {"early": "early_only"}
#: Per method (by the name a forecast carries), the conformal half-widths calibrated on the benchmark's tuning split
#: (bench/forecast/score.py, read from its tuned constants: :data:`~.forecast_accuracy.TUNED`). ``early`` is the
#: early-training forecast the package runs (the trajectory alone, the benchmark's ``early_only``), calibrated on
#: the tuning configurations where a 10 % prefix existed; where it falls back, the base closed form's interval stands.
CONFORMAL: dict[str, dict[str, Any]] = {method: TUNED[TUNED_AS.get(method, method)]["conformal"]
                                        for method in ("closed_form", "posthoc", "adjusted", "shifted", "early")}


def conformal_quantile(scores: Iterable[float], level: float = LEVEL) -> float:
    """The split-conformal quantile: the ⌈(m + 1)·level⌉-th smallest of the m scores (∞ when that exceeds m)."""
    values = np.sort(np.asarray(list(scores), float))
    if not 0 < level < 1:
        raise ValueError(f"the level must lie strictly between 0 and 1, got {level:g}")
    k = math.ceil((values.size + 1) * level - 1e-12)
    return math.inf if k > values.size else float(values[k - 1])


def regime_of(config: Any) -> dict[str, str]:
    """The regime labels of a run configuration, as the benchmark's tables name them: ``arch``, ``likelihood``
    (``fixed``, ``learned`` or ``bernoulli``), ``schedule`` (``free_bits`` where free bits are set)."""
    model = config.model
    likelihood = "bernoulli" if model.likelihood == "bernoulli" else ("learned" if model.learn_eta_dec else "fixed")
    schedule = "free_bits" if config.objective.free_bits else config.schedule.name
    return {"arch": str(model.arch), "likelihood": likelihood, "schedule": str(schedule), "kind": str(model.kind)}


def calibrate(residuals: Mapping[str, Sequence[float]], regimes: Mapping[str, Mapping[str, str]] | None = None, *,
              by: str | None = None, level: float = LEVEL,
              min_configurations: int = MIN_CONFIGURATIONS) -> dict[str, Any]:
    """Conformal half-widths from calibration residuals.

    Parameters
    ----------
    residuals : {configuration id: [measured − forecast per seed]}
        One entry per calibration configuration; its score is the largest |residual| over its seeds.
    regimes : {configuration id: regime labels}, optional
        Needed with ``by``.
    by : str, optional
        A regime field (``arch``, ``likelihood``, ``schedule``): a quantile per value that has at least
        ``min_configurations`` configurations; the others use the pooled one.
    """
    scores = {cid: max(abs(float(r)) for r in values) for cid, values in residuals.items() if len(values)}
    out: dict[str, Any] = {"pooled": conformal_quantile(scores.values(), level), "by": by, "regimes": {}}
    if by is not None:
        assert regimes is not None, "calibrating per regime needs each configuration's regime"
        for value in sorted({regimes[cid][by] for cid in scores}):
            group = [s for cid, s in scores.items() if regimes[cid][by] == value]
            if len(group) >= min_configurations:
                out["regimes"][value] = conformal_quantile(group, level)
    return out


def half_width(constants: Mapping[str, Any], regime: Mapping[str, str] | None = None) -> float:
    """The half-width for a regime: its own quantile where calibrated, else the pooled one."""
    by = constants.get("by")
    if by is not None and regime is not None and regime.get(by) in constants.get("regimes", {}):
        return float(constants["regimes"][regime[by]])
    return float(constants["pooled"])


def conformal_interval(n_active: int, latent_size: int, q: float) -> tuple[int, int]:
    """``[n − q, n + q]`` clipped to ``[0, latent_size]`` (q = ∞: the whole range)."""
    if math.isinf(q):
        return 0, int(latent_size)
    q = int(math.floor(q + 1e-9))
    return max(0, int(n_active) - q), min(int(latent_size), int(n_active) + q)
