"""Latent-usage metrics: plain functions on (N, d) numpy arrays from :mod:`.posterior`.

Each function returns a dict of named values plus a ``"units"`` entry (disentanglement_lib's
metric protocol): scalars are Python numbers, per-dimension values float64 arrays of shape (d,).
Definitions follow docs/metrics.md (sections named in each docstring); KL values are in nats.

Two different things are called "active units" in the literature, and both are here:

* :func:`active_units`: Burda et al.'s count of dimensions whose posterior **mean** varies
  across examples (Var_x E_q[z_j] > 0.01);
* :func:`active_fraction`: the paper's "AU" (docs/theory.md §3), the fraction of (example, dimension)
  pairs whose **KL** to the prior is at least 0.01 nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from collapsekit.errors import DataError, ParameterError
from collapsekit._validation import as_2d_finite, non_negative, positive

#: The three classes of Bonheme & Grzes, in the order counts are reported.
VARIABLE_TYPES = ("active", "passive", "mixed")


def _matrix(name: str, values: object, *, min_rows: int = 1) -> np.ndarray:
    array = as_2d_finite(name, values).astype(np.float64, copy=False)
    if array.shape[0] < min_rows:
        raise DataError(f"{name}: needs at least {min_rows} examples (rows), got {array.shape[0]}")
    return array


def _fraction(name: str, value: object) -> float:
    number = non_negative(name, value)
    if number >= 1:
        raise ParameterError(f"{name} must be in [0, 1), got {value!r}")
    return number


def kl_per_dim(kl: np.ndarray) -> dict[str, Any]:
    """Per-dimension rate R_j = E_x KL_j(x) and the total rate R = Σ_j R_j (docs/metrics.md §0).

    Parameters
    ----------
    kl : ndarray (N, d)
        Per example and dimension KL to the prior, nats.
    """
    kl = _matrix("kl", kl)
    per_dim = kl.mean(axis=0)
    return {"kl_per_dim": per_dim, "rate": float(per_dim.sum()), "units": "nats"}


def active_units(mean: np.ndarray, threshold: float = 0.01) -> dict[str, Any]:
    """Burda et al.'s active units (docs/metrics.md §1): dimensions with Var_x E_q[z_j] > ``threshold``.

    The variance is the unbiased one (ddof = 1, He et al.'s code) over the whole set, never an
    average of per-batch variances (which misses the between-batch part). It depends on the latent
    scale: with a prior std η ≠ 1 compare with the threshold times η².

    Returns
    -------
    dict
        ``active_units`` (int), ``variance_of_mean`` (d,), ``active`` (d,) bool, ``threshold``.
    """
    mean = _matrix("mean", mean, min_rows=2)
    threshold = non_negative("threshold", threshold)
    variance = mean.var(axis=0, ddof=1)
    active = variance > threshold
    return {"active_units": int(active.sum()), "variance_of_mean": variance, "active": active,
            "threshold": threshold, "units": "count of dimensions (variance in latent units²)"}


def active_fraction(kl: np.ndarray, threshold: float = 0.01) -> dict[str, Any]:
    """The paper's "AU" (docs/theory.md §3): the fraction of (example, dimension) pairs with KL ≥ ``threshold``.

    Returns
    -------
    dict
        ``active_fraction`` (float in [0, 1]), ``active_fraction_per_dim`` (d,), ``threshold``.
    """
    kl = _matrix("kl", kl)
    threshold = non_negative("threshold", threshold)
    active = kl >= threshold
    return {"active_fraction": float(active.mean()), "active_fraction_per_dim": active.mean(axis=0),
            "threshold": threshold, "units": "fraction of (example, dimension) pairs"}


def eps_delta_collapse(kl: np.ndarray, epsilon: float = 0.01, delta: float = 0.01) -> dict[str, Any]:
    """(ε, δ)-collapse of Lucas et al. (docs/metrics.md §2a): P_x[KL_j(x) < ε] ≥ 1 − δ, per dimension.

    Counted exactly: dimension j is collapsed when at most δ·N examples have KL_j ≥ ε (a KL equal
    to ε is not below it, the same boundary as :func:`active_fraction`).

    Returns
    -------
    dict
        ``collapsed`` (d,) bool, ``fraction_below`` (d,) = P_x[KL_j < ε], ``collapsed_fraction``
        (fraction of dimensions collapsed), ``epsilon``, ``delta``.
    """
    kl = _matrix("kl", kl)
    epsilon, delta = non_negative("epsilon", epsilon), _fraction("delta", delta)
    n = kl.shape[0]
    above = (kl >= epsilon).sum(axis=0)
    # compare counts, not floating fractions: 99 of 100 below must meet 1 − 0.01 exactly
    collapsed = above <= delta * n * (1 + 1e-12)
    return {"collapsed": collapsed, "fraction_below": 1.0 - above / n,
            "collapsed_fraction": float(collapsed.mean()), "epsilon": epsilon, "delta": delta,
            "units": "fraction of dimensions"}


def collapse_fractions(kl: np.ndarray, epsilons: Sequence[float] = (0.01, 0.05, 0.1),
                       delta: float = 0.01) -> dict[str, Any]:
    """The fraction of dimensions (ε, δ)-collapsed for several ε (the sweep Lucas et al. plot).

    Returns
    -------
    dict
        ``collapse_fraction``: {``f"{ε:g}"``: fraction}, ``delta``.
    """
    if isinstance(epsilons, (str, bytes)) or not isinstance(epsilons, Sequence) or not epsilons:
        raise ParameterError(f"epsilons must be a non-empty sequence of numbers, got {epsilons!r}")
    fractions = {f"{non_negative('epsilons', eps):g}": eps_delta_collapse(kl, eps, delta)["collapsed_fraction"]
                 for eps in epsilons}
    return {"collapse_fraction": fractions, "delta": _fraction("delta", delta), "units": "fraction of dimensions"}


def variable_types(var: np.ndarray, prior_var: float = 1.0, var_threshold: float = 0.1,
                   mean_error: float = 0.1) -> dict[str, Any]:
    """Active / passive / mixed variables of Bonheme & Grzes (docs/metrics.md §5).

    On the variance representation s_j(x) = σ_j²(x) / prior_var: with m_j its mean and v_j its
    (population) variance over the examples,

    * passive: v_j < ``var_threshold`` and |m_j − 1| ≤ ``mean_error`` (posterior ≈ prior everywhere);
    * active: v_j < ``var_threshold`` and m_j ≤ ``mean_error`` (σ² ≪ prior variance everywhere);
    * mixed: everything else.

    ``mean_error`` < 0.5 keeps the first two disjoint, so every dimension gets exactly one class.

    Returns
    -------
    dict
        ``types`` (list of str, one per dimension), ``counts`` {type: int},
        ``mean_variance`` m (d,), ``variance_of_variance`` v (d,).
    """
    var = _matrix("var", var)
    if (var <= 0).any():
        raise DataError("var: posterior variances must be > 0 (variances, not log-variances)")
    prior_var = positive("prior_var", prior_var)
    var_threshold = positive("var_threshold", var_threshold)
    mean_error = non_negative("mean_error", mean_error)
    if mean_error >= 0.5:
        raise ParameterError(f"mean_error must be < 0.5 so that active and passive cannot overlap, got {mean_error!r}")
    scaled = var / prior_var
    m, v = scaled.mean(axis=0), scaled.var(axis=0)
    stable = v < var_threshold
    # boundaries belong to the class (≤), with a tolerance so that rounding does not move them:
    # 1.1 − 1 = 0.10000000000000009 and the mean of many 0.1 is 0.10000000000000002
    limit = mean_error + 1e-9
    passive = stable & (np.abs(m - 1.0) <= limit)
    active = stable & (m <= limit)
    types = np.where(active, "active", np.where(passive, "passive", "mixed"))
    return {"types": [str(t) for t in types], "counts": {t: int((types == t).sum()) for t in VARIABLE_TYPES},
            "mean_variance": m, "variance_of_variance": v, "prior_var": prior_var,
            "units": "class per dimension (variances relative to the prior variance)"}


def _constant_columns(values: np.ndarray) -> np.ndarray:
    """Columns whose spread is at rounding level (std ≤ 1e-6 of their RMS, float32's resolution): their
    correlations are noise or 0/0."""
    std = values.std(axis=0)
    rms = np.sqrt((values**2).mean(axis=0))
    return std <= 1e-6 * rms


def _mean_abs_offdiag(values: np.ndarray, columns: np.ndarray) -> float | None:
    if columns.size < 2:
        return None
    corr = np.corrcoef(values[:, columns], rowvar=False)
    off = ~np.eye(columns.size, dtype=bool)
    return float(np.abs(corr[off]).mean())


def mean_sampled_correlation(mean: np.ndarray, sample: np.ndarray, types: Sequence[str]) -> dict[str, Any]:
    """Mean |off-diagonal correlation| of the mean and of the sampled representations (docs/metrics.md §5).

    Bonheme & Grzes's finding: passive variables look correlated through their (near-constant) means
    and uncorrelated in the samples. Columns that are constant up to rounding are left out (their
    correlation is undefined) and listed; a group with fewer than two usable columns gets ``None``,
    never NaN.

    Parameters
    ----------
    mean, sample : ndarray (N, d)
        Posterior means and one posterior sample per example.
    types : sequence of str
        One of "active", "passive", "mixed" per dimension (:func:`variable_types`).

    Returns
    -------
    dict
        ``mean`` and ``sampled``: {"all", "active", "passive", "mixed": float or None};
        ``constant_mean_dims``, ``constant_sampled_dims``: dimension indices left out.
    """
    mean = _matrix("mean", mean, min_rows=2)
    sample = _matrix("sample", sample, min_rows=2)
    if sample.shape != mean.shape:
        raise DataError(f"sample has shape {sample.shape} but mean has {mean.shape}")
    labels = np.asarray(list(types), dtype=object)
    if labels.shape != (mean.shape[1],) or not set(labels.tolist()) <= set(VARIABLE_TYPES):
        raise ParameterError(f"types must give one of {list(VARIABLE_TYPES)} for each of the {mean.shape[1]} "
                             "dimensions")
    out: dict[str, Any] = {}
    for key, values in (("mean", mean), ("sampled", sample)):
        constant = _constant_columns(values)
        groups = {"all": ~constant, **{t: (labels == t) & ~constant for t in VARIABLE_TYPES}}
        out[key] = {group: _mean_abs_offdiag(values, np.flatnonzero(mask)) for group, mask in groups.items()}
        out[f"constant_{key}_dims"] = [int(i) for i in np.flatnonzero(constant)]
    out["units"] = "mean absolute correlation (dimensionless)"
    return out
