"""Models beyond the linear theory: likelihoods, reparameterisation, conv blocks, hierarchies, registry.

The statistical checks of the linear models against the closed forms are in test_models_linear.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from collapsekit.data.dataset import Dataset
from collapsekit.data.views import quadrant_split
from collapsekit.errors import DataError, ParameterError
from collapsekit.models import (ARCHITECTURES, CVAE, MODEL_KINDS, VAE, AdditiveDecoder, AdditiveEncoder,
                                BernoulliLikelihood, ConvDecoder, ConvEncoder, GaussianLikelihood, HierarchicalVAE,
                                KeepColumns, LinearDecoder, LinearEncoder, MLPDecoder, MLPEncoder, QuadrantCanvas,
                                build_model, quadrant_columns)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- likelihoods -------------------------------------------------------------------------------------
def test_gaussian_log_prob_is_the_full_density():
    eta, mean, target = 0.7, torch.randn(3, 5, 4), torch.randn(5, 4)
    log_prob = GaussianLikelihood(eta_dec=eta)(mean).log_prob(target)
    expected = -((target - mean) ** 2).sum(-1) / (2 * eta**2) - 0.5 * 4 * math.log(2 * math.pi * eta**2)
    assert log_prob.shape == (3, 5)
    torch.testing.assert_close(log_prob, expected)


def test_gaussian_eta_dec_fixed_or_learnable():
    fixed = GaussianLikelihood(eta_dec=0.5)
    assert list(fixed.parameters()) == [] and fixed.eta_dec == pytest.approx(0.5) and not fixed.learnable
    learned = GaussianLikelihood(eta_dec=0.5, learn=True)
    assert learned.learnable and set(learned.state_dict()) == set(fixed.state_dict()) == {"log_eta_dec"}
    mean, target = torch.zeros(2, 3), torch.ones(2, 3)
    learned(mean).log_prob(target).sum().backward()
    # d/dlog η of Σ[−‖t−μ‖²/(2η²) − D·log η] = Σ(‖t−μ‖²/η² − D) = 2·(3/0.25 − 3)
    assert learned.log_eta_dec.grad is not None
    assert float(learned.log_eta_dec.grad) == pytest.approx(2 * (3 / 0.25 - 3))


@pytest.mark.parametrize("eta", [0.0, -1.0, float("nan"), "big"])
def test_gaussian_rejects_bad_eta(eta):
    with pytest.raises(ParameterError, match="eta_dec"):
        GaussianLikelihood(eta_dec=eta)


def test_bernoulli_log_prob_on_grey_targets_is_cross_entropy():
    logits, target = torch.randn(2, 3, 6), torch.rand(3, 6)        # targets in [0, 1], not binary
    log_prob = BernoulliLikelihood()(logits).log_prob(target)
    p = torch.sigmoid(logits)
    expected = (target * torch.log(p) + (1 - target) * torch.log(1 - p)).sum(-1)
    assert log_prob.shape == (2, 3)
    torch.testing.assert_close(log_prob, expected)


# -- reparameterisation and encoder stds -----------------------------------------------------------
def test_gradients_reach_the_encoder_through_the_samples():
    model = VAE(MLPEncoder(6, 3, hidden=(8,), std="data"), MLPDecoder(3, 6, hidden=(8,)), GaussianLikelihood())
    out = model(torch.randn(10, 6), n_samples=4)
    # Only the reconstruction term: the encoder is reached through z = mu + σ·ε alone.
    (-out.likelihood.log_prob(out.target).mean()).backward()
    for name, param in model.encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_fixed_std_never_moves_learnable_std_does():
    x = torch.randn(16, 5)
    for std, moves in (([0.3, 0.6, 0.9], False), ("learnable", True)):
        model = VAE(LinearEncoder(5, 3, std=std), LinearDecoder(3, 5), GaussianLikelihood())
        before = model.encoder.shared_std.std.detach().clone()
        optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
        out = model(x, n_samples=2)
        loss = -out.likelihood.log_prob(out.target).mean() + kl_divergence(
            out.levels[0].posterior, out.levels[0].prior).sum(-1).mean()
        loss.backward()
        optimiser.step()
        after = model.encoder.shared_std.std.detach()
        assert (not torch.equal(before, after)) is moves
        if not moves:
            torch.testing.assert_close(after, torch.tensor([0.3, 0.6, 0.9]))
        # the std is data-independent: every example gets the same posterior scale
        scale = model(x).levels[0].posterior.scale
        assert torch.equal(scale, scale[:1].expand_as(scale))


def test_encoder_std_kinds_and_errors():
    mu, log_var = MLPEncoder(4, 2, hidden=(5,), std="data")(torch.randn(3, 4))
    assert log_var.shape == (3, 2) and not torch.equal(log_var[0], log_var[1])
    assert MLPEncoder(4, 2, std=None)(torch.randn(3, 4))[1] is None
    with pytest.raises(ParameterError, match="std"):
        LinearEncoder(4, 2, std="data")
    with pytest.raises(ParameterError, match="std"):
        MLPEncoder(4, 2, std="sometimes")
    with pytest.raises(ParameterError, match="std"):
        LinearEncoder(4, 2, std=[1.0, -1.0])
    with pytest.raises(ParameterError, match="std has 3 values"):
        LinearEncoder(4, 2, std=[1.0, 1.0, 1.0])


def test_mean_activations_express_the_paper_networks():
    x = torch.randn(50, 8)
    relu_mu, _ = MLPEncoder(8, 4, hidden=(16,), std="learnable", mean_activation="relu")(x)   # note (d)
    tanh_mu, _ = MLPEncoder(8, 4, hidden=(16,), std="data", mean_activation="tanh")(x)        # note (e)
    assert (relu_mu >= 0).all() and (relu_mu == 0).any() and (tanh_mu.abs() < 1).all()


# -- conv blocks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [8, 28, 14, 7])
def test_conv_blocks_shapes_keep_sample_dims(side):
    encoder, decoder = ConvEncoder(side, 3, std="data"), ConvDecoder(3, side)
    mu, log_var = encoder(torch.rand(2, 5, side * side))
    assert mu.shape == log_var.shape == (2, 5, 3)
    assert decoder(mu).shape == (2, 5, side * side)


def test_conv_blocks_gradcheck():
    encoder = ConvEncoder(8, 2, channels=(2, 3), std="data", activation="tanh").double()
    decoder = ConvDecoder(2, 8, channels=(2, 3), activation="tanh").double()
    x = torch.rand(2, 64, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: encoder(t), (x,))
    assert torch.autograd.gradcheck(lambda t: decoder(t), (z,))


def test_conv_vae_learns_a_fixed_batch():
    # images with 3 degrees of freedom: mixtures of smooth patterns
    grid = torch.linspace(0, 1, 8)
    patterns = torch.stack([torch.outer(torch.sin(3 * grid), torch.cos(2 * grid)), torch.outer(grid, grid),
                            torch.outer(1 - grid, grid)]).reshape(3, 64)
    x = torch.rand(32, 3) @ patterns
    model = build_model("vae", "conv", x_dim=64, latent_dims=[4], channels=(8, 8), encoder_std="data",
                        eta_dec=0.1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def error() -> float:   # of the decoded posterior mean
        with torch.no_grad():
            return float(((model.decoder(model.encoder(x)[0]) - x) ** 2).sum(-1).mean())

    start = error()
    for _ in range(60):
        out = model(x)
        loss = -out.likelihood.log_prob(out.target).mean() + kl_divergence(
            out.levels[0].posterior, out.levels[0].prior).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert error() < 0.3 * start


def test_quadrant_plumbing_matches_the_data_view():
    images = np.random.default_rng(0).random((3, 8 * 8))
    split = quadrant_split(Dataset(x=images, image_shape=(8, 8), name="t"))
    columns = quadrant_columns(8)
    np.testing.assert_array_equal(images[:, columns.numpy()], split.y)
    canvas = QuadrantCanvas(8)(torch.as_tensor(split.y)).numpy()
    np.testing.assert_array_equal(canvas[:, columns.numpy()], split.y)
    x_quadrant = np.arange(64).reshape(8, 8)[4:, :4].ravel()
    assert (canvas[:, x_quadrant] == 0).all()
    keep = KeepColumns(ConvDecoder(3, 8), columns)
    assert keep(torch.randn(2, 5, 3)).shape == (2, 5, 48)


# -- CVAE structure ------------------------------------------------------------------------------------
def test_cvae_data_dependent_std_sums_branch_log_vars():
    xb, yb = MLPEncoder(3, 2, hidden=(4,), std="data"), MLPEncoder(5, 2, hidden=(4,), std="data")
    encoder = AdditiveEncoder(xb, yb)
    x, y = torch.randn(6, 3), torch.randn(6, 5)
    mu, log_var = encoder(x, y)
    torch.testing.assert_close(mu, xb(x)[0] + yb(y)[0])
    torch.testing.assert_close(log_var, xb(x)[1] + yb(y)[1])
    with pytest.raises(ParameterError, match="std"):
        AdditiveEncoder(xb, yb, std="learnable")           # branches already have log-vars
    with pytest.raises(ParameterError, match="std"):
        AdditiveEncoder(LinearEncoder(3, 2, std=None), LinearEncoder(5, 2, std=None))


def test_cvae_decoder_adds_x_and_z_branches_and_targets_y():
    f, g = LinearDecoder(3, 5), LinearDecoder(2, 5)
    model = CVAE(AdditiveEncoder(LinearEncoder(3, 2, std=None), LinearEncoder(5, 2, std=None), std=0.5),
                 AdditiveDecoder(f, g), GaussianLikelihood())
    x, y = torch.randn(4, 3), torch.randn(4, 5)
    out = model(x, y, n_samples=7)
    assert torch.equal(out.target, y)
    torch.testing.assert_close(out.likelihood.mean, f(x) + g(out.levels[0].sample))
    assert model.generate(x, n_samples=2).batch_shape == (2, 4)


# -- hierarchy -------------------------------------------------------------------------------------------
def three_level(eta_dec_latent=1.0, likelihood=None):
    dims = (5, 4, 3)
    encoders = [MLPEncoder(10, 5, hidden=(8,), std=0.5), MLPEncoder(5, 4, hidden=(8,), std="learnable"),
                MLPEncoder(4, 3, hidden=(8,), std="data")]
    decoders = [MLPDecoder(5, 10, hidden=(8,)), MLPDecoder(4, 5, hidden=(8,)), MLPDecoder(3, 4, hidden=(8,))]
    return HierarchicalVAE(encoders, decoders, likelihood or GaussianLikelihood(), eta_enc=1.5,
                           eta_dec_latent=eta_dec_latent), dims


def test_hierarchy_shapes_and_ancestral_sampling():
    model, dims = three_level(eta_dec_latent=[0.3, 0.6])
    out = model(torch.randn(6, 10), n_samples=4)
    assert model.latent_dims == dims and [lvl.name for lvl in out.levels] == ["z1", "z2", "z3"]
    for level, d in zip(out.levels, dims):
        assert level.sample.shape == (4, 6, d)
        assert torch.broadcast_shapes(level.prior.batch_shape, (4, 6, d)) == (4, 6, d)
    assert out.levels[0].posterior.loc.shape == (6, 5)
    assert out.levels[1].posterior.loc.shape == (4, 6, 4)
    # Upper posteriors are functions of the lower *sample*: different draws of z1 give different q(z2|z1).
    loc2 = out.levels[1].posterior.loc
    assert not torch.allclose(loc2[0], loc2[1])
    torch.testing.assert_close(loc2, model.encoders[1](out.levels[0].sample)[0])
    # Lower priors are centred on the decoded sample above, with their own fixed η.
    torch.testing.assert_close(out.levels[0].prior.loc, model.decoders[1](out.levels[1].sample))
    assert out.levels[1].prior.scale.unique().tolist() == pytest.approx([0.6])
    assert out.levels[2].prior.scale.tolist() == pytest.approx([1.5] * 3)
    assert out.likelihood.batch_shape == (4, 6)
    assert model.generate(3).batch_shape == (3,)


def test_hierarchy_can_share_a_learnable_eta_dec():
    model, _ = three_level(eta_dec_latent="likelihood", likelihood=GaussianLikelihood(0.8, learn=True))
    out = model(torch.randn(6, 10), n_samples=2)
    assert model.eta_dec_latent == pytest.approx((0.8, 0.8))
    # only the latent conditionals: the gradient reaches η_dec through them
    out.levels[0].prior.log_prob(out.levels[0].sample).sum().backward()
    assert model.likelihood.log_eta_dec.grad is not None
    with pytest.raises(ParameterError, match="eta_dec_latent"):
        three_level(eta_dec_latent="likelihood", likelihood=BernoulliLikelihood())


def test_hierarchy_needs_two_levels():
    with pytest.raises(ParameterError, match="encoders"):
        HierarchicalVAE([LinearEncoder(4, 2)], [LinearDecoder(2, 4)], GaussianLikelihood())
    with pytest.raises(ParameterError, match="decoders"):
        HierarchicalVAE([LinearEncoder(4, 2), LinearEncoder(2, 1)], [LinearDecoder(2, 4)], GaussianLikelihood())


# -- forward-pass input errors ---------------------------------------------------------------------------
def test_forward_input_errors():
    vae = VAE(LinearEncoder(4, 2), LinearDecoder(2, 4), GaussianLikelihood())
    with pytest.raises(DataError, match="no y"):
        vae(torch.randn(3, 4), torch.randn(3, 2))
    with pytest.raises(DataError, match="features"):
        vae(torch.randn(3, 5))
    with pytest.raises(DataError, match="shape"):
        vae(torch.randn(4))
    with pytest.raises(ParameterError, match="n_samples"):
        vae(torch.randn(3, 4), n_samples=0)
    with pytest.raises(DataError, match="features"):       # decoder does not produce the target's size
        VAE(LinearEncoder(4, 2), LinearDecoder(2, 3), GaussianLikelihood())(torch.randn(3, 4))
    cvae = build_model("cvae", "linear", x_dim=3, y_dim=4, latent_dims=2)
    with pytest.raises(DataError, match="needs the output y"):
        cvae(torch.randn(2, 3))
    with pytest.raises(DataError, match="rows"):
        cvae(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(ParameterError, match="latent_dim"):
        VAE(torch.nn.Identity(), LinearDecoder(2, 4), GaussianLikelihood())


# -- registry ----------------------------------------------------------------------------------------------
def registry_sizes(kind: str, side: int) -> dict:
    half = side // 2
    sizes = {"vae": dict(x_dim=side * side, latent_dims=[3]),
             "cvae": dict(x_dim=half * half, y_dim=3 * half * half, latent_dims=[3]),
             "hvae": dict(x_dim=side * side, latent_dims=[4, 3])}
    return sizes[kind]


@pytest.mark.parametrize("side", [8, 28])
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_registry_builds_and_runs_every_combination(kind, arch, side):
    sizes = registry_sizes(kind, side)
    variants = [dict(), dict(likelihood="bernoulli")]
    if arch != "linear":
        variants.append(dict(encoder_std="data", sigma2="data", mean_activation="tanh", learn_eta_dec=True))
    for extra in variants:
        model = build_model(kind, arch, hidden=(16,), channels=(4, 4), **sizes, **extra)
        x = torch.rand(3, sizes["x_dim"])
        y = torch.rand(3, sizes["y_dim"]) if kind == "cvae" else None
        out = model(x, y, n_samples=2)
        assert model.latent_dims == tuple(sizes["latent_dims"])
        assert [lvl.sample.shape[-1] for lvl in out.levels] == sizes["latent_dims"]
        assert out.likelihood.log_prob(out.target).shape == (2, 3)
        assert torch.isfinite(out.likelihood.log_prob(out.target)).all()
        rebuilt = build_model(**model.config)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
            {k: v.shape for k, v in model.state_dict().items()}


def test_registry_conv_cvae_with_an_image_output():
    model = build_model("cvae", "conv", x_dim=10, y_dim=64, latent_dims=2, encoder_std="data")
    assert model.config["image_side"] == 8
    assert model(torch.rand(2, 10), torch.rand(2, 64)).likelihood.batch_shape == (1, 2)


@pytest.mark.parametrize("kwargs, field", [
    (dict(kind="gan", arch="mlp", x_dim=4, latent_dims=2), "kind"),
    (dict(kind="vae", arch="resnet", x_dim=4, latent_dims=2), "arch"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, likelihood="poisson"), "likelihood"),
    (dict(kind="vae", arch="mlp", x_dim=0, latent_dims=2), "x_dim"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=0), "latent_dims"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=[2, 2]), "latent_dims"),
    (dict(kind="hvae", arch="mlp", x_dim=4, latent_dims=[2]), "latent_dims"),
    (dict(kind="cvae", arch="mlp", x_dim=4, latent_dims=2), "y_dim"),
    (dict(kind="vae", arch="mlp", x_dim=4, y_dim=3, latent_dims=2), "y_dim"),
    (dict(kind="vae", arch="conv", x_dim=50, latent_dims=2), "image_side"),
    (dict(kind="vae", arch="conv", x_dim=64, image_side=7, latent_dims=2), "image_side"),
    (dict(kind="cvae", arch="conv", x_dim=16, y_dim=40, image_side=8, latent_dims=2), "image_side"),
    (dict(kind="vae", arch="linear", x_dim=4, latent_dims=2, encoder_std="data"), "encoder_std"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, encoder_std=-1.0), "encoder_std"),
    (dict(kind="hvae", arch="mlp", x_dim=4, latent_dims=[2, 2], sigma1=0.0), "sigma1"),
    (dict(kind="hvae", arch="linear", x_dim=4, latent_dims=[2, 2], sigma2="data"), "sigma2"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, eta_enc=0), "eta_enc"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, eta_dec=-2), "eta_dec"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, likelihood="bernoulli", learn_eta_dec=True), "learn_eta_dec"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, likelihood="bernoulli", out_activation="sigmoid"),
     "out_activation"),
    (dict(kind="vae", arch="linear", x_dim=4, latent_dims=2, mean_activation="relu"), "mean_activation"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, activation="swish"), "activation"),
    (dict(kind="vae", arch="mlp", x_dim=4, latent_dims=2, hidden=[16, 0]), "hidden"),
    (dict(kind="vae", arch="conv", x_dim=64, latent_dims=2, channels=[4]), "channels"),
])
def test_registry_rejects_impossible_combinations(kwargs, field):
    with pytest.raises(ParameterError, match=field) as info:
        build_model(**kwargs)
    assert "\n" not in str(info.value)


def test_isotropic_gaussian_is_the_independent_normal_it_replaces():
    from torch.distributions import Independent, Normal

    from collapsekit.models import GaussianLikelihood, IsotropicGaussian

    torch.manual_seed(0)
    mean, target = torch.randn(3, 5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    likelihood = GaussianLikelihood(eta_dec=0.7, learn=True).double()
    fast = likelihood(mean)
    reference = Independent(Normal(mean, likelihood.scale.expand_as(mean)), 1)
    assert isinstance(fast, IsotropicGaussian) and fast.event_shape == (7,) and fast.batch_shape == (3, 5)
    torch.testing.assert_close(fast.log_prob(target), reference.log_prob(target))
    torch.testing.assert_close(fast.entropy(), reference.entropy())
    torch.testing.assert_close(fast.variance, reference.variance)
    # the gradient reaches the learnable η_dec as it does through Normal
    (grad_fast,) = torch.autograd.grad(fast.log_prob(target).sum(), likelihood.log_eta_dec)
    (grad_ref,) = torch.autograd.grad(reference.log_prob(target).sum(), likelihood.log_eta_dec)
    torch.testing.assert_close(grad_fast, grad_ref)
    # samples have the right moments
    samples = IsotropicGaussian(torch.zeros(7, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)).rsample(
        (20000,))
    assert samples.shape == (20000, 7) and abs(float(samples.std()) - 0.7) < 0.01 and abs(float(samples.mean())) < 0.01
