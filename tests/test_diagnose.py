"""The statistics pass and the end-to-end diagnosis.

* The KL the pass stores is checked against an independent Monte Carlo estimate (one level) and,
  in a linear two-level hierarchy, against the closed form of the paired term
  E[log q(z₁|x) − log p(z₁|z₂)] and of the top term E_{q(z₁|x)} KL(q(z₂|z₁) ‖ p(z₂)).
* ``diagnose`` gives the same report for an encoder returning a Normal as for one returning
  ``(mu, log_var)``, and refuses bad encoder outputs with one-line errors.
* A linear VAE trained to the theory optimum has exactly as many Burda active units as the theory
  keeps active dimensions (and as many (ε, δ)-collapsed dimensions as it collapses).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Normal

from collapsekit.data import Dataset
from collapsekit.diagnostics import (CollapseReport, collect_from_encoder, collect_posterior, diagnose,
                                     diagnose_model)
from collapsekit.errors import DataError, ParameterError
from collapsekit.models import build_model
from collapsekit.theory import Moments, predict_vae
from collapsekit.training import RunConfig, load_training_data, train


def assign(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(value, dtype=param.dtype))



class MLPEncoder(nn.Module):
    """A small encoder with data-dependent variances, returning (mu, log_var)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
        self.mu, self.log_var = nn.Linear(16, 3), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.mu(h), self.log_var(h)


def data(n: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32)


# -- the pass ----------------------------------------------------------------------------------------
def test_one_level_kl_is_the_exact_expected_log_ratio():
    # an independent Monte Carlo estimate of E_q[log q(z|x) − log p(z)] with torch's own densities
    eta_enc = 1.7
    model = build_model("vae", "mlp", x_dim=6, latent_dims=[3], hidden=[16], encoder_std="data",
                        eta_enc=eta_enc).double()
    x = torch.as_tensor(data(100), dtype=torch.float64)
    stats = collect_posterior(model, x, batch_size=128)
    (level,) = stats.levels
    assert level.kl_exact and level.kl_samples == 0 and level.prior_std == pytest.approx(eta_enc)
    mu, log_var = model.encoder(x)
    np.testing.assert_allclose(level.mean, mu.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(level.var, log_var.exp().detach().numpy(), rtol=1e-12)
    torch.manual_seed(1)
    q = Normal(mu.detach(), (0.5 * log_var).exp().detach())
    z = q.sample((20_000,))
    log_ratio = (q.log_prob(z) - Normal(0.0, eta_enc).log_prob(z)).numpy()          # (S, N, d)
    estimate, error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    assert np.all(np.abs(level.kl - estimate) < 5 * error + 1e-9)
    # one posterior sample per example, from (mean, var)
    standardised = (level.sample - level.mean) / np.sqrt(level.var)
    assert abs(standardised.mean()) < 4 / math.sqrt(standardised.size)
    assert standardised.var() == pytest.approx(1.0, abs=4 * math.sqrt(2 / standardised.size))


def test_paired_kl_of_a_linear_hierarchy_matches_the_closed_form():
    # q(z₁|x) = N(W₁x, σ₁² I), q(z₂|z₁) = N(W₂z₁, diag s²), p(z₁|z₂) = N(U₂z₂, η² I), p(z₂) = N(0, η_enc² I).
    # With B = I − U₂W₂: z₁ − U₂z₂ ~ N(B m₁, σ₁² BBᵀ + U₂ diag(s²) U₂ᵀ), m₁ = W₁x, so per dimension j
    #   E[log q(z₁|x) − log p(z₁|z₂)]_j = −H_j + ½ log(2πη²) + E[(z₁ − U₂z₂)_j²]/(2η²),
    # and E_{z₁} KL(q(z₂|z₁) ‖ p(z₂))_k = ½[(E(W₂z₁)_k² + s_k²)/η_enc² − 1 − log(s_k²/η_enc²)].
    rng = np.random.default_rng(0)
    sigma1, s, eta, eta_enc, samples = 0.5, np.array([0.6, 0.9]), 0.8, 1.2, 4000
    model = build_model("hvae", "linear", x_dim=5, latent_dims=[3, 2], sigma1=sigma1, sigma2=list(s),
                        eta_dec=eta, eta_enc=eta_enc).double()
    w1, w2 = rng.normal(size=(3, 5)) * 0.5, rng.normal(size=(2, 3))
    u2 = 0.7 * w2.T + 0.3 * rng.normal(size=(3, 2))          # tr(U₂W₂) ≫ 0: the analytic KL would be far off
    assign(model.encoders[0].weight, w1)
    assign(model.encoders[1].weight, w2)
    assign(model.decoders[1].weight, u2)
    x = rng.normal(size=(40, 5))
    stats = collect_posterior(model, x, n_samples=samples)
    z1, z2 = stats.levels
    assert (z1.name, z1.kl_exact, z1.prior_std, z1.kl_samples) == ("z1", False, pytest.approx(eta), samples)
    assert (z2.name, z2.kl_exact, z2.prior_std) == ("z2", True, pytest.approx(eta_enc))

    m1 = x @ w1.T
    b = np.eye(3) - u2 @ w2
    mean_gap = m1 @ b.T
    var_gap = sigma1**2 * np.diag(b @ b.T) + np.diag(u2 @ np.diag(s**2) @ u2.T)
    entropy = 0.5 * np.log(2 * np.pi * np.e * sigma1**2)
    exact1 = -entropy + 0.5 * np.log(2 * np.pi * eta**2) + (mean_gap**2 + var_gap) / (2 * eta**2)
    # standard error of the S-sample mean: Var[(a)²/(2η²)] for a ~ N(m, v) is (2v² + 4m²v)/(4η⁴)
    error1 = np.sqrt((2 * var_gap**2 + 4 * mean_gap**2 * var_gap) / (4 * eta**4) / samples)
    assert np.all(np.abs(z1.kl - exact1) < 5 * error1), np.abs((z1.kl - exact1) / error1).max()

    a, v = m1 @ w2.T, sigma1**2 * np.diag(w2 @ w2.T)
    exact2 = 0.5 * ((a**2 + v + s**2) / eta_enc**2 - 1 - np.log(s**2 / eta_enc**2))
    error2 = np.sqrt((2 * v**2 + 4 * a**2 * v) / (4 * eta_enc**4) / samples)
    assert np.all(np.abs(z2.kl - exact2) < 5 * error2)
    # the analytic KL at the sampled z₂ would overstate level 1 by σ₁²·tr(U₂W₂)/η² nats per example
    # (tests/test_models_linear.py): far more than the error of the example-average, so the check has power
    bias = sigma1**2 * np.trace(u2 @ w2) / eta**2
    assert bias > 20 * np.sqrt((error1**2).sum()) / len(x)
    assert abs(z1.kl.sum(1).mean() - exact1.sum(1).mean()) < 5 * np.sqrt((error1**2).sum()) / len(x)
    # upper-level statistics are those of q(z₂|z₁) at the one stored sample of z₁
    np.testing.assert_allclose(z2.mean, z1.sample @ w2.T, rtol=1e-10)
    np.testing.assert_allclose(z2.var, np.tile(s**2, (40, 1)), rtol=1e-6)        # float32 buffers
    np.testing.assert_allclose(z1.var, sigma1**2, rtol=1e-6)


def test_the_pass_restores_training_flags_and_the_rng():
    model = build_model("hvae", "mlp", x_dim=6, latent_dims=[3, 2], hidden=[8])
    model.train()
    model.encoders[0].eval()                               # a submodule deliberately in another mode
    state = torch.get_rng_state()
    first = collect_posterior(model, data(50), batch_size=16)
    assert model.training and not model.encoders[0].training and model.decoders[0].training
    assert torch.equal(torch.get_rng_state(), state)
    again = collect_posterior(model, data(50), batch_size=50)          # batching does not change the pass
    # up to float32 rounding: the weights come from whatever state the global generator is in, and a mean
    # near 0 differs by ~1e-8 between batch sizes, which no relative tolerance alone absorbs
    np.testing.assert_allclose(first.levels[0].mean, again.levels[0].mean, rtol=1e-6, atol=1e-6)


# -- bring your own ------------------------------------------------------------------------------------
def assert_same(a: object, b: object, where: str = "report") -> None:
    """Equal structure and labels; numbers equal up to float32 rounding (exp(log_var) vs scale²)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6), where
    else:
        assert a == b, where


def test_normal_and_mean_log_var_encoders_give_the_same_report():
    encoder = MLPEncoder()

    def as_normal(xb: torch.Tensor) -> Normal:
        mu, log_var = encoder(xb)
        return Normal(mu, (0.5 * log_var).exp())

    x = data()

    def decoder(z: torch.Tensor):
        return torch.distributions.Independent(Normal(z @ torch.ones(3, 6), 1.0), 1)

    reports = [diagnose(enc, x, decoder, eta_enc=1.5, n_samples=64, mi_bootstrap=50) for enc in (encoder, as_normal)]
    first, second = (r.to_dict() for r in reports)
    assert first.keys() == second.keys()
    for key in ("n_examples", "importance_samples", "model"):
        assert first[key] == second[key]
    assert_same(first["levels"], second["levels"])
    np.testing.assert_allclose(reports[0].log_likelihood_per_example, reports[1].log_likelihood_per_example,
                               rtol=1e-5)
    assert reports[0].elbo == pytest.approx(reports[1].elbo, rel=1e-5)
    assert reports[0].log_likelihood >= reports[0].elbo


def test_diagnose_without_a_decoder_says_what_is_missing():
    report = diagnose(MLPEncoder(), Dataset(x=data()), mi_bootstrap=20)
    assert report.elbo is None and report.log_likelihood is None and report.importance_samples is None
    assert any("decoder" in note for note in report.notes)
    assert report.n_examples == 400 and report.levels[0].name == "z" and report.levels[0].kl_exact
    assert CollapseReport.from_dict(report.to_dict()).levels[0].kl_per_dim == report.kl_per_dim


@pytest.mark.parametrize("encoder, message", [
    (lambda xb: xb[:, :3], r"\(mu, log_var\) or a torch.distributions.Normal, got Tensor"),
    (lambda xb: (xb[:, :3], xb[:, :3], xb[:, :3]), "got tuple of length 3"),
    (lambda xb: (xb[:, :3], xb[:, :2]), r"mu \(.*, 3\) and log_var \(.*, 2\)"),
    (lambda xb: (xb[:1, :3], xb[:1, :3]), "expected"),
    (lambda xb: (xb[:, :3] * float("nan"), xb[:, :3]), "NaN"),
    (lambda xb: (xb[:, :3], "log_var"), "log_var of type str"),
    (lambda xb: Normal(xb[:, 0], 1.0), "shape"),
])
def test_bad_encoder_outputs_are_one_line_parameter_errors(encoder, message):
    with pytest.raises(ParameterError, match=message) as error:
        diagnose(encoder, torch.randn(20, 6))
    assert "\n" not in str(error.value) and "encoder" in str(error.value)


def test_bad_data_and_arguments_are_refused():
    with pytest.raises(DataError, match="row 3"):
        collect_from_encoder(MLPEncoder(), np.vstack([data(3), np.full((1, 6), np.nan)]))
    with pytest.raises(DataError, match="2-D"):
        collect_from_encoder(MLPEncoder(), np.zeros(6))
    with pytest.raises(ParameterError, match="eta_enc"):
        collect_from_encoder(MLPEncoder(), data(), eta_enc=0.0)
    with pytest.raises(ParameterError, match="callable"):
        diagnose("encoder", data())


# -- our models end to end -------------------------------------------------------------------------------
def test_diagnose_model_on_a_hierarchy():
    model = build_model("hvae", "linear", x_dim=6, latent_dims=[4, 2])
    report = diagnose_model(model, data(), n_samples=50, mi_bootstrap=20)
    assert [level.name for level in report.levels] == ["z1", "z2"]
    assert [level.kl_exact for level in report.levels] == [False, True]
    assert report.model["kind"] == "hvae" and report.model["latent_dims"] == [4, 2]
    assert report.log_likelihood >= report.elbo and report.importance_samples == 50
    assert any("paired Monte Carlo" in note for note in report.notes)
    for level in report.levels:
        assert level.rate == pytest.approx(sum(level.kl_per_dim))
        assert len(level.variable_types) == len(level.collapsed) == level.latent_dim
        assert level.mutual_info_minibatch <= level.mutual_info_ceiling + 0.1
    restored = CollapseReport.from_dict(report.to_dict())
    assert restored.level("z2").mutual_info == pytest.approx(report.level("z2").mutual_info)


def test_diagnose_model_takes_a_cvae_dataset_with_its_y():
    model = build_model("cvae", "linear", x_dim=2, y_dim=4, latent_dims=[2])
    rows = data()
    report = diagnose_model(model, Dataset(x=rows[:, :2], y=rows[:, 2:]), n_samples=20, mi_bootstrap=0)
    assert report.levels[0].mutual_info_ci == [] and report.log_likelihood is not None


def test_trained_linear_vae_has_as_many_active_units_as_the_theory_keeps(tmp_path):
    # the setting of tests/test_training_theory.py: eigenvalues 9, 4, 1, 0.25, ... with β = 0.5, η_dec = 1:
    # a dimension stays active iff its eigenvalue exceeds β η_dec² = 0.5, so 3 of 4. 100 epochs reach the
    # theory's active set and total rate; the split of the rate among the active dimensions (a slow rotation
    # inside the active subspace) converges later and is not what this test is about.
    cfg = RunConfig.parse({
        "data": {"spec": "gaussian:eigs=9:4:1:0.25:0.04:0.01,n=2000,seed=1,exact=1"},
        "model": {"arch": "linear", "kind": "vae", "latent_dims": [4]}, "objective": {"beta": 0.5},
        "optim": {"lr": 3e-2, "lr_schedule": "cosine"},
        "train": {"epochs": 100, "batch_size": 250, "progress": False, "seed": 0}})
    x = load_training_data(cfg).x
    prediction = predict_vae(Moments.from_data(x.double().numpy()), 4, beta=0.5)
    assert prediction.n_active == 3
    model = train(cfg, tmp_path / "run").model
    report = diagnose_model(model, x, n_samples=None, mi_bootstrap=0)
    level = report.levels[0]
    assert level.active_units == prediction.n_active, level.variance_of_mean
    assert level.n_collapsed == prediction.n_collapsed
    assert level.rate == pytest.approx(float(np.sum(prediction.kl_per_dim)), rel=0.01)
    assert min(level.kl_per_dim) < 0.01
    # the activity histogram is bimodal (docs/metrics.md §1): the threshold sits in a wide gap
    activity = np.sort(level.variance_of_mean)
    assert activity[0] < 1e-3 and activity[1] > 0.1
