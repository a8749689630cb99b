"""docs/theory.md §4 worked examples (the spec) and the §2.6 numpy reference for the MHVAE.

Every expected number here is copied from docs/theory.md §4, or computed by the reference
implementation of docs/theory.md §2.6 reproduced verbatim below as an independent oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapsekit.theory import Moments, predict_cvae, predict_mhvae, predict_vae
from theory_reference import mhvae_fixed, mhvae_learnable_sigma2

DEC = 4  # docs/theory.md §4 quotes 4 decimals
ATOL = 0.5 * 10.0**-DEC


def assert_4dp(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=0, atol=ATOL)


def scaled_loss(loss: float, dim: int, eta_dec: float) -> float:
    """ℓ* = 2η_dec²(L* − (d/2)·log(2πη_dec²)) (docs/theory.md §1.1)."""
    return 2 * eta_dec**2 * (loss - 0.5 * dim * np.log(2 * np.pi * eta_dec**2))


# -- Linear VAE, learnable Σ ---------------------------------------------------------------------
VAE_THETA = np.array([3.0, 2.0, 1.5, 0.9, 0.5, 0.3])


@pytest.fixture(scope="module")
def vae_example():
    return predict_vae(Moments(xx=np.diag(VAE_THETA**2)), latent_dim=5, beta=1.0, eta_enc=1.0, eta_dec=1.0)


def test_vae_example_singular_values(vae_example):
    assert_4dp(vae_example.theta, VAE_THETA[:5] ** 2)      # θ on the eigenvalue scale, against βη_dec² = 1
    assert_4dp(vae_example.threshold, [1.0] * 5)
    assert_4dp(vae_example.decoder_sv, [2.8284, 1.7321, 1.1180, 0, 0])
    assert_4dp(vae_example.encoder_sv, [0.9428, 0.8660, 0.7454, 0, 0])
    assert_4dp(vae_example.encoder_std, [1 / 3, 0.5, 2 / 3, 1, 1])


def test_vae_example_collapse_pattern_and_kl(vae_example):
    assert vae_example.n_active == 3
    assert vae_example.n_collapsed == 2
    assert vae_example.inactive.tolist() == [False, False, False, True, True]
    assert vae_example.collapsed.tolist() == [False, False, False, True, True]
    assert_4dp(vae_example.kl_per_dim, [1.0986, 0.6931, 0.4055, 0, 0])
    assert_4dp(vae_example.kl, 1.0986 + 0.6931 + 0.4055)


def test_vae_example_optimal_loss(vae_example):
    assert vae_example.loss == pytest.approx(9.785856, abs=5e-7)
    assert scaled_loss(vae_example.loss, 6, 1.0) == pytest.approx(8.544449, abs=5e-7)


# -- Linear CVAE, Theorem 2 ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cvae_moments():
    return Moments(xx=np.eye(3), xy=np.diag([1.0, 1.0, 0.5]), yy=np.diag([4.0, 2.0, 1.0]))


@pytest.fixture(scope="module")
def cvae_example(cvae_moments):
    return predict_cvae(cvae_moments, latent_dim=3, beta=1.0, eta_enc=1.0, eta_dec=0.9)


def test_cvae_example_residual_spectrum(cvae_moments, cvae_example):
    assert_4dp(cvae_moments.cvae_spectrum(), [3, 1, 0.75])
    assert_4dp(cvae_example.theta, [3, 1, 0.75])
    assert_4dp(cvae_example.threshold, [0.81] * 3)


def test_cvae_example_singular_values(cvae_example):
    assert_4dp(cvae_example.decoder_sv, [1.4799, 0.4359, 0])
    assert_4dp(cvae_example.encoder_std, [0.5196, 0.9, 1.0])


def test_cvae_example_collapse_pattern_and_kl(cvae_example):
    assert cvae_example.n_active == 2
    assert cvae_example.collapsed.tolist() == [False, False, True]
    assert_4dp(cvae_example.kl_per_dim, [0.6547, 0.1054, 0])


def test_cvae_example_optimal_loss(cvae_example):
    assert cvae_example.loss == pytest.approx(4.663724, abs=5e-7)
    assert scaled_loss(cvae_example.loss, 3, 0.9) == pytest.approx(3.601244, abs=5e-7)


def test_cvae_example_regression(cvae_moments):
    np.testing.assert_allclose(cvae_moments.regression(), np.diag([1.0, 1.0, 0.5]), rtol=0, atol=1e-12)


def test_cvae_example_from_data_matches():
    """The same example reached through raw data: x = √3·(one-hot rows), y = D x + independent noise."""
    rng = np.random.default_rng(7)
    n = 3 * 4000
    x = np.sqrt(3.0) * np.eye(3)[np.arange(n) % 3]          # E[xxᵀ] = I exactly
    # y = U₂x + r with r ⟂ x in the sample: residual second moment diag(3, 1, 0.75) exactly.
    r = rng.normal(size=(n, 3))
    r -= x @ np.linalg.lstsq(x, r, rcond=None)[0]           # exact orthogonality to x
    r = r @ np.linalg.inv(np.linalg.cholesky(r.T @ r / n)).T   # whiten: E[rrᵀ] = I
    r = r * np.sqrt([3.0, 1.0, 0.75])
    y = x @ np.diag([1.0, 1.0, 0.5]) + r
    p = predict_cvae(Moments.from_data(x, y), latent_dim=3, beta=1.0, eta_enc=1.0, eta_dec=0.9)
    assert p.loss == pytest.approx(4.663724, abs=5e-7)
    assert_4dp(p.kl_per_dim, [0.6547, 0.1054, 0])


# -- MHVAE: the §2.6 numpy reference (verbatim) is the oracle -----------------------------------
def _random_mhvae_instance(rng, fixed_sigma2: bool):
    d = int(rng.integers(2, 8))
    theta = np.sort(rng.uniform(0.0, 4.0, size=d))[::-1]
    hp = dict(s1=rng.uniform(0.1, 1.5), b1=float(np.exp(rng.uniform(-1.5, 1.5))),
              b2=float(np.exp(rng.uniform(-1.5, 1.5))), ee=rng.uniform(0.4, 2.0), ed=rng.uniform(0.4, 2.0))
    if fixed_sigma2:
        hp["s2"] = rng.uniform(0.2, 2.0)
    return theta, hp


N_INSTANCES = 300


def test_mhvae_learnable_sigma2_matches_reference():
    rng = np.random.default_rng(2024)
    branches = set()
    for _ in range(N_INSTANCES):
        theta, hp = _random_mhvae_instance(rng, fixed_sigma2=False)
        d = theta.size
        p = predict_mhvae(Moments(xx=np.diag(theta**2)), latent_dims=(d, d), beta1=hp["b1"], beta2=hp["b2"],
                          eta_enc=hp["ee"], eta_dec=hp["ed"], sigma1=hp["s1"], sigma2=None)
        lam, omega, s2 = mhvae_learnable_sigma2(theta, hp["s1"], hp["b1"], hp["b2"], hp["ee"], hp["ed"], d)
        np.testing.assert_allclose(p.level1["encoder_sv"], lam, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(p.decoder_sv, omega, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(p.encoder_std, s2, rtol=1e-9, atol=1e-9)
        # collapse pattern: z₂ dim collapsed <=> ω == 0 (learnable Σ₂: s₂ = η_enc there)
        assert p.collapsed.tolist() == (omega == 0).tolist()
        tau = hp["b2"] / hp["b1"] * hp["ed"] ** 2
        branches.add("sigma1^2>=tau" if hp["s1"] ** 2 >= tau else "sigma1^2<tau")
        branches.update({"collapsed" if w == 0 else "active" for w in omega})
        branches.update({"lambda=0" if v == 0 else "lambda>0" for v in lam})
    # the random instances must exercise every branch, or this test proves little
    assert branches == {"sigma1^2>=tau", "sigma1^2<tau", "collapsed", "active", "lambda=0", "lambda>0"}


def test_mhvae_fixed_sigma2_matches_reference():
    rng = np.random.default_rng(2025)
    branches = set()
    for i in range(N_INSTANCES):
        theta, hp = _random_mhvae_instance(rng, fixed_sigma2=True)
        if i % 5 == 0:
            hp["s2"] = hp["ee"]                          # the only case where collapse is possible
        d = theta.size
        p = predict_mhvae(Moments(xx=np.diag(theta**2)), latent_dims=(d, d), beta1=hp["b1"], beta2=hp["b2"],
                          eta_enc=hp["ee"], eta_dec=hp["ed"], sigma1=hp["s1"], sigma2=hp["s2"])
        lam, omega = mhvae_fixed(theta, hp["s1"], hp["s2"], hp["b1"], hp["b2"], hp["ee"], hp["ed"], d)
        np.testing.assert_allclose(p.level1["encoder_sv"], lam, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(p.decoder_sv, omega, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(p.encoder_std, np.full(d, hp["s2"]), rtol=1e-12)
        assert p.inactive.tolist() == (omega == 0).tolist()
        if hp["s2"] == hp["ee"]:
            assert p.collapsed.tolist() == (omega == 0).tolist()
        else:
            assert not p.collapsed.any()
        c = hp["ed"] / hp["ee"]
        tau = hp["b2"] / hp["b1"] * c**2 * hp["s2"] ** 2
        branches.add("sigma1^2>=tau" if hp["s1"] ** 2 >= tau else "sigma1^2<tau")
        branches.update({"omega=0" if w == 0 else "omega>0" for w in omega})
        branches.update({"lambda=0" if v == 0 else "lambda>0" for v in lam})
        if (omega == 0).any():
            branches.add("collapsed" if p.collapsed.any() else "inactive-not-collapsed")
    assert branches == {"sigma1^2>=tau", "sigma1^2<tau", "omega=0", "omega>0", "lambda=0", "lambda>0",
                        "collapsed", "inactive-not-collapsed"}
