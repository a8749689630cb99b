"""The linear models implement exactly the theory's parameterisation (docs/theory.md §1).

For each linear model, the closed-form optimum of ``collapsekit.theory`` is turned into weights
(W = V Φ^{-1/2} P_Aᵀ, U = P_A diag(ω), ...), set into a model built by the registry, and a Monte
Carlo negative β-ELBO over the very data the moments came from — written here from the model's
distributions, independently of any objective module — must match ``prediction.loss`` within a
few Monte Carlo standard errors, and the per-dimension KL must match ``prediction.kl_per_dim``.
Any missing constant, bias, wrong std/variance convention or wrong prior shows up as a gap of
many standard errors (the tests also check that those errors are small).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from collapsekit.models import build_model
from collapsekit.theory import Moments, predict_cvae, predict_mhvae, predict_vae

S = 4000          # latent samples per example
Z_TOL = 4.5       # standard errors allowed


def exact_data(theta: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose raw second moment is P diag(θ²) Pᵀ exactly, for a random rotation P."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, theta.size)))
    p, _ = np.linalg.qr(rng.normal(size=(theta.size, theta.size)))
    return np.sqrt(n) * (q * theta) @ p.T


def descending_eig(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    phi, basis = np.linalg.eigh(matrix)
    order = np.argsort(phi)[::-1]
    return np.clip(phi[order], 0.0, None), basis[:, order]


def whitened_encoder(sv: np.ndarray, phi: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """W = diag(λ) Φ^{-1/2} P_Aᵀ restricted to the first len(λ) modes (zero where Φ or λ is zero)."""
    k = sv.size
    inv_root = np.where(phi[:k] > 0, 1.0 / np.sqrt(np.where(phi[:k] > 0, phi[:k], 1.0)), 0.0)
    return (sv * inv_root)[:, None] * basis[:, :k].T


def assign(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(value, dtype=param.dtype))


def mc_estimate(per_sample: torch.Tensor) -> tuple[float, float]:
    """Mean over (S, B) and its standard error, z drawn independently given each fixed example."""
    s, b = per_sample.shape
    se = float(per_sample.var(dim=0).sum().sqrt() / (b * s**0.5))
    return float(per_sample.mean()), se


def assert_matches(estimate: tuple[float, float], expected: float) -> None:
    mean, se = estimate
    assert se < 0.02, f"Monte Carlo error {se:.3g} too large for a meaningful test"
    assert abs(mean - expected) <= Z_TOL * se + 1e-9, f"MC {mean:.6f} ± {se:.2g} vs closed form {expected:.6f}"


def parameter_names(model: torch.nn.Module) -> set[str]:
    return {name for name, _ in model.named_parameters()}


# -- VAE ---------------------------------------------------------------------------------------------
VAE_THETA = np.array([3.0, 2.0, 1.5, 0.9, 0.5, 0.3])


@pytest.mark.parametrize("encoder_std", [None, [0.5, 1.3, 0.9, 2.0]], ids=["learnable", "fixed"])
def test_linear_vae_at_closed_form_optimum(encoder_std):
    beta, eta_enc, eta_dec, k = 0.7, 1.3, 1.5, 4
    x = exact_data(VAE_THETA, n=40, seed=0)
    m = Moments.from_data(x)
    pred = predict_vae(m, latent_dim=k, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec, encoder_std=encoder_std)
    assert 0 < pred.n_active < k                       # the test covers active and zero modes
    model = build_model("vae", "linear", x_dim=6, latent_dims=[k], eta_enc=eta_enc, eta_dec=eta_dec,
                        encoder_std="learnable" if encoder_std is None else list(pred.encoder_std)).double()
    expected_params = {"encoder.head.mean.weight", "decoder.map.weight"} | (
        {"encoder.head.log_var.log_std"} if encoder_std is None else set())
    assert parameter_names(model) == expected_params   # no biases, std learnable only when asked

    phi, basis = descending_eig(m.xx)
    assign(model.encoder.weight, whitened_encoder(pred.encoder_sv, phi, basis))
    assign(model.decoder.weight, basis[:, :k] * pred.decoder_sv)
    assign(model.encoder.shared_std.log_std, np.log(pred.encoder_std))

    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.as_tensor(x), n_samples=S)
    (level,) = out.levels
    kl = kl_divergence(level.posterior, level.prior)                      # (B, d), analytic
    per_sample = -out.likelihood.log_prob(out.target) + beta * kl.sum(-1)  # (S, B)
    assert_matches(mc_estimate(per_sample), pred.loss)
    np.testing.assert_allclose(np.sort(kl.mean(0).numpy()), np.sort(pred.kl_per_dim), atol=1e-9)


# -- CVAE --------------------------------------------------------------------------------------------
def cvae_data(n: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) @ rng.normal(size=(4, 4))
    y = 0.6 * x @ rng.normal(size=(4, 5)) + rng.normal(size=(n, 5)) @ np.diag([2.0, 1.4, 1.0, 0.6, 0.3])
    return x, y


def test_linear_cvae_at_closed_form_optimum():
    beta, eta_enc, eta_dec, k = 1.2, 0.8, 0.9, 4
    x, y = cvae_data()
    m = Moments.from_data(x, y)
    pred = predict_cvae(m, latent_dim=k, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    assert 0 < pred.n_active < k
    model = build_model("cvae", "linear", x_dim=4, y_dim=5, latent_dims=[k], eta_enc=eta_enc,
                        eta_dec=eta_dec).double()
    # Exactly W₁, W₂, U₁, U₂ and one data-independent std vector (docs/theory.md §1.2).
    assert parameter_names(model) == {"encoder.x_branch.head.mean.weight", "encoder.y_branch.head.mean.weight",
                                      "encoder.shared_std.log_std", "decoder.x_branch.map.weight",
                                      "decoder.z_branch.map.weight"}

    # Optimum: U₂ = E[yxᵀ]E[xxᵀ]⁺; the encoder codes the residual r = y − U₂x:
    # W₂ = V Φ_E^{-1/2} P_Eᵀ, W₁ = −W₂U₂.
    u2 = m.regression()
    phi, basis = descending_eig(m.residual())
    w2 = whitened_encoder(pred.encoder_sv, phi, basis)
    assign(model.encoder.y_branch.weight, w2)
    assign(model.encoder.x_branch.weight, -w2 @ u2)
    assign(model.decoder.x_branch.weight, u2)
    assign(model.decoder.z_branch.weight, basis[:, :k] * pred.decoder_sv)
    assign(model.encoder.shared_std.log_std, np.log(pred.encoder_std))

    torch.manual_seed(1)
    with torch.no_grad():
        out = model(torch.as_tensor(x), torch.as_tensor(y), n_samples=S)
    assert torch.equal(out.target, torch.as_tensor(y))
    (level,) = out.levels
    kl = kl_divergence(level.posterior, level.prior)
    per_sample = -out.likelihood.log_prob(out.target) + beta * kl.sum(-1)
    assert_matches(mc_estimate(per_sample), pred.loss)
    np.testing.assert_allclose(np.sort(kl.mean(0).numpy()), np.sort(pred.kl_per_dim), atol=1e-9)


# -- MHVAE -------------------------------------------------------------------------------------------
MH_THETA = np.array([3.0, 2.0, 1.5, 0.9, 0.6, 0.3])


@pytest.mark.parametrize("sigma2, beta2", [(None, 2.0), (0.7, 4.0)], ids=["theorem3-learnable", "theorem5-fixed"])
def test_linear_mhvae_at_closed_form_optimum(sigma2, beta2):
    beta1, eta_enc, eta_dec, sigma1, (d1, d2) = 1.0, 1.2, 0.8, 0.5, (6, 4)
    x = exact_data(MH_THETA, n=40, seed=2)
    m = Moments.from_data(x)
    pred = predict_mhvae(m, (d1, d2), beta1=beta1, beta2=beta2, eta_enc=eta_enc, eta_dec=eta_dec,
                         sigma1=sigma1, sigma2=sigma2)
    assert 0 < pred.n_active < d2 and pred.level1["inactive"].any()
    model = build_model("hvae", "linear", x_dim=6, latent_dims=[d1, d2], eta_enc=eta_enc, eta_dec=eta_dec,
                        sigma1=sigma1, sigma2="learnable" if sigma2 is None else sigma2).double()
    assert model.eta_dec_latent == pytest.approx((eta_dec,))   # the same η_dec at both decoder levels
    assert parameter_names(model) == {"encoders.0.head.mean.weight", "encoders.1.head.mean.weight",
                                      "decoders.0.map.weight", "decoders.1.map.weight"} | (
        {"encoders.1.head.log_var.log_std"} if sigma2 is None else set())

    # z₁'s coordinates are already the data modes, so W₂ and U₂ are diagonal.
    phi, basis = descending_eig(m.xx)
    assign(model.encoders[0].weight, whitened_encoder(pred.level1["encoder_sv"], phi, basis))
    assign(model.decoders[0].weight, basis[:, :d1] * pred.level1["decoder_sv"])
    assign(model.encoders[1].weight, np.eye(d2, d1) * pred.encoder_sv[:, None])
    assign(model.decoders[1].weight, np.eye(d1, d2) * pred.decoder_sv)
    assign(model.encoders[1].shared_std.log_std, np.log(pred.encoder_std))

    torch.manual_seed(2)
    with torch.no_grad():
        out = model(torch.as_tensor(x), n_samples=S)
    z1, z2 = out.levels
    assert z1.posterior.loc.shape == (40, d1) and z2.posterior.loc.shape == (S, 40, d2)
    # β₁'s term is E_{q(z₁|x)q(z₂|z₁)}[log q(z₁|x) − log p(z₁|z₂)], z₂ drawn *from* z₁: estimated
    # as −H(q(z₁|x)) − log p(z₁|z₂) at the sampled pair. The analytic KL(q(z₁|x) ‖ p(z₁|z₂)) at a
    # sampled z₂ treats z₁ as independent of z₂ and is biased (test_analytic_level1_kl_is_not_...).
    kl1 = -z1.posterior.entropy() - z1.prior.log_prob(z1.sample)   # (S, B, d1)
    kl2 = kl_divergence(z2.posterior, z2.prior)         # (S, B, d2)
    per_sample = -out.likelihood.log_prob(out.target) + beta1 * kl1.sum(-1) + beta2 * kl2.sum(-1)
    assert_matches(mc_estimate(per_sample), pred.loss)
    for kl, expected in ((kl2, pred.kl_per_dim), (kl1, pred.level1["kl_per_dim"])):
        for dim, value in enumerate(expected):
            assert_matches(mc_estimate(kl[..., dim]), value)


def test_analytic_level1_kl_is_not_the_mhvae_term():
    """KL(q(z₁|x) ‖ p(z₁|z₂)) evaluated at z₂ ~ q(z₂|z₁) treats z₁ as independent of z₂. In the linear
    model it exceeds the theory's middle term by σ₁²·tr(U₂W₂)/η_dec² nats per example (1 here).
    Objectives must score the sampled z₁ — the one z₂ was drawn from — as the test above does."""
    x = exact_data(MH_THETA, n=40, seed=2)
    model = build_model("hvae", "linear", x_dim=6, latent_dims=[6, 4], sigma1=0.5).double()
    with torch.no_grad():
        model.decoders[1].weight.copy_(torch.eye(6, 4, dtype=torch.float64))
        model.encoders[1].weight.copy_(torch.eye(4, 6, dtype=torch.float64))
        torch.manual_seed(3)
        z1, _ = model(torch.as_tensor(x), n_samples=S).levels
    paired = (-z1.posterior.entropy() - z1.prior.log_prob(z1.sample)).sum(-1)
    analytic = kl_divergence(z1.posterior, z1.prior).sum(-1)
    assert_matches(mc_estimate(analytic - paired), 0.5**2 * 4 / 1.0**2)
