"""Importance-sampled log-likelihood against exact marginals of linear Gaussian models.

Linear Gaussian models have Gaussian marginals, so log p is known in closed form:

* VAE: x = Uz + η_dec ε, z ~ N(0, η_enc² I) ⇒ x ~ N(0, η_enc² UUᵀ + η_dec² I);
* CVAE: y = U₁z + U₂x + η_dec ε ⇒ y | x ~ N(U₂x, η_enc² U₁U₁ᵀ + η_dec² I);
* two-level hierarchy: z₁ | z₂ ~ N(U₂z₂, η² I) ⇒ z₁ ~ N(0, C₁), C₁ = η_enc² U₂U₂ᵀ + η² I, and
  x ~ N(0, U₁C₁U₁ᵀ + η² I).

The encoders are set near (not at) the true posterior — right mean map up to a perturbation,
diagonal stds 10–15 % too wide — so the importance weights vary and the test exercises the
estimator, not a constant log w. With S = 1000 samples the estimate must be within 0.05 nats of the
exact value on average, and never below the ELBO of the same samples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch.distributions import Independent, Normal

from collapsekit.diagnostics import importance_sampled_log_likelihood, importance_sampled_log_likelihood_from
from collapsekit.errors import ParameterError
from collapsekit.models import build_model

N = 200


def assign(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(value, dtype=param.dtype))



def linear_vae(seed: int = 0, eta_enc: float = 1.3, eta_dec: float = 0.7):
    """A linear VAE (D = 6, d = 3) with an encoder near the true posterior; data from its exact marginal."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(6, 3))
    post_cov = np.linalg.inv(u.T @ u / eta_dec**2 + np.eye(3) / eta_enc**2)
    encoder_map = post_cov @ u.T / eta_dec**2 + 0.02 * rng.normal(size=(3, 6))
    std = 1.15 * np.sqrt(np.diag(post_cov))
    model = build_model("vae", "linear", x_dim=6, latent_dims=[3], eta_enc=eta_enc, eta_dec=eta_dec,
                        encoder_std=list(std)).double()
    assign(model.decoder.weight, u)
    assign(model.encoder.weight, encoder_map)
    marginal = multivariate_normal(np.zeros(6), eta_enc**2 * u @ u.T + eta_dec**2 * np.eye(6))
    x = marginal.rvs(size=N, random_state=rng)
    return model, x, marginal.logpdf(x), (u, encoder_map, std, eta_enc, eta_dec)


def analytic_elbo(x: np.ndarray, u, encoder_map, std, eta_enc, eta_dec) -> np.ndarray:
    """E_q log p(x|z) − KL(q ‖ p) in closed form for the linear VAE."""
    mu = x @ encoder_map.T
    d_x = x.shape[1]
    reconstruction = (-0.5 * d_x * np.log(2 * np.pi * eta_dec**2)
                      - (((x - mu @ u.T) ** 2).sum(1) + ((u * std) ** 2).sum()) / (2 * eta_dec**2))
    kl = 0.5 * (((mu**2 + std**2) / eta_enc**2) - 1 - np.log(std**2 / eta_enc**2)).sum(1)
    return reconstruction - kl


def check_bound(ll: np.ndarray, elbo: np.ndarray, exact: np.ndarray) -> None:
    assert ll.shape == elbo.shape == exact.shape and ll.dtype == np.float64
    assert abs((ll - exact).mean()) < 0.05, (ll - exact).mean()
    assert np.abs(ll - exact).mean() < 0.1                  # per example too, not only on average
    assert np.all(ll >= elbo)                               # Jensen on the same samples, per example
    assert (exact - elbo).mean() > 0.05                     # the proposal is imperfect: a real gap to close


def test_linear_vae_matches_its_exact_marginal_likelihood():
    model, x, exact, params = linear_vae()
    ll, elbo = importance_sampled_log_likelihood(model, x, n_samples=1000)
    check_bound(ll, elbo, exact)
    # the ELBO is the Monte Carlo mean of log w: it matches the closed form (SE ≈ 0.005 nats here)
    assert elbo.mean() == pytest.approx(analytic_elbo(x, *params).mean(), abs=0.03)


def test_bring_your_own_encoder_and_decoder_give_the_same_numbers():
    model, x, exact, (_, _, _, eta_enc, eta_dec) = linear_vae(seed=1, eta_enc=0.8, eta_dec=1.1)

    def decoder(z: torch.Tensor) -> Independent:
        assert z.dim() == 2                                  # documented: (S·B, d)
        return Independent(Normal(model.decoder(z), eta_dec), 1)

    ll, elbo = importance_sampled_log_likelihood_from(model.encoder, decoder, x, eta_enc=eta_enc, n_samples=1000,
                                                      sample_chunk=128, batch_size=64)
    check_bound(ll, elbo, exact)
    ours, our_elbo = importance_sampled_log_likelihood(model, x, n_samples=1000, sample_chunk=128, batch_size=64)
    # same seed, same draws in the same order: the two code paths agree to rounding
    np.testing.assert_allclose(ll, ours, atol=1e-8)
    np.testing.assert_allclose(elbo, our_elbo, atol=1e-8)

    # a scale stored per pixel takes torch's own Normal.log_prob, not the isotropic shortcut: same numbers
    def per_pixel_scale(z: torch.Tensor) -> Independent:
        mean = model.decoder(z)
        return Independent(Normal(mean, torch.full_like(mean, eta_dec)), 1)

    reference, _ = importance_sampled_log_likelihood_from(model.encoder, per_pixel_scale, x, eta_enc=eta_enc,
                                                          n_samples=1000, sample_chunk=128, batch_size=64)
    np.testing.assert_allclose(reference, ours, atol=1e-8)


def test_linear_cvae_matches_its_exact_conditional_likelihood():
    rng = np.random.default_rng(2)
    eta_enc, eta_dec = 1.3, 0.7
    u1, u2 = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    post_cov = np.linalg.inv(u1.T @ u1 / eta_dec**2 + np.eye(2) / eta_enc**2)
    w2 = post_cov @ u1.T / eta_dec**2
    model = build_model("cvae", "linear", x_dim=3, y_dim=4, latent_dims=[2], eta_enc=eta_enc, eta_dec=eta_dec,
                        encoder_std=list(1.1 * np.sqrt(np.diag(post_cov)))).double()
    assign(model.encoder.y_branch.weight, w2)                # q(z|x,y) centred on the posterior of y − U₂x
    assign(model.encoder.x_branch.weight, -w2 @ u2)
    assign(model.decoder.x_branch.weight, u2)
    assign(model.decoder.z_branch.weight, u1)
    cov = eta_enc**2 * u1 @ u1.T + eta_dec**2 * np.eye(4)
    x = rng.normal(size=(N, 3))
    y = x @ u2.T + rng.multivariate_normal(np.zeros(4), cov, size=N)
    exact = np.array([multivariate_normal(u2 @ xi, cov).logpdf(yi) for xi, yi in zip(x, y)])
    ll, elbo = importance_sampled_log_likelihood(model, x, y, n_samples=1000)
    check_bound(ll, elbo, exact)


def test_two_level_linear_hierarchy_matches_its_exact_marginal():
    rng = np.random.default_rng(3)
    eta_enc, eta = 1.1, 0.8                                  # the same η at both decoder levels (docs/theory.md §1.3)
    u1, u2 = rng.normal(size=(5, 3)), rng.normal(size=(3, 2))
    c1 = eta_enc**2 * u2 @ u2.T + eta**2 * np.eye(3)
    p1 = np.linalg.inv(u1.T @ u1 / eta**2 + np.linalg.inv(c1))            # p(z₁|x) = N(K x, P₁)
    c2 = np.linalg.inv(u2.T @ u2 / eta**2 + np.eye(2) / eta_enc**2)       # p(z₂|z₁, x) = p(z₂|z₁) = N(W₂z₁, C₂)
    model = build_model("hvae", "linear", x_dim=5, latent_dims=[3, 2], eta_enc=eta_enc, eta_dec=eta,
                        sigma1=list(1.1 * np.sqrt(np.diag(p1))), sigma2=list(1.1 * np.sqrt(np.diag(c2)))).double()
    assign(model.encoders[0].weight, p1 @ u1.T / eta**2)
    assign(model.encoders[1].weight, c2 @ u2.T / eta**2)
    assign(model.decoders[0].weight, u1)
    assign(model.decoders[1].weight, u2)
    marginal = multivariate_normal(np.zeros(5), u1 @ c1 @ u1.T + eta**2 * np.eye(5))
    x = marginal.rvs(size=N, random_state=rng)
    ll, elbo = importance_sampled_log_likelihood(model, x, n_samples=1000)
    check_bound(ll, elbo, marginal.logpdf(x))


def test_progress_state_and_reproducibility():
    model, x, _, _ = linear_vae()
    model.train()
    state = torch.get_rng_state()
    calls: list[tuple[int, int]] = []
    first = importance_sampled_log_likelihood(model, x, n_samples=50, batch_size=64,
                                              on_batch=lambda done, total: calls.append((done, total)))
    assert calls == [(64, N), (128, N), (192, N), (N, N)]
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), state)
    again = importance_sampled_log_likelihood(model, x, n_samples=50, batch_size=64)
    np.testing.assert_array_equal(first[0], again[0])


def test_decoder_contract_errors_are_one_line():
    model, x, _, _ = linear_vae()

    def per_feature(z: torch.Tensor) -> Normal:                 # a per-feature density: no Independent(..., 1)
        return Normal(model.decoder(z), 1.0)

    with pytest.raises(ParameterError, match=r"log_prob\(x\) has shape .*Independent") as error:
        importance_sampled_log_likelihood_from(model.encoder, per_feature, x, n_samples=10)
    assert "\n" not in str(error.value)
    with pytest.raises(ParameterError, match="Distribution"):
        importance_sampled_log_likelihood_from(model.encoder, model.decoder, x, n_samples=10)
    with pytest.raises(ParameterError, match="encoder"):
        importance_sampled_log_likelihood_from(lambda xb: xb, per_feature, x, n_samples=10)
