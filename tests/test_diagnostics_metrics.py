"""The latent-usage metrics against planted truths: every expected value below is counted by hand
from arrays built to have it exactly (variances, KLs at the thresholds, correlations)."""

from __future__ import annotations

import numpy as np
import pytest

from collapsekit.diagnostics import (active_fraction, active_units, collapse_fractions, eps_delta_collapse,
                                     kl_per_dim, mean_sampled_correlation, variable_types)
from collapsekit.errors import DataError, ParameterError


def columns_with_variance(variances: list[float], n: int, seed: int = 0) -> np.ndarray:
    """(n, d) columns whose unbiased (ddof = 1) sample variance is exactly ``variances`` (to rounding)."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, len(variances)))
    raw = (raw - raw.mean(0)) / raw.std(0, ddof=1)
    return raw * np.sqrt(variances) + rng.normal(size=len(variances))      # any offset: variance ignores it


def test_kl_per_dim_is_the_mean_over_examples_and_rate_its_sum():
    kl = np.array([[0.0, 1.0, 2.0], [0.2, 3.0, 0.0]])
    out = kl_per_dim(kl)
    np.testing.assert_allclose(out["kl_per_dim"], [0.1, 2.0, 1.0])
    assert out["rate"] == pytest.approx(3.1) and out["units"] == "nats"


def test_active_units_counts_planted_variances_with_the_unbiased_estimator():
    # N = 50: the 0.0101 column has population (ddof = 0) variance 0.0101·49/50 = 0.0099 < 0.01, so the count
    # distinguishes He et al.'s unbiased variance (3 active) from np.var's default (2).
    planted = [2.0, 0.02, 0.0101, 0.0099, 1e-6, 0.0]
    mean = columns_with_variance(planted, n=50)
    out = active_units(mean)
    np.testing.assert_allclose(out["variance_of_mean"], planted, atol=1e-12)
    assert out["active_units"] == 3
    assert out["active"].tolist() == [True, True, True, False, False, False]
    assert int((mean.var(0) > 0.01).sum()) == 2                                  # the population variance would say 2
    # strictly greater: a unit exactly at the threshold is inactive
    at_threshold = float(mean[:, 1].var(ddof=1))
    assert active_units(mean, threshold=at_threshold)["active_units"] == 1


def test_active_fraction_matches_a_hand_count():
    kl = np.array([[0.0, 0.01, 0.5],
                   [0.009, 0.02, 0.0],
                   [0.011, 0.0099, 1.0],
                   [0.0, 0.01, 0.2]])
    out = active_fraction(kl)
    # KL ≥ 0.01 (equality counts as active): column 0 → 1 of 4, column 1 → 3 (two exact 0.01), column 2 → 3
    assert out["active_fraction"] == pytest.approx(7 / 12)
    np.testing.assert_allclose(out["active_fraction_per_dim"], [0.25, 0.75, 0.75])


def planted_kl() -> np.ndarray:
    """100 examples × 5 dimensions with KLs placed on the (ε, δ) = (0.01, 0.01) boundary."""
    kl = np.zeros((100, 5))
    kl[0, 0] = 1.0                      # 99 of 100 below ε: exactly 1 − δ → collapsed
    kl[:2, 1] = 1.0                     # 98 below → not collapsed
    kl[:, 2] = 0.0099
    kl[0, 2] = 0.01                     # one KL *equal* to ε is not below it: 99 below → collapsed
    kl[:2, 3] = 0.01                    # two equal to ε → not collapsed
    kl[:, 4] = 0.05                     # collapsed only for ε > 0.05
    return kl


def test_eps_delta_collapse_at_the_boundary():
    out = eps_delta_collapse(planted_kl(), epsilon=0.01, delta=0.01)
    assert out["collapsed"].tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(out["fraction_below"], [0.99, 0.98, 0.99, 0.98, 0.0])
    assert out["collapsed_fraction"] == pytest.approx(0.4)
    # δ = 0 is the strict "for every x" definition: one example above ε is enough to be active
    assert eps_delta_collapse(planted_kl(), epsilon=0.01, delta=0.0)["collapsed"].tolist() == [False] * 5


def test_collapse_fractions_over_several_epsilons():
    out = collapse_fractions(planted_kl(), epsilons=(0.01, 0.05, 0.1))
    # ε = 0.05: dims 0, 2, 3 (0.05 itself is not below 0.05); ε = 0.1: every dimension but 1
    assert out["collapse_fraction"] == pytest.approx({"0.01": 0.4, "0.05": 0.6, "0.1": 0.8})


def planted_variances(n: int = 200) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    columns = {
        "active": np.full(n, 0.01),
        "passive": rng.uniform(0.95, 1.05, n),
        "mixed (unstable)": np.where(np.arange(n) % 2 == 0, 0.01, 1.0),     # v = 0.245 ≥ 0.1
        "mixed (mean 0.5)": np.full(n, 0.5),
        "passive (|m − 1| = 0.1)": np.full(n, 0.9),
        "passive (m = 1.1)": np.full(n, 1.1),
        "mixed (m = 1.2)": np.full(n, 1.2),
        "active (m = 0.1)": np.full(n, 0.1),
    }
    expected = [name.split()[0] for name in columns]
    return np.stack(list(columns.values()), axis=1), expected


def test_variable_types_on_planted_variances():
    var, expected = planted_variances()
    out = variable_types(var)
    assert out["types"] == expected
    assert out["counts"] == {"active": 2, "passive": 3, "mixed": 3}
    assert sum(out["counts"].values()) == var.shape[1]                  # exactly one class per dimension
    # the thresholds apply to σ²/prior variance: a prior with η² = 4 and four times the variances is the same
    assert variable_types(4.0 * var, prior_var=4.0)["types"] == expected
    assert variable_types(4.0 * var)["types"] != expected


def test_variable_types_refuses_overlapping_classes():
    with pytest.raises(ParameterError, match="mean_error"):
        variable_types(np.ones((5, 2)), mean_error=0.5)
    with pytest.raises(DataError, match="var"):
        variable_types(-np.ones((5, 2)))


def test_mean_sampled_correlation_on_planted_correlations():
    n = 2000
    rng = np.random.default_rng(4)
    raw = rng.normal(size=(n, 3))
    q, _ = np.linalg.qr(raw - raw.mean(0))                  # centred orthonormal columns: exact correlations
    mean = np.stack([q[:, 0], 0.6 * q[:, 0] + 0.8 * q[:, 1], q[:, 2], np.full(n, 0.3)], axis=1)
    sample = mean + rng.normal(size=mean.shape)
    out = mean_sampled_correlation(mean, sample, ["active", "active", "passive", "passive"])
    # mean representation: pairs (0,1) = 0.6, (0,2) = (1,2) = 0; column 3 is constant and left out
    assert out["mean"]["all"] == pytest.approx(0.2, abs=1e-12)
    assert out["mean"]["active"] == pytest.approx(0.6, abs=1e-12)
    assert out["mean"]["passive"] is None and out["mean"]["mixed"] is None   # < 2 usable columns: None, not NaN
    assert out["constant_mean_dims"] == [3] and out["constant_sampled_dims"] == []
    corr = np.corrcoef(sample, rowvar=False)
    assert out["sampled"]["all"] == pytest.approx(np.abs(corr[~np.eye(4, dtype=bool)]).mean())
    assert out["sampled"]["passive"] == pytest.approx(abs(corr[2, 3]))


def test_metric_inputs_are_checked():
    with pytest.raises(DataError, match="row 1"):
        kl_per_dim(np.array([[0.0], [np.nan]]))
    with pytest.raises(DataError, match="at least 2"):
        active_units(np.zeros((1, 3)))
    with pytest.raises(ParameterError, match="delta"):
        eps_delta_collapse(np.zeros((3, 2)), delta=1.0)
    with pytest.raises(ParameterError, match="types"):
        mean_sampled_correlation(np.zeros((3, 2)), np.zeros((3, 2)), ["active"])
