"""Properties of the closed forms: critical β, recommend_beta, loss/KL accounting (with Monte Carlo),
CVAE-vs-VAE ordering, JSON export, Moments, and typed errors on bad input.

Expected values come from docs/theory.md formulas (re-derived here from the data with numpy), from the
§2.x reference implementation, from direct numpy computations, or from Monte Carlo.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from collapsekit.errors import CollapsekitError, DataError, ParameterError
from collapsekit.theory import (Moments, gaussian_kl, predict, predict_cvae, predict_mhvae, predict_vae,
                                recommend_beta)
from collapsekit.theory.verify import verify  # only for its argument checks
from theory_reference import mhvae_fixed, mhvae_learnable_sigma2, vae_learnable


# -- shared instances ----------------------------------------------------------------------------
def random_x(seed, n=300, d=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


def random_xy(seed, n=300, dx=5, dy=4, noise=0.7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx)) @ rng.normal(size=(dx, dx))
    y = x @ rng.normal(size=(dx, dy)) * 0.5 + noise * rng.normal(size=(n, dy)) @ rng.normal(size=(dy, dy))
    return x, y


def eig_desc(matrix):
    return np.sort(np.linalg.eigvalsh(matrix))[::-1]


@pytest.fixture(scope="module")
def mx():
    return Moments.from_data(random_x(1))


@pytest.fixture(scope="module")
def mxy():
    return Moments.from_data(*random_xy(2))


# =================================================================================================
# critical β
# =================================================================================================
def _check_critical(pred_at, critical, expected_critical):
    """pred_at(β) → Prediction. Each finite positive critical β b: active just below, collapsed at b
    and at 1.5 b."""
    np.testing.assert_allclose(critical, expected_critical, rtol=1e-10)
    finite = np.isfinite(critical) & (critical > 0)
    assert finite.any()
    for i in np.flatnonzero(finite):
        b = float(critical[i])
        below = pred_at(b * (1 - 1e-6))
        assert not below.inactive[i] and not below.collapsed[i]
        assert below.decoder_sv[i] > 0
        for beta in (b, 1.5 * b):
            at = pred_at(beta)
            assert at.inactive[i] and at.collapsed[i]
            assert at.decoder_sv[i] == 0.0


def test_critical_beta_vae_learnable(mx):
    eta_enc, eta_dec = 1.3, 0.7
    theta = np.sqrt(eig_desc(mx.xx))[:5]
    p = predict_vae(mx, 5, eta_enc=eta_enc, eta_dec=eta_dec)
    _check_critical(lambda b: predict_vae(mx, 5, beta=b, eta_enc=eta_enc, eta_dec=eta_dec),
                    p.critical_beta, theta**2 / eta_dec**2)
    np.testing.assert_array_equal(p.inactive_beta, p.critical_beta)
    for i, b in enumerate(p.critical_beta):      # reference: active just below, inactive above
        assert vae_learnable(theta, b * (1 - 1e-6), eta_enc, eta_dec, 5)[3][i]
        assert not vae_learnable(theta, b * 1.5, eta_enc, eta_dec, 5)[3][i]


def test_critical_beta_vae_fixed_std_only_where_std_is_prior(mx):
    eta_enc, eta_dec = 1.0, 1.2
    stds = [0.6, 1.0, 1.7, 0.8]                   # sorted: 0.6, 0.8, 1.0, 1.7 → index 2 is at the prior
    theta = np.sqrt(eig_desc(mx.xx))[:4]
    p = predict_vae(mx, 4, eta_enc=eta_enc, eta_dec=eta_dec, encoder_std=stds)
    noise = np.sort(stds) * eta_dec / eta_enc
    np.testing.assert_allclose(p.inactive_beta, theta**2 / noise**2, rtol=1e-10)
    assert np.isinf(p.critical_beta[[0, 1, 3]]).all()
    _check_critical(lambda b: predict_vae(mx, 4, beta=b, eta_enc=eta_enc, eta_dec=eta_dec, encoder_std=stds),
                    p.critical_beta, np.where(np.arange(4) == 2, theta**2 / noise**2, np.inf))
    # the other modes do switch off at their inactive β, but never collapse
    huge = predict_vae(mx, 4, beta=2 * p.inactive_beta.max(), eta_enc=eta_enc, eta_dec=eta_dec, encoder_std=stds)
    assert huge.inactive.all() and huge.collapsed.tolist() == [False, False, True, False]


def test_critical_beta_cvae(mxy):
    eta_dec = 0.8
    theta = eig_desc(mxy.yy - mxy.xy.T @ np.linalg.pinv(mxy.xx) @ mxy.xy)[:3]
    p = predict_cvae(mxy, 3, eta_dec=eta_dec)
    _check_critical(lambda b: predict_cvae(mxy, 3, beta=b, eta_dec=eta_dec), p.critical_beta, theta / eta_dec**2)


@pytest.mark.parametrize("sigma2", [None, "prior"])
def test_critical_beta2_mhvae(mx, sigma2):
    beta1, eta_enc, eta_dec, sigma1 = 1.7, 0.9, 1.1, 0.4
    s2 = eta_enc if sigma2 == "prior" else None
    theta = np.sqrt(eig_desc(mx.xx))[:4]
    expected = np.maximum(beta1 * sigma1**2, np.sqrt(beta1) * sigma1 * theta) / eta_dec**2

    def at(b):
        return predict_mhvae(mx, (4, 4), beta1=beta1, beta2=b, eta_enc=eta_enc, eta_dec=eta_dec,
                             sigma1=sigma1, sigma2=s2)

    p = at(1.0)
    _check_critical(at, p.critical_beta, expected)
    for i, b in enumerate(p.critical_beta):      # reference §2.x: ω > 0 just below, ω = 0 above
        for factor, alive in ((1 - 1e-6, True), (1.5, False)):
            if s2 is None:
                omega = mhvae_learnable_sigma2(theta, sigma1, beta1, b * factor, eta_enc, eta_dec, 4)[1]
            else:
                omega = mhvae_fixed(theta, sigma1, s2, beta1, b * factor, eta_enc, eta_dec, 4)[1]
            assert (omega[i] > 0) == alive


def test_critical_beta2_mhvae_fixed_sigma2_not_prior_is_infinite(mx):
    p = predict_mhvae(mx, (4, 4), sigma1=0.4, sigma2=0.7)
    assert np.isinf(p.critical_beta).all()
    assert np.isfinite(p.inactive_beta).all()
    off = predict_mhvae(mx, (4, 4), sigma1=0.4, sigma2=0.7, beta2=1.5 * p.inactive_beta.max())
    assert off.inactive.all() and not off.collapsed.any()


@pytest.mark.parametrize("model", ["vae", "cvae", "mhvae-3", "mhvae-5"])
def test_n_active_non_increasing_in_beta(mx, mxy, model):
    grid = np.geomspace(1e-3, 1e3, 60)
    if model == "vae":
        counts = [predict_vae(mx, 5, beta=b, eta_dec=0.8).n_active for b in grid]
    elif model == "cvae":
        counts = [predict_cvae(mxy, 4, beta=b, eta_dec=0.8).n_active for b in grid]
    else:
        s2 = None if model == "mhvae-3" else 0.8
        counts = [predict_mhvae(mx, (5, 5), beta2=b, sigma1=0.3, sigma2=s2).n_active for b in grid]
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[0] == 5 or (model == "cvae" and counts[0] == 4)
    assert counts[-1] == 0


def test_threshold_field_predicts_inactive(mx, mxy):
    """Documented meaning of ``threshold``: the encoder mode is zero iff θ ≤ threshold."""
    for p in _all_predictions(mx, mxy):
        assert p.inactive.tolist() == (p.theta <= p.threshold).tolist(), p.theorem
    hi = predict_mhvae(mx, (3, 3), beta1=1.0, beta2=0.1, sigma1=0.9)       # σ₁² ≥ τ: never zero
    assert np.all(hi.threshold == -np.inf) and not hi.inactive.any()


# =================================================================================================
# recommend_beta
# =================================================================================================
def _check_recommendation(pred_at, b, k):
    assert 0 < b < math.inf
    assert pred_at(b).n_active >= k
    assert pred_at(float(np.nextafter(b, math.inf))).n_active < k


def test_recommend_beta_vae(mx):
    theta = np.sqrt(eig_desc(mx.xx))
    for k in range(1, 6):
        b = recommend_beta(mx, "vae", target_active=k, latent_dim=5, eta_dec=0.6)
        assert b == pytest.approx(theta[k - 1] ** 2 / 0.6**2, rel=1e-12)
        _check_recommendation(lambda beta: predict_vae(mx, 5, beta=beta, eta_dec=0.6), b, k)
        # §2.x reference agrees (a hair below b: it cannot resolve the last ulp before the boundary)
        assert vae_learnable(theta, b * (1 - 1e-9), 1.0, 0.6, 5)[3].sum() >= k


def test_recommend_beta_ignores_given_beta(mx):
    a = recommend_beta(mx, "vae", target_active=2, latent_dim=4)
    assert recommend_beta(mx, "vae", target_active=2, latent_dim=4, beta=123.0) == a


def test_recommend_beta_cvae(mxy):
    theta = mxy.cvae_spectrum()
    for k in range(1, 5):
        b = recommend_beta(mxy, "cvae", target_active=k, latent_dim=4, eta_dec=1.3)
        assert b == pytest.approx(theta[k - 1] / 1.3**2, rel=1e-12)
        _check_recommendation(lambda beta: predict_cvae(mxy, 4, beta=beta, eta_dec=1.3), b, k)


@pytest.mark.parametrize("sigma2", [None, 1.0, 0.6])
def test_recommend_beta2_mhvae(mx, sigma2):
    """β₂ for the MHVAE. With σ₂ ≠ η_enc (Theorem 5) modes never collapse but still switch off, so
    the recommendation is finite: the largest β₂ keeping k modes of z₂ nonzero."""
    hp = dict(latent_dims=(4, 4), beta1=1.3, eta_enc=1.0, eta_dec=0.9, sigma1=0.35, sigma2=sigma2)
    theta = np.sqrt(eig_desc(mx.xx))
    for k in range(1, 5):
        b = recommend_beta(mx, "mhvae", target_active=k, **hp)
        _check_recommendation(lambda beta: predict_mhvae(mx, beta2=beta, **hp), b, k)
        near = b * (1 - 1e-9)      # the reference cannot resolve the last ulp before the boundary
        if sigma2 is None:
            omega = mhvae_learnable_sigma2(theta, 0.35, 1.3, near, 1.0, 0.9, 4)[1]
        else:
            omega = mhvae_fixed(theta, 0.35, sigma2, 1.3, near, 1.0, 0.9, 4)[1]
        assert np.count_nonzero(omega > 0) >= k


def test_recommend_beta_raises_when_data_support_fewer():
    """Exact zero eigenvalues (constant-zero columns, like MNIST borders): no β keeps them active."""
    rng = np.random.default_rng(5)
    x = np.zeros((100, 5))
    x[:, :2] = rng.normal(size=(100, 2))
    m = Moments.from_data(x)
    assert recommend_beta(m, "vae", target_active=2, latent_dim=4) > 0
    with pytest.raises(ParameterError, match="at most 2"):
        recommend_beta(m, "vae", target_active=3, latent_dim=4)
    # CVAE: a constant-zero output column → E has an exact zero eigenvalue
    xc = rng.normal(size=(100, 3))
    y = np.column_stack([xc @ rng.normal(size=3) + rng.normal(size=100), np.zeros(100)])
    mc = Moments.from_data(xc, y)
    assert recommend_beta(mc, "cvae", target_active=1, latent_dim=2) > 0
    with pytest.raises(ParameterError, match="at most 1"):
        recommend_beta(mc, "cvae", target_active=2, latent_dim=2)
    with pytest.raises(ParameterError):
        recommend_beta(m, "vae", target_active=5, latent_dim=4)         # more than the latent size


def test_recommend_beta_raises_for_numerically_rank_deficient_data():
    rng = np.random.default_rng(5)
    m = Moments.from_data(rng.normal(size=(100, 2)) @ rng.normal(size=(2, 5)))      # rank 2 in 5 dimensions
    with pytest.raises(ParameterError):
        recommend_beta(m, "vae", target_active=3, latent_dim=4)


def test_recommend_beta2_mhvae_zero_eigenvalues_still_finite():
    """Theorem 3, case 1: for β₂ < β₁σ₁²/η_dec² no z₂ dimension collapses whatever θ, so even
    zero-variance directions can be kept active: the answer is just below β₁σ₁²/η_dec²."""
    rng = np.random.default_rng(6)
    m = Moments.from_data(rng.normal(size=(100, 2)) @ rng.normal(size=(2, 5)))
    b = recommend_beta(m, "mhvae", target_active=4, latent_dims=(4, 4), beta1=1.5, sigma1=0.5, eta_dec=0.8)
    assert b == pytest.approx(1.5 * 0.5**2 / 0.8**2, rel=1e-12)
    assert predict_mhvae(m, (4, 4), beta1=1.5, beta2=b, sigma1=0.5, eta_dec=0.8).n_active == 4


# =================================================================================================
# loss and KL accounting
# =================================================================================================
def _all_predictions(mx, mxy):
    """One prediction per closed form, each with both active and inactive dimensions."""
    yield predict_vae(mx, 5, beta=4.0, eta_enc=1.2, eta_dec=0.8)
    yield predict_vae(mx, 5, beta=3.0, eta_enc=1.2, eta_dec=0.8, encoder_std=[0.3, 1.2, 2.0, 0.9, 0.5])
    yield predict_cvae(mxy, 3, beta=0.6, eta_enc=0.7, eta_dec=1.3)
    yield predict_mhvae(mx, (5, 3), beta1=1.4, beta2=3.0, eta_enc=1.1, eta_dec=0.9, sigma1=0.6)
    yield predict_mhvae(mx, (4, 4), beta1=0.7, beta2=8.0, eta_enc=1.1, eta_dec=0.9, sigma1=0.6, sigma2=0.5)


def test_all_predictions_are_mixed(mx, mxy):
    """Precondition of the tests that loop over _all_predictions."""
    patterns = [(p.inactive.tolist(), p.collapsed.tolist()) for p in _all_predictions(mx, mxy)]
    assert patterns == [
        ([False, False, False, True, True], [False, False, False, True, True]),
        ([False, False, False, True, True], [False, False, False, True, False]),   # σ = 2.0 ≠ η_enc
        ([False, False, True], [False, False, True]),
        ([False, False, True], [False, False, True]),
        ([False, False, True, True], [False, False, False, False]),              # σ₂ ≠ η_enc
    ]


def test_loss_decomposition(mx, mxy):
    for p in _all_predictions(mx, mxy):
        hp = p.hyperparameters
        assert p.kl == pytest.approx(p.kl_per_dim.sum(), rel=1e-12, abs=1e-15)
        if p.model == "mhvae":
            assert p.level1["kl"] == pytest.approx(p.level1["kl_per_dim"].sum(), rel=1e-12)
            expected = p.reconstruction + hp["beta1"] * p.level1["kl"] + hp["beta2"] * p.kl
        else:
            expected = p.reconstruction + hp["beta"] * p.kl
        assert p.loss == pytest.approx(expected, rel=1e-12), p.model


def test_kl_per_dim_is_gaussian_kl_and_theory_value(mx, mxy):
    for p in _all_predictions(mx, mxy):
        ee = p.hyperparameters["eta_enc"]
        if p.model == "mhvae":
            continue                                # z₂'s mean square is w₂²t, checked by Monte Carlo below
        np.testing.assert_allclose(p.kl_per_dim, gaussian_kl(p.encoder_sv**2, p.encoder_std, ee),
                                   rtol=1e-12, atol=1e-15)
    # docs/theory.md §2.2: at the learnable-Σ optimum the KL of an active dimension is ½ log(θ/βη_dec²), θ an
    # eigenvalue of E[xxᵀ] (the scale every output uses)
    p = predict_vae(mx, 5, beta=0.7, eta_enc=1.2, eta_dec=0.8)
    act = ~p.inactive
    np.testing.assert_allclose(p.kl_per_dim[act], 0.5 * np.log(p.theta[act] / (0.7 * 0.8**2)), rtol=1e-12)
    q = predict_cvae(mxy, 4, beta=0.6, eta_enc=0.7, eta_dec=1.3)
    act = ~q.inactive
    assert act.sum() >= 1
    np.testing.assert_allclose(q.kl_per_dim[act], 0.5 * np.log(q.theta[act] / (0.6 * 1.3**2)), rtol=1e-12)


def _mc_kl(rng, mean, std, prior_std, samples=200_000):
    """Monte Carlo E[log q(z) − log p(z)], z ~ N(mean, std²), with mean drawn from the given per-example
    means; returns (estimate, standard error)."""
    mu = mean[rng.integers(0, mean.size, samples)]
    z = mu + std * rng.normal(size=samples)
    log_q = -0.5 * ((z - mu) / std) ** 2 - np.log(std)
    log_p = -0.5 * (z / prior_std) ** 2 - np.log(prior_std)
    diff = log_q - log_p
    return diff.mean(), diff.std(ddof=1) / np.sqrt(samples)


def test_kl_per_dim_monte_carlo_vae():
    """Build the optimal encoder W = VΦ^{-1/2}P_Aᵀ from the data and the predicted λ, σ, then
    estimate E_x E_{z~q(z|x)}[log q − log p] by sampling; compare with kl_per_dim."""
    rng = np.random.default_rng(9)
    x = random_x(9, n=3000, d=5)
    m = Moments.from_data(x)
    for hp in (dict(beta=0.4, eta_enc=1.3, eta_dec=0.9), dict(beta=3.0, eta_enc=1.3, eta_dec=0.9,
                                                             encoder_std=[0.4, 1.8, 0.7, 1.3])):
        p = predict_vae(m, 4, **hp)
        phi, basis = np.linalg.eigh(m.xx)
        phi, basis = phi[::-1], basis[:, ::-1]
        w = (p.encoder_sv / np.sqrt(phi[:4]))[:, None] * basis[:, :4].T      # k × d
        means = x @ w.T
        np.testing.assert_allclose((means**2).mean(axis=0), p.encoder_sv**2, rtol=1e-9, atol=1e-12)
        for i in range(4):
            est, se = _mc_kl(rng, means[:, i], p.encoder_std[i], hp["eta_enc"])
            assert abs(est - p.kl_per_dim[i]) < 5 * se + 1e-12, (i, est, se, p.kl_per_dim[i])
        # a positive floor is a positive MC estimate too (inactive, std ≠ η_enc)
        if "encoder_std" in hp:
            assert p.inactive[3] and not p.collapsed[3] and p.kl_per_dim[3] > 10 * se


def test_kl_per_dim_monte_carlo_cvae():
    """Optimal CVAE encoder mean W₂(y − U₂x) with W₂ = diag(λ/√θ)P_Eᵀ; sampled KL vs kl_per_dim."""
    rng = np.random.default_rng(10)
    x, y = random_xy(10, n=3000)
    m = Moments.from_data(x, y)
    p = predict_cvae(m, 3, beta=0.3, eta_enc=0.8, eta_dec=1.1)
    assert p.n_active >= 2
    resid = y - x @ m.regression().T
    theta, basis = np.linalg.eigh(m.residual())
    theta, basis = theta[::-1][:3], basis[:, ::-1][:, :3]
    means = resid @ ((p.encoder_sv / np.sqrt(theta))[:, None] * basis.T).T
    np.testing.assert_allclose((means**2).mean(axis=0), p.encoder_sv**2, rtol=1e-8, atol=1e-12)
    for i in range(3):
        est, se = _mc_kl(rng, means[:, i], p.encoder_std[i], 0.8)
        assert abs(est - p.kl_per_dim[i]) < 5 * se + 1e-12


@pytest.mark.parametrize("sigma2, beta2", [(None, 2.2), (0.7, 5.5)])
def test_kl_monte_carlo_mhvae_both_levels(sigma2, beta2):
    """Build the optimal MHVAE from the data and the predicted singular values (W₁ = diag(λ/√φ)P_Aᵀ,
    W₂, U₂ diagonal in the z₁ modes), sample z₁ ~ q(z₁|x), z₂ ~ q(z₂|z₁), and estimate
    E[log q(z₂|z₁) − log p(z₂)] (top level) and E[log q(z₁|x) − log p(z₁|z₂)] (level 1, including the
    z₁ mode with no z₂ above it). Also U₁ = the least-squares decoder of x from z₁."""
    rng = np.random.default_rng(11)
    x = random_x(11, n=3000, d=5)
    m = Moments.from_data(x)
    s1, ee, ed = 0.5, 1.1, 0.8
    p = predict_mhvae(m, (3, 2), beta1=1.2, beta2=beta2, eta_enc=ee, eta_dec=ed, sigma1=s1, sigma2=sigma2)
    assert p.inactive.tolist() == [False, True]
    assert p.collapsed[1] == (sigma2 is None)
    phi, basis = np.linalg.eigh(m.xx)
    phi, basis = phi[::-1], basis[:, ::-1]
    lam = p.level1["encoder_sv"]
    w1 = (lam / np.sqrt(phi[:3]))[:, None] * basis[:, :3].T                  # 3 × d
    # U₁ given W₁: least squares E[x z₁ᵀ] E[z₁z₁ᵀ]⁻¹, computed from the moments directly
    u1 = m.xx @ w1.T @ np.linalg.inv(w1 @ m.xx @ w1.T + s1**2 * np.eye(3))
    np.testing.assert_allclose(np.linalg.svd(u1, compute_uv=False), np.sort(p.level1["decoder_sv"])[::-1],
                               rtol=1e-8, atol=1e-12)
    z1_mean = x @ w1.T
    samples = 200_000
    rows = rng.integers(0, x.shape[0], samples)
    for i in range(3):
        eps = rng.normal(size=samples)
        z1 = z1_mean[rows, i] + s1 * eps
        log_q1 = -0.5 * eps**2 - np.log(s1)
        if i < 2:
            mu2, s2 = p.encoder_sv[i] * z1, p.encoder_std[i]
            z2 = mu2 + s2 * rng.normal(size=samples)
            top = -0.5 * ((z2 - mu2) / s2) ** 2 - np.log(s2) + 0.5 * (z2 / ee) ** 2 + np.log(ee)
            assert abs(top.mean() - p.kl_per_dim[i]) < 5 * top.std() / np.sqrt(samples) + 1e-12
            z1_pred = p.decoder_sv[i] * z2
        else:
            z1_pred = 0.0                                                   # no z₂ above this mode
        level1 = log_q1 + 0.5 * ((z1 - z1_pred) / ed) ** 2 + np.log(ed)
        se = level1.std() / np.sqrt(samples)
        assert abs(level1.mean() - p.level1["kl_per_dim"][i]) < 5 * se + 1e-12, (i, level1.mean(), se)


# =================================================================================================
# CVAE vs VAE on y alone
# =================================================================================================
def test_cvae_never_fewer_collapsed_than_vae_on_y():
    for seed in range(8):
        x, y = random_xy(100 + seed, n=200, dx=4, dy=5, noise=0.3 + 0.2 * seed)
        m = Moments.from_data(x, y)
        my = Moments.from_data(y)
        # E ⪯ E[yyᵀ] eigenvalue by eigenvalue (Weyl), from numpy directly
        e = m.yy - m.xy.T @ np.linalg.pinv(m.xx) @ m.xy
        assert np.all(eig_desc(e) <= eig_desc(m.yy) * (1 + 1e-10) + 1e-12)
        for beta in np.geomspace(0.01, 100, 15):
            for eta_dec in (0.5, 1.0, 2.0):
                c = predict_cvae(m, 5, beta=beta, eta_dec=eta_dec)
                v = predict_vae(my, 5, beta=beta, eta_dec=eta_dec)
                assert c.n_collapsed >= v.n_collapsed
                assert c.kl <= v.kl + 1e-12


# =================================================================================================
# JSON export
# =================================================================================================
def test_to_dict_is_strict_json(mx, mxy):
    preds = list(_all_predictions(mx, mxy))
    preds.append(predict_mhvae(mx, (3, 3), beta1=1.0, beta2=0.1, sigma1=0.9))     # σ₁² ≥ τ: threshold −inf
    for p in preds:
        d = p.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = json.loads(text)
        assert back["loss"] == pytest.approx(p.loss, rel=1e-15)
        assert back["n_active"] == p.n_active and back["latent_dim"] == p.latent_dim
        assert back["decoder_sv"] == pytest.approx(p.decoder_sv.tolist(), rel=1e-15)
        assert back["collapsed"] == p.collapsed.tolist()
        for i, b in enumerate(p.critical_beta):
            assert (back["critical_beta"][i] is None) == (not np.isfinite(b))
    fixed = preds[1]
    assert None in fixed.to_dict()["critical_beta"]             # fixed σ ≠ η_enc → inf → None
    assert preds[-1].to_dict()["threshold"] == [None] * 3
    assert isinstance(preds[3].to_dict()["level1"]["encoder_sv"], list)


# =================================================================================================
# Moments
# =================================================================================================
def test_from_data_matches_numpy():
    x = random_x(20, n=101, d=7)
    m = Moments.from_data(x)
    np.testing.assert_allclose(m.xx, x.T @ x / len(x), rtol=1e-12, atol=0)
    assert m.xx.dtype == np.float64 and m.n == 101
    assert m.vae_spectrum() == pytest.approx(np.sqrt(eig_desc(x.T @ x / len(x))), rel=1e-12)


def test_from_data_chunked_equals_unchunked():
    x, y = random_xy(21, n=103)
    a, b = Moments.from_data(x, y), Moments.from_data(x, y, chunk_rows=7)
    for name in ("xx", "xy", "yy"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a.xy, x.T @ y / len(x), rtol=1e-12)
    np.testing.assert_allclose(a.yy, y.T @ y / len(x), rtol=1e-12)


def test_from_data_float32_accumulates_in_float64():
    rng = np.random.default_rng(22)
    x32 = (rng.normal(size=(500, 6)) * 1000 + 3000).astype(np.float32)
    m = Moments.from_data(x32, chunk_rows=64)
    x64 = x32.astype(np.float64)
    np.testing.assert_allclose(m.xx, x64.T @ x64 / len(x64), rtol=1e-12)
    assert m.xx.dtype == np.float64


def test_from_data_nan_row_is_named():
    x = random_x(23, n=40, d=3)
    x[23, 1] = np.nan
    with pytest.raises(DataError, match=r"row 23\b"):
        Moments.from_data(x, chunk_rows=10)
    x[23, 1] = 0.0
    y = random_x(24, n=40, d=2)
    y[31, 0] = np.inf
    with pytest.raises(DataError, match=r"row 31\b"):
        Moments.from_data(x, y, chunk_rows=10)


def test_from_data_row_mismatch():
    with pytest.raises(DataError):
        Moments.from_data(np.ones((10, 2)), np.ones((9, 2)))


def test_residual_matches_pinv_formula():
    rng = np.random.default_rng(25)
    x = rng.normal(size=(80, 5))
    x[:, 3:] = 0.0                                              # singular E[xxᵀ]
    y = x @ rng.normal(size=(5, 3)) + 0.5 * rng.normal(size=(80, 3))
    m = Moments.from_data(x, y)
    expected = m.yy - m.xy.T @ np.linalg.pinv(m.xx) @ m.xy
    np.testing.assert_allclose(m.residual(), expected, rtol=1e-10, atol=1e-12)
    # and it is the second moment of the least-squares residual computed from the data
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    r = y - x @ coef
    np.testing.assert_allclose(m.residual(), r.T @ r / len(r), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.regression(), coef.T, atol=1e-10)


def test_residual_vanishes_for_linear_y():
    rng = np.random.default_rng(26)
    x = rng.normal(size=(60, 4))
    x[:, 0] = 0.0
    y = x @ rng.normal(size=(4, 3))
    m = Moments.from_data(x, y)
    assert np.abs(m.residual()).max() < 1e-10 * np.abs(m.yy).max()


def test_cvae_spectrum_nonnegative_descending():
    rng = np.random.default_rng(27)
    for seed in range(5):
        x = rng.normal(size=(50, 4))
        y = np.column_stack([x @ rng.normal(size=4), x @ rng.normal(size=4), rng.normal(size=50)])
        s = Moments.from_data(x, y).cvae_spectrum()
        assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
        assert s[0] > 0.1 and s[-1] < 1e-10                      # rank 1 residual: tiny ones clipped ≥ 0


@pytest.mark.parametrize("xx", [
    np.array([[1.0, 0.5], [0.0, 1.0]]),                       # not symmetric
    np.array([[1.0, 2.0], [2.0, 1.0]]),                       # eigenvalue −1
    np.ones((2, 3)),                                          # not square
    np.array([[1.0, np.nan], [np.nan, 1.0]]),                 # not finite
])
def test_moments_rejects_bad_matrices(xx):
    with pytest.raises(DataError):
        Moments(xx=xx)


def test_moments_rejects_inconsistent_pairs():
    with pytest.raises(DataError):
        Moments(xx=np.eye(2), xy=np.eye(2))                                         # yy missing
    with pytest.raises(DataError):
        Moments(xx=np.eye(2), xy=np.ones((3, 2)), yy=np.eye(2))                      # wrong xy shape
    with pytest.raises(DataError):
        Moments(xx=np.eye(2), xy=2 * np.eye(2), yy=np.eye(2))                        # joint not PSD


# =================================================================================================
# typed errors
# =================================================================================================
BAD_CALLS = {
    "beta zero": lambda m, mc: predict_vae(m, 2, beta=0.0),
    "beta negative": lambda m, mc: predict_cvae(mc, 2, beta=-1.0),
    "beta nan": lambda m, mc: predict_vae(m, 2, beta=float("nan")),
    "beta inf": lambda m, mc: predict_vae(m, 2, beta=float("inf")),
    "beta1 zero": lambda m, mc: predict_mhvae(m, (2, 2), beta1=0.0),
    "beta2 nan": lambda m, mc: predict_mhvae(m, (2, 2), beta2=float("nan")),
    "eta_enc zero": lambda m, mc: predict_vae(m, 2, eta_enc=0.0),
    "eta_enc negative": lambda m, mc: predict_mhvae(m, (2, 2), eta_enc=-1.0),
    "eta_dec zero": lambda m, mc: predict_cvae(mc, 2, eta_dec=0.0),
    "eta_dec negative": lambda m, mc: predict_vae(m, 2, eta_dec=-0.5),
    "latent_dim 0": lambda m, mc: predict_vae(m, 0),
    "latent_dim > d": lambda m, mc: predict_vae(m, 6),
    "cvae latent_dim > d_y": lambda m, mc: predict_cvae(mc, 4),
    "latent_dim float": lambda m, mc: predict_vae(m, 2.5),
    "latent_dims d2 > d1": lambda m, mc: predict_mhvae(m, (3, 4)),
    "latent_dims length 1": lambda m, mc: predict_mhvae(m, (3,)),
    "latent_dims length 3": lambda m, mc: predict_mhvae(m, (3, 2, 1)),
    "latent_dims int": lambda m, mc: predict_mhvae(m, 3),
    "cvae without y": lambda m, mc: predict_cvae(m, 2),
    "sigma1 zero": lambda m, mc: predict_mhvae(m, (2, 2), sigma1=0.0),
    "sigma1 negative": lambda m, mc: predict_mhvae(m, (2, 2), sigma1=-0.3),
    "sigma2 zero": lambda m, mc: predict_mhvae(m, (2, 2), sigma2=0.0),
    "encoder_std wrong length": lambda m, mc: predict_vae(m, 3, encoder_std=[1.0, 2.0]),
    "encoder_std zero": lambda m, mc: predict_vae(m, 3, encoder_std=[1.0, 0.0, 2.0]),
    "encoder_std negative scalar": lambda m, mc: predict_vae(m, 3, encoder_std=-1.0),
    "not moments": lambda m, mc: predict_vae(np.eye(3), 2),
    "predict unknown model": lambda m, mc: predict("gan", m, latent_dim=2),
    "verify unknown model": lambda m, mc: verify("gan", m, latent_dim=2),
    "verify bad starts": lambda m, mc: verify("vae", m, latent_dim=2, starts=0),
    "recommend target 0": lambda m, mc: recommend_beta(m, "vae", target_active=0, latent_dim=2),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_input_raises_parameter_error(name):
    m = Moments(xx=np.diag([4.0, 3.0, 2.0, 1.0, 0.5]))
    mc = Moments(xx=np.eye(2), xy=0.5 * np.eye(2, 3), yy=np.diag([2.0, 1.0, 0.5]))
    with pytest.raises(ParameterError) as info:
        BAD_CALLS[name](m, mc)
    assert isinstance(info.value, ValueError) and isinstance(info.value, CollapsekitError)


def test_error_hierarchy():
    assert issubclass(DataError, ValueError) and issubclass(DataError, CollapsekitError)
    assert issubclass(ParameterError, ValueError) and issubclass(ParameterError, CollapsekitError)
    with pytest.raises(ValueError):                      # generic handlers keep working
        Moments.from_data(np.ones((3, 2)), np.ones((2, 2)))
