"""Mutual-information estimators against closed forms.

For x ~ N(0, Σ) and a linear Gaussian encoder q(z|x) = N(Ax, S), z is Gaussian and
I(x; z) = ½ log det(AΣAᵀ + S) − ½ log det S exactly (per dimension: ½ log((AΣAᵀ)_jj + s_j²) − ½ log s_j²).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from collapsekit.diagnostics import log_aggregate_posterior, mutual_info, mutual_info_minibatch
from collapsekit.errors import DataError, ParameterError

N = 10_000


def linear_gaussian(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Posterior means and variances of q(z|x) = N(Ax, diag s²) on n draws of x ~ N(0, Σ), with the exact
    joint and per-dimension I(x; z)."""
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(5, 5))
    sigma = root @ root.T / 5 + 0.5 * np.eye(5)
    a = rng.normal(size=(4, 5))
    s2 = np.array([0.5, 1.0, 1.5, 2.0])
    signal = a @ sigma @ a.T
    exact = 0.5 * np.linalg.slogdet(signal + np.diag(s2))[1] - 0.5 * np.log(s2).sum()
    exact_per_dim = 0.5 * np.log((np.diag(signal) + s2) / s2)
    x = np.random.default_rng(seed + 10).multivariate_normal(np.zeros(5), sigma, size=n)
    return x @ a.T, np.tile(s2, (n, 1)), float(exact), exact_per_dim


def test_full_dataset_mutual_info_matches_the_gaussian_closed_form():
    # I(x; z) = 2.22 nats, far below log N = 9.21: every posterior overlaps about N·e^{−I} ≈ 1,000 others, so
    # the mixture of the N posteriors represents q(z) well (its bias grows like e^{I}/N; at I = 5.4 nats the
    # same N gives −0.07 nats). Then the remaining error is Monte Carlo, ≈ 0.014 nats here.
    mean, var, exact, exact_per_dim = linear_gaussian()
    assert 2.0 < exact < 2.5
    out = mutual_info(mean, var, per_dim_queries=None, seed=0)
    assert abs(out["mutual_info"] - exact) < 0.05, (out["mutual_info"], exact)
    low, high = out["ci"]
    assert low <= exact <= high, (out["ci"], exact)
    assert high - low < 4 * 1.96 * out["std_error"]                            # an interval of the right size
    assert out["ceiling"] == pytest.approx(math.log(N))
    np.testing.assert_allclose(out["per_dim"], exact_per_dim, atol=0.05)
    assert np.all(np.abs(out["per_dim"] - exact_per_dim) < 4 * out["per_dim_std_error"])
    assert out["per_example"].shape == (N,) and out["per_example"].mean() == pytest.approx(out["mutual_info"])


def test_per_dimension_query_subset_estimates_the_same_values():
    mean, var, _, exact_per_dim = linear_gaussian(n=4000, seed=1)
    out = mutual_info(mean, var, bootstrap=0, per_dim_queries=1000, seed=1)
    assert out["ci"] is None and out["per_dim_queries"] == 1000
    assert np.all(np.abs(out["per_dim"] - exact_per_dim) < 4 * out["per_dim_std_error"] + 0.01)


def test_collapsed_encoder_has_no_information():
    # q(z|x) = N(0, 1) for every x: the aggregate posterior is that same Gaussian and each contribution is
    # ½ Σ_j (ε_j² − 1), mean 0 with standard error √(d/2N).
    mean, var = np.zeros((4000, 3)), np.ones((4000, 3))
    full = mutual_info(mean, var, seed=2)
    assert full["ci"][0] <= 0.0 <= full["ci"][1]
    assert abs(full["mutual_info"]) < 4 * math.sqrt(3 / 2 / 4000)
    assert np.all(np.abs(full["per_dim"]) < 4 * math.sqrt(1 / 2 / 2000))
    assert abs(mutual_info_minibatch(mean, var, seed=2)["mutual_info"]) < 4 * math.sqrt(3 / 2 / 4000)


def test_minibatch_estimate_saturates_at_log_b():
    # Near-deterministic encoder (σ = 10⁻³, means spread over N(0, I)): every minibatch term is log B up to
    # the zero-mean noise ½ mean(ε² − 1) of the analytic entropy, standard error √(d/2N).
    n, d = 4096, 4
    rng = np.random.default_rng(5)
    mean, var = rng.normal(size=(n, d)), np.full((n, d), 1e-6)
    noise = math.sqrt(d / 2 / n)
    for b in (16, 128):
        out = mutual_info_minibatch(mean, var, batch_size=b, seed=5)
        assert out["ceiling"] == pytest.approx(math.log(b))
        assert out["mutual_info"] <= math.log(b) + 4 * noise
        assert out["mutual_info"] == pytest.approx(math.log(b), abs=4 * noise)
    # the full-dataset estimate saturates at its own ceiling, log N
    full = mutual_info(mean, var, per_dim=False, seed=5)
    assert full["mutual_info"] == pytest.approx(math.log(n), abs=4 * noise)


def test_minibatch_estimate_depends_on_b_and_stays_below_the_full_one():
    mean, var, exact, _ = linear_gaussian(n=4096, seed=3)
    values = [mutual_info_minibatch(mean, var, batch_size=b, seed=3)["mutual_info"] for b in (8, 32, 512)]
    full = mutual_info(mean, var, per_dim=False, bootstrap=0, seed=3)["mutual_info"]
    assert values[0] <= math.log(8) < exact                       # capped below the true 2.2 nats
    assert values[0] < values[1] < values[2] < full + 0.02
    assert full == pytest.approx(exact, abs=0.05)


def test_one_batch_of_everything_is_the_full_dataset_estimate():
    # same seed, one sample per example: the two estimators see identical samples and the same mixture
    mean, var, _, _ = linear_gaussian(n=500, seed=4)
    minibatch = mutual_info_minibatch(mean, var, batch_size=10_000, seed=7)
    full = mutual_info(mean, var, per_dim=False, bootstrap=0, seed=7)
    assert minibatch["mutual_info"] == pytest.approx(full["mutual_info"], abs=1e-9)
    assert minibatch["ceiling"] == pytest.approx(math.log(500))


@pytest.mark.parametrize("d", [1, 3])
def test_log_aggregate_posterior_matches_brute_force(d):
    # variances over eight orders of magnitude, means off-centre, an uneven chunk, and a query far from
    # every component (where each term underflows in float32 and the exact fallback takes over)
    rng = np.random.default_rng(d)
    n = 300
    mean = 3 * rng.normal(size=(n, d)) + 5
    var = np.exp(rng.uniform(np.log(1e-7), np.log(10.0), size=(n, d)))
    z = np.vstack([mean + np.sqrt(var) * rng.normal(size=(n, d)), np.full((1, d), 200.0)])
    exponent = -0.5 * (((z[:, None] - mean[None]) ** 2 / var[None] + np.log(2 * np.pi * var[None])).sum(-1))
    expected = logsumexp(exponent, axis=1) - math.log(n)
    got = log_aggregate_posterior(z, mean, var, chunk_size=37)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_inputs_are_checked():
    with pytest.raises(DataError, match="var"):
        mutual_info(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(DataError, match="shape"):
        mutual_info(np.zeros((5, 2)), np.ones((5, 3)))
    with pytest.raises(ParameterError, match="confidence"):
        mutual_info(np.zeros((5, 2)), np.ones((5, 2)), confidence=1.5)
    with pytest.raises(ParameterError, match="batch_size"):
        mutual_info_minibatch(np.zeros((5, 2)), np.ones((5, 2)), batch_size=0)
    with pytest.raises(DataError, match="dimensions"):
        log_aggregate_posterior(np.zeros((2, 3)), np.zeros((5, 2)), np.ones((5, 2)))


def test_minibatch_estimate_does_not_depend_on_the_order_of_the_data():
    # Two well-separated classes, posterior std 0.5 along the class axis: the information about x includes
    # which class it came from. Batches of data sorted by class would see one class each and estimate
    # I(x; z | class) instead, far lower; the estimator batches a seeded random order of the examples.
    rng = np.random.default_rng(1011)
    n = 4000
    label = np.repeat([0, 1], n // 2)
    mean = np.column_stack([6.0 * label + rng.normal(0, 1, n), rng.normal(0, 1, n)])
    var = np.full_like(mean, 0.25)
    shuffled = rng.permutation(n)
    ordered = mutual_info_minibatch(mean, var, batch_size=128, seed=4)
    mixed = mutual_info_minibatch(mean[shuffled], var[shuffled], batch_size=128, seed=4)
    gap = abs(ordered["mutual_info"] - mixed["mutual_info"])
    assert gap < 4 * math.hypot(ordered["stderr"], mixed["stderr"])
    # The estimate over consecutive batches of the sorted data (what the estimator must not compute):
    z = mean + np.sqrt(var) * rng.standard_normal(mean.shape)
    neg_entropy = (-0.5 * np.log(2 * np.pi * np.e * var)).sum(1)
    consecutive = np.mean(np.concatenate([
        neg_entropy[s:s + 128] - log_aggregate_posterior(z[s:s + 128], mean[s:s + 128], var[s:s + 128])
        for s in range(0, n, 128)]))
    assert ordered["mutual_info"] > consecutive + 0.3          # the class is worth log 2 ≈ 0.69 nats here
    low, high = ordered["ci"]
    assert low < ordered["mutual_info"] < high and ordered["stderr"] > 0


def test_minibatch_standard_error_covers_the_seed_spread():
    rng = np.random.default_rng(1012)     # a stream none of the estimator's seeds below reproduces
    mean, var = rng.normal(0, 1, (3000, 3)), np.full((3000, 3), 0.3)
    runs = [mutual_info_minibatch(mean, var, batch_size=64, seed=s) for s in range(20)]
    values = np.array([r["mutual_info"] for r in runs])
    stderr = np.mean([r["stderr"] for r in runs])
    # the stated standard error is the spread over seeds, within a factor of two
    assert 0.5 < values.std(ddof=1) / stderr < 2.0


def test_the_on_device_one_batch_estimate_is_the_minibatch_estimator_on_that_batch():
    """The monitor's per-epoch estimate (torch, one batch, one draw per example) is He et al.'s estimator:
    with the same draws it equals E[log q(z|x)] − log q̂(z) over the batch, q̂ the batch's mixture."""
    import torch

    from collapsekit.diagnostics import mutual_info_one_batch

    mean, var, _, _ = linear_gaussian(n=300, seed=4)
    estimate, ceiling = mutual_info_one_batch(torch.as_tensor(mean, dtype=torch.float32),
                                              torch.as_tensor(var, dtype=torch.float32),
                                              torch.Generator().manual_seed(7))
    mu, v = torch.as_tensor(mean, dtype=torch.float32).double(), torch.as_tensor(var, dtype=torch.float32).double()
    z = (mu + v.sqrt() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    negative_entropy = -0.5 * (np.log(2 * np.pi) + 1 + np.log(v.numpy())).sum(1)
    reference = float(np.mean(negative_entropy - log_aggregate_posterior(z.numpy(), mu.numpy(), v.numpy())))
    assert ceiling == pytest.approx(math.log(300))
    assert estimate == pytest.approx(reference, abs=1e-6) and 0 < estimate <= math.log(300)
    assert mutual_info_one_batch(torch.zeros(1, 4), torch.ones(1, 4), torch.Generator()) == (None, None)
