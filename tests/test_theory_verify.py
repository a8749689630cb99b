"""Closed forms against direct numerical minimisation of each model's full loss, in every regime.

The independent route is :func:`collapsekit.theory.verify.verify`: multi-start L-BFGS on the loss
written from the model definition. Instances are random data (seeded) whose second-moment
spectrum is placed so that every θ lies well away from the thresholds being tested (asserted
as a precondition), except in the tests that sit exactly on a boundary on purpose.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapsekit.theory import Moments, predict_vae
from collapsekit.theory.verify import verify

LOSS_RTOL = 1e-6
SV_ATOL = 1e-3
ZERO = 1e-4      # a numerically-found singular value below this counts as zero


# -- instance builders ---------------------------------------------------------------------------
def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def data_with_spectrum(rng, theta, n=64):
    """Random data X (n × d) whose raw second moment XᵀX/n has singular values θ (std-like) exactly,
    in a random basis; zeros in θ give a singular E[xxᵀ]."""
    theta = np.asarray(theta, float)
    d = theta.size
    left = np.linalg.qr(rng.normal(size=(n, d)))[0]             # orthonormal columns
    return np.sqrt(n) * (left * theta) @ random_rotation(rng, d).T


def assert_far(values, *thresholds, rel=0.08):
    """Precondition: each value is at least ``rel`` (relative) away from each threshold; a
    threshold is a scalar or an array paired element-wise with ``values``."""
    values = np.atleast_1d(np.asarray(values, float))
    for t in thresholds:
        t = np.broadcast_to(np.asarray(t, float), values.shape)
        assert np.all(np.abs(values - t) > rel * np.abs(t)), (values, t)


def assert_agrees(v, *, sv=True):
    assert v.relative_gap <= LOSS_RTOL, v.summary()
    if sv:
        assert v.max_sv_error < SV_ATOL, v.summary()


def numerical(v, name):
    return v.singular_values[name][1]


def n_nonzero(values):
    return int(np.count_nonzero(np.asarray(values) > ZERO))


# -- VAE, learnable Σ --------------------------------------------------------------------------------
VAE_THETA = [3.0, 2.2, 1.6, 1.1, 0.7, 0.4]


@pytest.fixture(scope="module")
def vae_moments():
    m = Moments.from_data(data_with_spectrum(np.random.default_rng(11), VAE_THETA))
    np.testing.assert_allclose(m.vae_spectrum(), VAE_THETA, rtol=1e-10)
    return m


def test_vae_learnable_none_collapsed(vae_moments):
    beta, eta_dec = 0.3, 1.0
    assert_far(np.array(VAE_THETA[:4]) ** 2, beta * eta_dec**2)
    v = verify("vae", vae_moments, latent_dim=4, beta=beta, starts=4, seed=1)
    assert v.prediction.n_active == 4 and v.prediction.n_collapsed == 0
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 4


def test_vae_learnable_all_collapsed(vae_moments):
    eta_dec = 0.8
    beta = 1.3 * VAE_THETA[0] ** 2 / eta_dec**2           # above θ₁²/η_dec²
    v = verify("vae", vae_moments, latent_dim=4, beta=beta, eta_dec=eta_dec, starts=4, seed=2)
    p = v.prediction
    assert p.n_active == 0 and p.n_collapsed == 4 and p.kl == pytest.approx(0.0, abs=1e-12)
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 0
    np.testing.assert_allclose(numerical(v, "encoder_std"), 1.0, atol=SV_ATOL)   # σ = η_enc


def test_vae_learnable_mixed_with_distinct_etas(vae_moments):
    eta_enc, eta_dec = 1.7, 0.6
    beta = VAE_THETA[1] * VAE_THETA[2] / eta_dec**2        # between θ₂² and θ₃² (over η_dec²)
    assert_far(np.array(VAE_THETA) ** 2, beta * eta_dec**2)
    v = verify("vae", vae_moments, latent_dim=5, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec, starts=4, seed=3)
    p = v.prediction
    assert p.n_active == 2 and p.collapsed.tolist() == [False, False, True, True, True]
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 2
    stds = np.sort(numerical(v, "encoder_std"))
    np.testing.assert_allclose(stds[2:], eta_enc, atol=SV_ATOL)           # collapsed: σ = η_enc


def test_vae_learnable_exact_boundary(vae_moments):
    """β = θ₂²/η_dec² exactly: the predicate says collapsed; the loss is flat there, so only
    the loss is compared."""
    eta_dec = 0.9
    beta = float(predict_vae(vae_moments, 4, eta_dec=eta_dec).critical_beta[1])
    v = verify("vae", vae_moments, latent_dim=4, beta=beta, eta_dec=eta_dec, starts=4, seed=4)
    p = v.prediction
    assert p.theta[1] == pytest.approx(beta * eta_dec**2, rel=1e-12)       # the eigenvalue at its threshold
    assert p.collapsed.tolist() == [False, True, True, True]
    assert p.kl_per_dim[1] == 0.0
    assert_agrees(v, sv=False)


# -- VAE, fixed stds (Theorem 1) ---------------------------------------------------------------------
def test_vae_fixed_stds_inactive_versus_collapsed(vae_moments):
    eta_enc, eta_dec, beta = 1.3, 1.0, 1.5
    stds = [0.9, 2.0, 1.3, 0.5, 0.7]                       # distinct, shuffled, one equal to η_enc
    v = verify("vae", vae_moments, latent_dim=5, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec,
               encoder_std=stds, starts=4, seed=5)
    p = v.prediction
    # Theorem 1 pairs the smallest σ with the largest θ; mode zero iff θ ≤ √β·c·σ.
    paired = np.sort(stds)
    noise = np.sqrt(beta) * eta_dec / eta_enc * paired
    assert_far(VAE_THETA[:5], noise)
    expected_inactive = np.array(VAE_THETA[:5]) <= noise
    assert p.inactive.tolist() == expected_inactive.tolist() == [False, False, False, True, True]
    np.testing.assert_allclose(p.encoder_std, paired)
    # σ = 1.3 = η_enc sits at index 3 (inactive → collapsed); σ = 2.0 at index 4 is inactive, NOT collapsed
    assert p.collapsed.tolist() == [False, False, False, True, False]
    floor = 0.5 * (2.0**2 / eta_enc**2 - 1 - np.log(2.0**2 / eta_enc**2))
    assert floor > 0.05
    assert p.kl_per_dim[4] == pytest.approx(floor, rel=1e-12)
    assert p.kl_per_dim[3] == pytest.approx(0.0, abs=1e-15)
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 3
    assert n_nonzero(numerical(v, "encoder_sv")) == 3


def test_vae_fixed_scalar_std_never_collapses(vae_moments):
    """Isotropic fixed σ ≠ η_enc (Wang & Ziyin's setting): low rank, but no posterior collapse."""
    v = verify("vae", vae_moments, latent_dim=4, beta=1.0, eta_enc=1.0, eta_dec=1.0, encoder_std=1.35,
               starts=4, seed=6)
    p = v.prediction
    assert_far(VAE_THETA[:4], 1.35)
    assert p.inactive.tolist() == [False, False, False, True]
    assert p.n_collapsed == 0 and np.all(np.isinf(p.critical_beta))
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 3


# -- CVAE (Theorem 2) --------------------------------------------------------------------------------
def cvae_data(rng, n, dx, dy, residual_scales, zero_x_columns=0):
    """x with ``zero_x_columns`` constant-zero columns; y = x B + r with r ⟂ x and E[rrᵀ] having
    eigenvalues ``residual_scales`` exactly (so θ(E) is known by construction)."""
    x = rng.normal(size=(n, dx)) * rng.uniform(0.5, 2.0, size=dx)
    x[:, dx - zero_x_columns:] = 0.0
    b = rng.normal(size=(dx, dy))
    r = rng.normal(size=(n, dy))
    r -= x @ np.linalg.lstsq(x, r, rcond=None)[0]
    r = r @ np.linalg.inv(np.linalg.cholesky(r.T @ r / n)).T
    r = (r * np.sqrt(residual_scales)) @ random_rotation(rng, dy).T
    return x, x @ b + r


def test_cvae_random_data():
    rng = np.random.default_rng(21)
    scales = np.array([3.0, 1.8, 0.9, 0.4])
    x, y = cvae_data(rng, 60, 5, 4, scales)
    m = Moments.from_data(x, y)
    np.testing.assert_allclose(m.cvae_spectrum(), scales, rtol=1e-9)
    beta, eta_dec = 1.0, 1.1                                   # threshold 1.21: two active
    assert_far(scales, beta * eta_dec**2)
    v = verify("cvae", m, latent_dim=3, beta=beta, eta_dec=eta_dec, starts=4, seed=1)
    assert v.prediction.n_active == 2 and v.prediction.collapsed.tolist() == [False, False, True]
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 2


def test_cvae_y_linear_in_x_collapses_everything():
    rng = np.random.default_rng(22)
    x = rng.normal(size=(50, 4))
    y = x @ rng.normal(size=(4, 3))
    m = Moments.from_data(x, y)
    v = verify("cvae", m, latent_dim=3, beta=0.5, starts=4, seed=2)
    p = v.prediction
    assert p.n_active == 0 and p.n_collapsed == 3
    np.testing.assert_allclose(p.kl_per_dim, 0.0, atol=1e-12)
    assert np.max(p.theta) < 1e-10 * np.trace(m.yy)
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 0


def test_cvae_singular_input_moments():
    """x with constant-zero columns (like MNIST borders): E[xxᵀ] is singular."""
    rng = np.random.default_rng(23)
    scales = np.array([2.5, 1.2, 0.5])
    x, y = cvae_data(rng, 60, 6, 3, scales, zero_x_columns=2)
    m = Moments.from_data(x, y)
    assert np.linalg.matrix_rank(m.xx) == 4
    np.testing.assert_allclose(m.cvae_spectrum(), scales, rtol=1e-9)
    assert_far(scales, 0.8)
    v = verify("cvae", m, latent_dim=3, beta=0.8, starts=4, seed=3)
    assert v.prediction.n_active == 2
    assert_agrees(v)


def test_cvae_distinct_etas():
    rng = np.random.default_rng(24)
    scales = np.array([4.0, 2.0, 1.0, 0.3])
    x, y = cvae_data(rng, 60, 3, 4, scales)
    m = Moments.from_data(x, y)
    eta_enc, eta_dec, beta = 0.6, 1.25, 0.9                   # threshold β η_dec² ≈ 1.406
    assert_far(scales, beta * eta_dec**2)
    v = verify("cvae", m, latent_dim=4, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec, starts=4, seed=4)
    p = v.prediction
    assert p.n_active == 2
    assert_agrees(v)
    stds = np.sort(numerical(v, "encoder_std"))[::-1]
    np.testing.assert_allclose(stds[:2], eta_enc, atol=SV_ATOL)   # the two collapsed dims: σ = η_enc


def test_cvae_official_sigma_threshold_bug_not_reproduced():
    """β = 2, η_dec = 1: the official code gives σ = √β η_enc η_dec/√θ once θ ≥ √β η_dec ≈ 1.414;
    the derivation collapses the dimension (σ = η_enc) until θ ≥ β η_dec² = 2. θ = 1.7 is in between."""
    beta, eta_enc, eta_dec = 2.0, 1.0, 1.0
    m = Moments(xx=np.eye(3), xy=np.diag([1.0, 1.0, 0.5]), yy=np.diag([1.0 + 4.0, 1.0 + 1.7, 0.25 + 0.5]))
    np.testing.assert_allclose(m.cvae_spectrum(), [4.0, 1.7, 0.5], rtol=1e-12)
    v = verify("cvae", m, latent_dim=3, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec, starts=4, seed=5)
    p = v.prediction
    assert p.collapsed.tolist() == [False, True, True]
    assert p.encoder_std[1] == eta_enc
    assert_agrees(v)
    official_sigma = np.sqrt(beta) * eta_enc * eta_dec / np.sqrt(1.7)      # ≈ 1.085
    found = np.sort(numerical(v, "encoder_std"))                             # ascending
    assert found[0] == pytest.approx(np.sqrt(beta) * eta_enc * eta_dec / 2.0, abs=SV_ATOL)  # active dim
    np.testing.assert_allclose(found[1:], eta_enc, atol=SV_ATOL)
    assert np.min(np.abs(found - official_sigma)) > 0.05


# -- MHVAE, Theorem 3 (learnable Σ₂) ----------------------------------------------------------------
MH_THETA = [3.2, 2.4, 1.5, 0.9, 0.45, 0.2]


@pytest.fixture(scope="module")
def mh_moments():
    m = Moments.from_data(data_with_spectrum(np.random.default_rng(31), MH_THETA))
    np.testing.assert_allclose(m.vae_spectrum(), MH_THETA, rtol=1e-10)
    return m


def thm3_thresholds(beta1, beta2, eta_dec, sigma1):
    """θ at which z₂ stops collapsing, and the two z₁ zero-thresholds (docs/theory.md §2.4, Theorem 3)."""
    return [beta2 * eta_dec**2 / (np.sqrt(beta1) * sigma1), np.sqrt(beta2) * eta_dec, np.sqrt(beta1) * sigma1]


def test_mhvae_thm3_large_sigma1_never_collapses(mh_moments):
    beta1, beta2, eta_dec, sigma1 = 1.0, 0.5, 1.0, 0.8      # σ₁² = 0.64 ≥ (β₂/β₁) η_dec² = 0.5
    assert sigma1**2 >= beta2 / beta1 * eta_dec**2 * 1.1
    assert_far(MH_THETA[:4], *thm3_thresholds(beta1, beta2, eta_dec, sigma1))
    v = verify("mhvae", mh_moments, latent_dims=(4, 4), beta1=beta1, beta2=beta2, eta_dec=eta_dec,
               sigma1=sigma1, starts=4, seed=1)
    p = v.prediction
    assert p.n_collapsed == 0 and p.n_active == 4
    assert np.all(p.decoder_sv > 0.3)
    assert_agrees(v)
    assert np.min(numerical(v, "decoder_sv")) > 0.3          # every z₂ decoder mode alive, even tiny θ


def test_mhvae_thm3_small_sigma1_partial_collapse(mh_moments):
    beta1, beta2, eta_dec, sigma1 = 1.0, 1.0, 1.0, 0.5      # τ = 1 > σ₁²; z₂ alive iff θ ≥ 2
    assert_far(MH_THETA[:5], *thm3_thresholds(beta1, beta2, eta_dec, sigma1))
    v = verify("mhvae", mh_moments, latent_dims=(5, 5), beta1=beta1, beta2=beta2, eta_dec=eta_dec,
               sigma1=sigma1, starts=6, seed=2)
    p = v.prediction
    assert p.collapsed.tolist() == [False, False, True, True, True]
    assert p.level1["inactive"].tolist() == [False, False, False, False, True]   # θ ≤ √β₁σ₁ = 0.5
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 2
    assert n_nonzero(numerical(v, "level1_encoder_sv")) == 4
    np.testing.assert_allclose(np.sort(numerical(v, "encoder_std"))[-3:], 1.0, atol=SV_ATOL)


def test_mhvae_thm3_smaller_top_latent(mh_moments):
    beta1, beta2, eta_dec, sigma1 = 1.0, 1.0, 1.0, 0.5
    v = verify("mhvae", mh_moments, latent_dims=(4, 2), beta1=beta1, beta2=beta2, eta_dec=eta_dec,
               sigma1=sigma1, starts=6, seed=3)
    p = v.prediction
    assert p.latent_dim == 2 and p.level1["encoder_sv"].size == 4
    assert p.n_active == 2
    assert_agrees(v)


def test_mhvae_thm3_beta1_not_one(mh_moments):
    beta1, beta2, eta_dec, eta_enc, sigma1 = 2.5, 1.2, 0.9, 1.4, 0.45
    # τ = 0.389 > σ₁² = 0.2025; z₂ alive iff θ ≥ β₂η²/(√β₁σ₁) ≈ 1.366
    assert sigma1**2 < beta2 / beta1 * eta_dec**2
    assert_far(MH_THETA[:5], *thm3_thresholds(beta1, beta2, eta_dec, sigma1))
    v = verify("mhvae", mh_moments, latent_dims=(5, 5), beta1=beta1, beta2=beta2, eta_enc=eta_enc,
               eta_dec=eta_dec, sigma1=sigma1, starts=6, seed=4)
    p = v.prediction
    assert p.collapsed.tolist() == [False, False, False, True, True]
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 3


# -- MHVAE, Theorem 5 (σ₂ fixed) ------------------------------------------------------------------
def thm5_thresholds(beta1, beta2, c, sigma1, sigma2):
    """t₂ (z₂ mode nonzero, correct form), t₁ and √β₁σ₁ (z₁ mode nonzero), docs/theory.md §2.5, Theorem 5."""
    return [beta2 * c**2 * sigma2**2 / (np.sqrt(beta1) * sigma1),
            np.sqrt(np.sqrt(beta1 * beta2) * c * sigma1 * sigma2), np.sqrt(beta1) * sigma1]


def test_mhvae_thm5_sigma2_not_prior_std_never_collapses(mh_moments):
    beta1, beta2, eta_enc, eta_dec, sigma1, sigma2 = 1.0, 1.0, 1.0, 1.0, 0.5, 0.8
    assert_far(MH_THETA[:5], *thm5_thresholds(beta1, beta2, eta_dec / eta_enc, sigma1, sigma2))
    v = verify("mhvae", mh_moments, latent_dims=(5, 5), beta1=beta1, beta2=beta2, eta_enc=eta_enc,
               eta_dec=eta_dec, sigma1=sigma1, sigma2=sigma2, starts=6, seed=5)
    p = v.prediction
    assert p.inactive.tolist() == [False, False, False, True, True]   # θ < t₂ = 1.28
    assert p.n_collapsed == 0 and np.all(np.isinf(p.critical_beta))
    assert np.all(p.kl_per_dim[p.inactive] > 0)                       # q(z₂|z₁) = N(0, σ₂²) ≠ prior
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 3


def test_mhvae_thm5_sigma2_equal_prior_std_collapses(mh_moments):
    beta1, beta2, eta_enc, eta_dec, sigma1 = 1.0, 0.7, 0.8, 1.2, 0.6
    sigma2 = eta_enc
    # t₂ = β₂η_dec²/(√β₁σ₁) = 1.68
    assert_far(MH_THETA[:5], *thm5_thresholds(beta1, beta2, eta_dec / eta_enc, sigma1, sigma2))
    v = verify("mhvae", mh_moments, latent_dims=(5, 5), beta1=beta1, beta2=beta2, eta_enc=eta_enc,
               eta_dec=eta_dec, sigma1=sigma1, sigma2=sigma2, starts=6, seed=6)
    p = v.prediction
    assert p.collapsed.tolist() == [False, False, True, True, True]
    np.testing.assert_allclose(p.kl_per_dim[2:], 0.0, atol=1e-12)
    assert_agrees(v)
    assert n_nonzero(numerical(v, "decoder_sv")) == 2


def test_mhvae_thm5_official_threshold_bug_not_reproduced():
    """β₁ = 4: the correct z₂ threshold is t₂ = β₂c²σ₂²/(√β₁σ₁) = 1.25; the official code's
    β₂√β₁c²σ₂²/σ₁ = 5. At θ = 3 (in between) the numerical optimum must have ω > 0, as predicted."""
    beta1, beta2, eta_enc, eta_dec, sigma1, sigma2 = 4.0, 1.0, 1.0, 1.0, 0.4, 1.0
    c = eta_dec / eta_enc
    correct = beta2 * c**2 * sigma2**2 / (np.sqrt(beta1) * sigma1)
    official = beta2 * np.sqrt(beta1) * c**2 * sigma2**2 / sigma1
    theta = [6.0, 3.0, 1.0, 0.3]
    assert correct < theta[1] < official
    assert_far(theta, *thm5_thresholds(beta1, beta2, c, sigma1, sigma2), official)
    m = Moments.from_data(data_with_spectrum(np.random.default_rng(41), theta))
    np.testing.assert_allclose(m.vae_spectrum(), theta, rtol=1e-10)
    v = verify("mhvae", m, latent_dims=(4, 4), beta1=beta1, beta2=beta2, eta_enc=eta_enc, eta_dec=eta_dec,
               sigma1=sigma1, sigma2=sigma2, starts=6, seed=7)
    p = v.prediction
    assert p.inactive.tolist() == [False, False, True, True]
    assert p.decoder_sv[1] > 0.1
    assert_agrees(v)
    found = numerical(v, "decoder_sv")
    assert n_nonzero(found) == 2                        # the official threshold would give 1
    assert np.sort(found)[::-1][1] == pytest.approx(p.decoder_sv[1], abs=SV_ATOL)


# -- the whitened parameterisation hides nothing -------------------------------------------------
@pytest.mark.parametrize("model, settings", [
    ("vae", {"latent_dim": 3, "beta": 0.7, "eta_dec": 0.8}),
    ("vae", {"latent_dim": 3, "beta": 0.7, "encoder_std": [0.4, 1.0, 1.6]}),
    ("cvae", {"latent_dim": 2, "beta": 0.5, "eta_enc": 1.3}),
    ("mhvae", {"latent_dims": (3, 2), "beta1": 0.7, "beta2": 1.5, "sigma1": 0.6}),
    ("mhvae", {"latent_dims": (3, 3), "beta2": 2.0, "sigma1": 0.6, "sigma2": 0.9}),
])
def test_raw_and_whitened_parameterisations_reach_the_same_optimum(model, settings):
    """verify() whitens encoder inputs by default; minimising over the raw matrices W instead
    must reach the same loss (and the closed form), on data with a singular, badly scaled E[xxᵀ]."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(80, 5)) * np.array([3.0, 1.0, 0.3, 0.05, 0.0])   # last column constant zero
    y = x[:, :3] @ rng.normal(size=(3, 4)) + 0.4 * rng.normal(size=(80, 4))
    m = Moments.from_data(x, y) if model == "cvae" else Moments.from_data(x)
    whitened = verify(model, m, starts=3, whiten=True, **settings)
    raw = verify(model, m, starts=3, whiten=False, **settings)
    assert whitened.agrees and raw.agrees
    assert abs(whitened.numerical_loss - raw.numerical_loss) <= 1e-8 * abs(raw.numerical_loss)
