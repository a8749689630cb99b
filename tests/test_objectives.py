"""Objectives: each checked on its defining property against closed forms, within Monte Carlo error.

ModelOutputs are built by hand from torch.distributions (the models package is not used), mostly
from a linear Gaussian model whose exact marginal likelihood and expected ELBO are known:

    p(z) = N(0, η² I_d),  p(x | z) = N(W z, σ² I_D)   ⇒   x ~ N(0, η² W Wᵀ + σ² I_D).

W has orthogonal columns, so the exact posterior is diagonal and q can equal it.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from collapsekit.errors import ParameterError
from collapsekit.models.output import LatentLevel, ModelOutput
from collapsekit.objectives import (IWAE, OBJECTIVES, BetaELBO, Capacity, CapacityELBO, Constant, InfoVAEMMD,
                                    LinearWarmup, LossTerms, bind_schedule, build_objective, iwae_bound,
                                    kl_per_dimension, level_kl_per_dimension, mmd_unbiased, objective_from_dict)

DTYPE = torch.float64
Z_SCORE = 4.5   # tolerance in standard errors: a false alarm about once in 150 000 checks


def within_mc_error(samples: torch.Tensor, expected: torch.Tensor | float, dim: int = 0) -> None:
    """The mean of iid ``samples`` along ``dim`` equals ``expected`` within Z_SCORE standard errors."""
    mean = samples.mean(dim)
    se = samples.std(dim) / math.sqrt(samples.shape[dim])
    gap = (mean - torch.as_tensor(expected, dtype=samples.dtype)).abs()
    assert torch.all(gap <= Z_SCORE * se + 1e-12), f"mean {mean} vs expected {expected} (se {se})"


# -- a linear Gaussian model ----------------------------------------------------------------------
class LinearGaussian:
    """The model above with D = 3, d = 2, and helpers for its exact quantities."""

    def __init__(self, eta: float = 1.3, sigma: float = 0.6) -> None:
        q, _ = torch.linalg.qr(torch.tensor([[1.0, 0.2], [0.5, -1.0], [-0.3, 0.4]], dtype=DTYPE))
        self.W = q * torch.tensor([1.5, 0.7], dtype=DTYPE)          # orthogonal columns, norms 1.5 and 0.7
        self.eta, self.sigma = eta, sigma
        self.D, self.d = self.W.shape

    def data(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = self.eta * torch.randn(n, self.d, generator=g, dtype=DTYPE)
        return z @ self.W.T + self.sigma * torch.randn(n, self.D, generator=g, dtype=DTYPE)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.eta**2 * self.W @ self.W.T + self.sigma**2 * torch.eye(self.D, dtype=DTYPE)
        return MultivariateNormal(torch.zeros(self.D, dtype=DTYPE), cov).log_prob(x)

    def exact_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, std) of p(z | x), diagonal because WᵀW is."""
        precision = (self.W * self.W).sum(0) / self.sigma**2 + 1.0 / self.eta**2        # (d,)
        loc = (x @ self.W) / self.sigma**2 / precision
        return loc, precision.rsqrt().expand_as(loc)

    def output(self, x: torch.Tensor, loc: torch.Tensor, std: torch.Tensor, n_samples: int) -> ModelOutput:
        posterior = Normal(loc, std)
        z = posterior.rsample((n_samples,))                                               # (S, B, d)
        prior = Normal(torch.zeros(self.d, dtype=DTYPE), torch.full((self.d,), self.eta, dtype=DTYPE))
        likelihood = Independent(Normal(z @ self.W.T, torch.tensor(self.sigma, dtype=DTYPE)), 1)
        return ModelOutput(target=x, likelihood=likelihood, levels=[LatentLevel("z", posterior, prior, z)])

    def expected_reconstruction(self, x: torch.Tensor, loc: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """E_q[−log p(x | z)] per example, closed form."""
        residual = ((x - loc @ self.W.T) ** 2).sum(-1)
        spread = (std**2 * (self.W * self.W).sum(0)).sum(-1)
        return 0.5 * self.D * math.log(2 * math.pi * self.sigma**2) + (residual + spread) / (2 * self.sigma**2)

    def kl(self, loc: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """KL(q ‖ p) per example and dimension, closed form (docs/metrics.md §0)."""
        return 0.5 * ((std**2 + loc**2) / self.eta**2 - 1 - torch.log(std**2 / self.eta**2))


def mismatched_posterior(model: LinearGaussian, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior with its mean shifted by 0.4 std and its std inflated by 1.3."""
    loc, std = model.exact_posterior(x)
    return loc + 0.4 * std, 1.3 * std


# -- KL per dimension -----------------------------------------------------------------------------
def test_analytic_kl_per_dimension_matches_monte_carlo():
    torch.manual_seed(0)
    loc = torch.tensor([[0.3, -1.2, 0.0], [2.0, 0.5, -0.4]], dtype=DTYPE)
    std = torch.tensor([[0.5, 1.1, 2.0], [0.2, 0.9, 1.0]], dtype=DTYPE)
    prior = Normal(torch.tensor([0.1, -0.5, 0.2], dtype=DTYPE), torch.tensor([1.0, 0.7, 1.6], dtype=DTYPE))
    posterior = Normal(loc, std)
    level = LatentLevel("z", posterior, prior, posterior.rsample((3,)))
    analytic = kl_per_dimension(level)
    assert analytic.shape == (3, 2, 3)                               # broadcast to (S, B, d)
    assert torch.equal(analytic[0], analytic[2])                     # the same value for every sample
    # Monte Carlo: E_q[log q(z) − log p(z)] per dimension from 200 000 draws.
    z = posterior.sample((200_000,))
    within_mc_error(posterior.log_prob(z) - prior.log_prob(z), analytic[0])
    # With a prior that does not depend on the sample, the paired estimate is unbiased for the same KL.
    many = LatentLevel("z", posterior, prior, z)
    within_mc_error(kl_per_dimension(many, paired=True), analytic[0])


class TwoLevelLinear:
    """A hand-built linear two-level hierarchy, one independent chain per dimension:

        q(z₁|x) = N(m, s²),  q(z₂|z₁) = N(a·z₁, t²),  p(z₁|z₂) = N(u·z₂, η²),  p(z₂) = N(0, η_enc²).

    β₁'s term E_{q(z₁)q(z₂|z₁)}[log q(z₁) − log p(z₁|z₂)] = ½log(η²/s²) − ½ + [(1−ua)²(m²+s²) + u²t²]/(2η²);
    the analytic KL(q(z₁) ‖ p(z₁|z₂)) at the sampled z₂ averages to that plus s²·u·a/η².
    """

    m = torch.tensor([0.8, -0.3], dtype=DTYPE)
    s = torch.tensor([0.5, 0.9], dtype=DTYPE)
    a = torch.tensor([1.2, 0.6], dtype=DTYPE)
    t = torch.tensor([0.4, 0.7], dtype=DTYPE)
    u = torch.tensor([0.9, 1.5], dtype=DTYPE)
    eta, eta_enc = 0.8, 1.0

    def output(self, n_samples: int, batch: int = 1) -> ModelOutput:
        q1 = Normal(self.m.expand(batch, 2), self.s.expand(batch, 2))
        z1 = q1.rsample((n_samples,))
        q2 = Normal(self.a * z1, self.t.expand_as(z1))
        z2 = q2.rsample()
        p1 = Normal(self.u * z2, torch.full_like(z2, self.eta))
        p2 = Normal(torch.zeros(2, dtype=DTYPE), torch.full((2,), self.eta_enc, dtype=DTYPE))
        likelihood = Independent(Normal(z1.sum(-1, keepdim=True), torch.tensor(1.0, dtype=DTYPE)), 1)
        return ModelOutput(target=torch.zeros(batch, 1, dtype=DTYPE), likelihood=likelihood,
                           levels=[LatentLevel("z1", q1, p1, z1), LatentLevel("z2", q2, p2, z2)])

    def middle_term(self) -> torch.Tensor:
        m, s, a, t, u, eta2 = self.m, self.s, self.a, self.t, self.u, self.eta**2
        return 0.5 * torch.log(eta2 / s**2) - 0.5 + ((1 - u * a) ** 2 * (m**2 + s**2) + u**2 * t**2) / (2 * eta2)

    def top_kl(self) -> torch.Tensor:
        """E_{q(z₁)} KL(q(z₂|z₁) ‖ p(z₂)): z₂'s mean a·z₁ has second moment a²(m² + s²)."""
        ratio = self.t**2 / self.eta_enc**2
        return 0.5 * (ratio + self.a**2 * (self.m**2 + self.s**2) / self.eta_enc**2 - 1 - torch.log(ratio))


def test_lower_level_term_is_paired_not_analytic():
    """The β₁ term of docs/theory.md §1.3 is the paired estimate; the analytic KL at the sampled z₂ is biased."""
    torch.manual_seed(1)
    hierarchy = TwoLevelLinear()
    out = hierarchy.output(n_samples=200_000)
    lower, top = level_kl_per_dimension(out)
    within_mc_error(lower[:, 0, :], hierarchy.middle_term())
    within_mc_error(top[:, 0, :], hierarchy.top_kl())
    bias = hierarchy.s**2 * hierarchy.u * hierarchy.a / hierarchy.eta**2
    analytic = kl_per_dimension(out.levels[0])
    within_mc_error(analytic[:, 0, :], hierarchy.middle_term() + bias)
    assert torch.all(bias > 50 * analytic[:, 0, :].std(0) / math.sqrt(200_000))   # a real difference


# -- β-ELBO ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [1.0, 2.5, 0.0])
def test_beta_elbo_matches_the_closed_form(beta):
    torch.manual_seed(2)
    model = LinearGaussian()
    x = model.data(16, seed=3)
    loc, std = mismatched_posterior(model, x)
    out = model.output(x, loc, std, n_samples=4000)
    terms = BetaELBO(beta)(out)
    kl = model.kl(loc, std)
    # kl is the analytic KL, exact, and never includes β.
    torch.testing.assert_close(terms.kl, kl.sum(-1).mean().reshape(1))
    torch.testing.assert_close(terms.kl_per_dim[0], kl.mean(0))
    torch.testing.assert_close(terms.loss, terms.reconstruction + beta * terms.kl.sum())
    # The reconstruction and the loss equal their closed forms within Monte Carlo error.
    per_sample = -out.likelihood.log_prob(x).mean(1)                                 # (S,): iid over samples
    torch.testing.assert_close(terms.reconstruction, per_sample.mean())
    expected = model.expected_reconstruction(x, loc, std).mean()
    within_mc_error(per_sample, expected)
    within_mc_error(per_sample + beta * kl.sum(-1).mean(), expected + beta * kl.sum(-1).mean())
    # At β = 1 the expected loss is the negative ELBO, which bounds −log p(x) from above.
    if beta == 1.0:
        assert float(expected + kl.sum(-1).mean()) > float(-model.log_marginal(x).mean())


def test_beta_per_level_weights_the_right_level():
    torch.manual_seed(3)
    out = TwoLevelLinear().output(n_samples=8, batch=5)
    lower, top = (k.mean((0, 1)) for k in level_kl_per_dimension(out))
    terms = BetaELBO([0.3, 2.0])(out)
    torch.testing.assert_close(terms.kl, torch.stack([lower.sum(), top.sum()]))      # paired below, analytic on top
    torch.testing.assert_close(terms.kl_per_dim[0], lower)
    torch.testing.assert_close(terms.loss, terms.reconstruction + 0.3 * lower.sum() + 2.0 * top.sum())
    swapped = BetaELBO([2.0, 0.3])(out)
    torch.testing.assert_close(swapped.loss, terms.reconstruction + 2.0 * lower.sum() + 0.3 * top.sum())
    torch.testing.assert_close(swapped.kl, terms.kl)                                 # kl never depends on β
    scaled = BetaELBO([0.3, 2.0])(out, beta_scale=0.5)                               # the schedule's factor
    torch.testing.assert_close(scaled.loss, terms.reconstruction + 0.15 * lower.sum() + 1.0 * top.sum())
    torch.testing.assert_close(BetaELBO(0.7)(out).loss, BetaELBO([0.7, 0.7])(out).loss)
    with pytest.raises(ParameterError, match=r"beta has 3 values .* 2 latent levels"):
        BetaELBO([1.0, 1.0, 1.0])(out)


def test_beta_elbo_rejects_bad_settings():
    for bad in (-1.0, float("nan"), float("inf"), "1", [1.0, -0.1], []):
        with pytest.raises(ParameterError, match="beta"):
            BetaELBO(bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="free_bits"):
        BetaELBO(1.0, free_bits=-0.5)
    model = LinearGaussian()
    x = model.data(4, seed=0)
    out = model.output(x, *model.exact_posterior(x), n_samples=1)
    with pytest.raises(ParameterError, match="beta_scale"):
        BetaELBO()(out, beta_scale=-1.0)
    # A per-feature likelihood (no Independent) is refused instead of silently broadcast.
    out.likelihood = Normal(out.likelihood.base_dist.loc, 1.0)
    with pytest.raises(ParameterError, match="Independent"):
        BetaELBO()(out)


# -- free bits ------------------------------------------------------------------------------------
def test_free_bits_zero_gradient_below_lambda_and_elbo_gradient_above():
    torch.manual_seed(4)
    model = LinearGaussian()
    x = model.data(32, seed=5)
    # Dimension 0 is near the prior (batch-averaged KL ≈ 0.004 nats), dimension 1 far from it.
    loc = torch.stack([0.05 * torch.randn(32, dtype=DTYPE), 1.5 + torch.randn(32, dtype=DTYPE)], -1).requires_grad_()
    log_std = torch.stack([torch.full((32,), math.log(1.25), dtype=DTYPE),
                           torch.full((32,), math.log(0.3), dtype=DTYPE)], -1).requires_grad_()
    out = model.output(x, loc, log_std.exp(), n_samples=3)
    free_bits = 0.25
    fb = BetaELBO(1.5, free_bits=free_bits)(out)
    kl = fb.kl_per_dim[0].detach()
    assert kl[0] < free_bits < kl[1]
    assert torch.equal(fb.kl_per_dim[0], BetaELBO(1.5)(out).kl_per_dim[0])          # reported KL is the true one
    torch.testing.assert_close(fb.extras["kl_objective"], torch.clamp(kl, min=free_bits).sum().reshape(1))

    def grads(loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.autograd.grad(loss, (loc, log_std), retain_graph=True)  # type: ignore[return-value]

    fb_grad = grads(fb.loss)
    plain_grad = grads(BetaELBO(1.5)(out).loss)
    recon_grad = grads(fb.reconstruction)
    kl_grad = grads(fb.kl.sum())
    for g_fb, g_plain, g_recon, g_kl in zip(fb_grad, plain_grad, recon_grad, kl_grad):
        # Below λ: the KL term contributes exactly nothing, though its own gradient is not zero.
        assert torch.equal(g_fb[:, 0], g_recon[:, 0])
        assert g_kl[:, 0].abs().max() > 1e-3
        # Above λ: exactly the plain β-ELBO's gradient.
        torch.testing.assert_close(g_fb[:, 1], g_plain[:, 1], rtol=1e-12, atol=1e-12)


def test_free_bits_gradient_is_exactly_zero_without_reconstruction():
    """With a likelihood that ignores z, a dimension under its floor gets an exactly zero gradient."""
    loc = torch.tensor([[0.01, 2.0], [-0.02, 1.0]], dtype=DTYPE, requires_grad=True)
    std = torch.tensor([[1.0, 0.5], [1.0, 0.5]], dtype=DTYPE, requires_grad=True)
    posterior = Normal(loc, std)
    z = posterior.rsample((2,))
    prior = Normal(torch.zeros(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE))
    likelihood = Independent(Normal(torch.zeros(2, 2, 3, dtype=DTYPE), 1.0), 1)
    out = ModelOutput(torch.zeros(2, 3, dtype=DTYPE), likelihood, [LatentLevel("z", posterior, prior, z)])
    loss = BetaELBO(1.0, free_bits=0.1)(out).loss
    g_loc, g_std = torch.autograd.grad(loss, (loc, std))
    assert torch.all(g_loc[:, 0] == 0) and torch.all(g_std[:, 0] == 0)
    assert torch.all(g_loc[:, 1] != 0) and torch.all(g_std[:, 1] != 0)


# -- IWAE -----------------------------------------------------------------------------------------
def test_iwae_checks_the_sample_count():
    model = LinearGaussian()
    x = model.data(4, seed=0)
    out = model.output(x, *model.exact_posterior(x), n_samples=3)
    with pytest.raises(ParameterError, match="k = 5 got 3 samples"):
        IWAE(5)(out)
    with pytest.raises(ParameterError, match="k"):
        IWAE(0)
    with pytest.raises(ParameterError, match="no KL weight"):
        IWAE(3)(out, beta_scale=0.5)


def test_iwae_with_one_sample_is_the_single_sample_elbo():
    torch.manual_seed(6)
    model = LinearGaussian()
    x = model.data(20, seed=7)
    out = model.output(x, *mismatched_posterior(model, x), n_samples=1)
    terms = IWAE(1)(out)
    level = out.levels[0]
    log_ratio = level.prior.log_prob(level.sample) - level.posterior.log_prob(level.sample)
    elbo = out.likelihood.log_prob(x) + log_ratio.sum(-1)
    torch.testing.assert_close(terms.extras["iwae_bound"], elbo.mean())
    torch.testing.assert_close(terms.loss, -elbo.mean())
    torch.testing.assert_close(terms.kl, BetaELBO()(out).kl)                          # monitoring: analytic KL


def test_iwae_with_the_exact_posterior_is_the_exact_log_likelihood():
    """log w = log p(x) for every sample when q is the true posterior, whatever k."""
    model = LinearGaussian()
    x = model.data(10, seed=8)
    for k in (1, 7):
        out = model.output(x, *model.exact_posterior(x), n_samples=k)
        torch.testing.assert_close(iwae_bound(out), model.log_marginal(x), rtol=0, atol=1e-10)


def test_iwae_bound_increases_with_k_towards_the_log_likelihood():
    torch.manual_seed(9)
    model = LinearGaussian()
    x = model.data(256, seed=10)
    loc, std = mismatched_posterior(model, x)
    log_px = model.log_marginal(x)
    # Per k: the batch mean of log p(x) − L_k, once per repeat (iid draws; the examples are the same
    # in every repeat, so their own gaps are a fixed offset common to all k).
    repeats = {1: 400, 5: 400, 50: 300, 500: 48}
    gaps: dict[int, torch.Tensor] = {}
    for k, n in repeats.items():
        outputs = [model.output(x, loc, std, n_samples=k) for _ in range(n)]
        gaps[k] = torch.stack([(log_px - iwae_bound(out)).mean() for out in outputs])
        torch.testing.assert_close(IWAE(k)(outputs[0]).loss, -iwae_bound(outputs[0]).mean())
    mean = {k: float(g.mean()) for k, g in gaps.items()}
    se = {k: float(g.std()) / math.sqrt(g.numel()) for k, g in gaps.items()}
    # L_1 is the ELBO in expectation: its gap is KL(q ‖ p(z|x)) > 0, here about 0.3 nats.
    elbo_gap = (log_px + model.expected_reconstruction(x, loc, std) + model.kl(loc, std).sum(-1)).mean()
    within_mc_error(gaps[1], elbo_gap)
    assert float(elbo_gap) > 0.2
    # Each increase of k closes part of the gap, by many standard errors; IWAE ≥ ELBO.
    for small, large in ((1, 5), (5, 50), (50, 500)):
        assert mean[small] - mean[large] > 5 * math.hypot(se[small], se[large]), (small, large, mean, se)
    assert mean[5] < float(elbo_gap)
    # At k = 500 the bound is within 0.01 nats of the exact log-likelihood (and not above it beyond MC error).
    assert -Z_SCORE * se[500] < mean[500] < 0.01, (mean, se)


# -- InfoVAE-MMD ----------------------------------------------------------------------------------
def prior_like_output(batch: int, n_samples: int, shift: float, generator: torch.Generator) -> ModelOutput:
    """A top level whose aggregate posterior is N(shift, 1) per dimension (the prior when shift = 0):
    each example's posterior N(μ_i, 0.1²) with μ_i ~ N(shift, 1 − 0.1²), S samples from it."""
    d = 3
    mu = shift + math.sqrt(1 - 0.01) * torch.randn(batch, d, generator=generator, dtype=DTYPE)
    posterior = Normal(mu, torch.full_like(mu, 0.1))
    z = mu + 0.1 * torch.randn(n_samples, batch, d, generator=generator, dtype=DTYPE)
    prior = Normal(torch.zeros(d, dtype=DTYPE), torch.ones(d, dtype=DTYPE))
    likelihood = Independent(Normal(z, torch.tensor(1.0, dtype=DTYPE)), 1)
    return ModelOutput(torch.zeros(batch, d, dtype=DTYPE), likelihood, [LatentLevel("z", posterior, prior, z)])


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_unbiased_at_the_prior_and_positive_when_shifted(kernel):
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(12)
    objective = InfoVAEMMD(kernel=kernel)
    # S = 4 near-identical samples per example: leaving their pairs out is what keeps this unbiased.
    at_prior = torch.stack([objective.mmd(prior_like_output(24, 4, 0.0, g)) for _ in range(400)])
    within_mc_error(at_prior, 0.0)
    assert float(at_prior.min()) < 0 < float(at_prior.max())                         # a U-statistic, not a V
    shifted = torch.stack([objective.mmd(prior_like_output(24, 4, 1.0, g)) for _ in range(50)])
    assert float(shifted.mean()) > 20 * float(shifted.std() / math.sqrt(50))
    assert float(shifted.mean()) > 20 * float(at_prior.std() / math.sqrt(400))


def test_mmd_estimator_matches_a_direct_double_loop():
    g = torch.Generator().manual_seed(13)
    q, p = torch.randn(5, 2, generator=g, dtype=DTYPE), torch.randn(4, 2, generator=g, dtype=DTYPE) + 0.5
    groups = torch.tensor([0, 0, 1, 2, 2])
    k = lambda a, b: 3.0 / (3.0 + ((a - b) ** 2).sum())  # noqa: E731  (IMQ, C = 3)
    qq = [k(q[i], q[j]) for i in range(5) for j in range(5) if groups[i] != groups[j]]
    pp = [k(p[i], p[j]) for i in range(4) for j in range(4) if i != j]
    qp = [k(q[i], p[j]) for i in range(5) for j in range(4)]
    expected = sum(qq) / len(qq) + sum(pp) / len(pp) - 2 * sum(qp) / len(qp)
    torch.testing.assert_close(mmd_unbiased(q, p, kernel="imq", scale=3.0, q_groups=groups), expected)


@pytest.mark.parametrize(("alpha", "lambda_"), [(0.0, 1000.0), (0.5, 10.0), (1.0, 3.0), (-1.0, 2.5)])
def test_infovae_loss_weights(alpha, lambda_):
    g = torch.Generator().manual_seed(14)
    out = prior_like_output(16, 1, 0.7, g)
    terms = InfoVAEMMD(alpha=alpha, lambda_=lambda_)(out)
    expected = terms.reconstruction + (1 - alpha) * terms.kl.sum() + (alpha + lambda_ - 1) * terms.extras["mmd"]
    torch.testing.assert_close(terms.loss, expected)
    torch.testing.assert_close(terms.kl, BetaELBO()(out).kl)
    warm = InfoVAEMMD(alpha=alpha, lambda_=lambda_)(out, beta_scale=0.25)            # scales the KL weight only
    torch.testing.assert_close(warm.loss, warm.reconstruction + 0.25 * (1 - alpha) * warm.kl.sum()
                               + (alpha + lambda_ - 1) * warm.extras["mmd"])
    # α = 0, λ = 1 is the ELBO exactly: the MMD weight is 0.
    torch.testing.assert_close(InfoVAEMMD(alpha=0.0, lambda_=1.0)(out).loss, BetaELBO()(out).loss)


def test_infovae_rejects_bad_settings_and_single_examples():
    for settings, field in (({"alpha": 1.5}, "alpha"), ({"lambda_": 0.0}, "lambda_"),
                            ({"alpha": -2.0, "lambda_": 0.5}, "alpha \\+ lambda_"), ({"kernel": "laplace"}, "kernel"),
                            ({"scale": -1.0}, "scale")):
        with pytest.raises(ParameterError, match=field):
            InfoVAEMMD(**settings)
    with pytest.raises(ParameterError, match="at least 2 examples"):
        InfoVAEMMD()(prior_like_output(1, 3, 0.0, torch.Generator().manual_seed(0)))


# -- capacity -------------------------------------------------------------------------------------
def test_capacity_objective_and_binding():
    torch.manual_seed(15)
    model = LinearGaussian()
    x = model.data(8, seed=16)
    out = model.output(x, *mismatched_posterior(model, x), n_samples=2)
    objective = bind_schedule(build_objective("elbo"), Capacity(c_max=25.0, steps=100, gamma=50.0))
    assert isinstance(objective, CapacityELBO) and objective.gamma == 50.0
    kl = BetaELBO()(out).kl.sum()
    for capacity in (0.0, float(kl) + 3.0):
        terms = objective(out, capacity=capacity)
        torch.testing.assert_close(terms.loss, terms.reconstruction + 50.0 * (kl - capacity).abs())
        torch.testing.assert_close(terms.kl.sum(), kl)
    with pytest.raises(ParameterError, match="replaces β"):
        bind_schedule(BetaELBO(4.0), Capacity(25.0, 100))
    with pytest.raises(ParameterError, match="capacity schedule drives the elbo"):
        bind_schedule(IWAE(5), Capacity(25.0, 100))
    with pytest.raises(ParameterError, match="no KL weight"):
        bind_schedule(IWAE(5), LinearWarmup(100))
    assert isinstance(bind_schedule(IWAE(5), Constant()), IWAE)
    with pytest.raises(ParameterError, match="needs the capacity schedule"):
        bind_schedule(CapacityELBO(), Constant())


# -- loss terms and the registry ------------------------------------------------------------------
def test_loss_terms_detach_and_floats():
    model = LinearGaussian()
    x = model.data(6, seed=17)
    loc, std = model.exact_posterior(x)
    out = model.output(x, loc.clone().requires_grad_(), std, n_samples=2)
    terms = BetaELBO(2.0, free_bits=0.1)(out)
    assert terms.loss.requires_grad and not terms.detached().loss.requires_grad
    assert isinstance(terms.detached(), LossTerms)
    floats = terms.as_floats()
    assert set(floats) == {"loss", "reconstruction", "kl", "kl_per_level", "kl_per_dim", "kl_objective"}
    assert isinstance(floats["loss"], float) and len(floats["kl_per_dim"][0]) == 2
    assert floats["kl"] == pytest.approx(sum(floats["kl_per_dim"][0]))
    torch.testing.assert_close(terms.negative_elbo, BetaELBO()(out).loss)


def test_registry_builds_every_objective_and_explains_errors():
    assert set(OBJECTIVES) >= {"elbo", "iwae", "infovae"}
    built = [build_objective("elbo", beta=[1.0, 0.5], free_bits=None), build_objective("iwae", k=5),
             build_objective("infovae", alpha=0.0, lambda_=100.0), build_objective("capacity", gamma=10.0)]
    for objective in built:
        again = objective_from_dict(objective.to_dict())
        assert type(again) is type(objective) and again.to_dict() == objective.to_dict()
    with pytest.raises(ParameterError, match="choose one of elbo, iwae, infovae"):
        build_objective("vae")
    with pytest.raises(ParameterError, match="no setting lambda; accepted: alpha, lambda_, kernel, scale"):
        build_objective("infovae", **{"lambda": 3.0})
    with pytest.raises(ParameterError, match="has no setting free_bits"):
        build_objective("iwae", k=3, free_bits=0.1)
