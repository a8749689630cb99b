"""diagnose on data as users hold it (issue 12): loaders, generators, inputs and latents of any shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal
from torch.utils.data import DataLoader, TensorDataset

from collapsekit.adapters import FunctionAdapter
from collapsekit.diagnostics import CollapseReport, diagnose, diagnose_model
from collapsekit.errors import DataError
from collapsekit.models import build_model
from collapsekit.viz.html import render_html
from collapsekit.viz.markdown import render_markdown


@pytest.fixture(scope="module")
def vae_and_data():
    torch.manual_seed(0)
    model = build_model("vae", "mlp", x_dim=6, latent_dims=[3], eta_dec=0.5, eta_enc=0.8)
    return model, torch.randn(300, 6)


def test_a_model_of_ours_through_its_adapter_agrees_with_diagnose_model(vae_and_data):
    """The streamed adapter path and diagnose_model: the same posterior measures (deterministic), and
    log-likelihoods from other samples whose per-example differences average to 0 within 4 standard errors."""
    model, x = vae_and_data
    streamed = diagnose(model, x, n_samples=300)
    reference = diagnose_model(model, x, n_samples=300)
    np.testing.assert_allclose(streamed.kl_per_dim, reference.kl_per_dim, rtol=1e-6)
    np.testing.assert_allclose(streamed.levels[0].variance_of_mean, reference.levels[0].variance_of_mean, rtol=1e-6)
    assert streamed.n_active == reference.n_active and streamed.model["eta_enc"] == pytest.approx(0.8)
    difference = streamed.log_likelihood_per_example - reference.log_likelihood_per_example
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / math.sqrt(len(difference))
    assert (streamed.log_likelihood_per_example >= streamed.elbo_per_example - 1e-9).all()


def test_a_loader_a_list_and_a_one_shot_generator_give_the_same_diagnosis(vae_and_data):
    model, x = vae_and_data
    tensor = diagnose(model, x, n_samples=50, batch_size=40)
    loader = diagnose(model, DataLoader(TensorDataset(x), batch_size=40, shuffle=False), n_samples=50)
    generator = diagnose(model, ({"x": x[i:i + 40]} for i in range(0, 300, 40)), n_samples=50)
    for other in (loader, generator):
        np.testing.assert_array_equal(other.kl_per_dim, tensor.kl_per_dim)
        np.testing.assert_array_equal(other.log_likelihood_per_example, tensor.log_likelihood_per_example)
        assert other.mutual_info == tensor.mutual_info and other.n_examples == 300
    with pytest.raises(DataError, match="no examples"):
        diagnose(model, iter([]))
    with pytest.raises(DataError, match="NaN"):
        diagnose(model, [x[:5], torch.full((5, 6), float("nan"))])


class SpatialEncoder(torch.nn.Module):
    """q(z|x) over a (C=3, 4, 4) latent with known KLs: channel 0 carries the input (μ = x), channel 1 has a
    constant μ = 0.1 at every position (KL 0.005 nats per position, 0.08 for the channel), channel 2 is the
    prior (KL 0: collapsed)."""

    def forward(self, x):
        b = x.shape[0]
        mu = torch.zeros(b, 3, 4, 4)
        mu[:, 0] = x[:, 0]
        mu[:, 1] = 0.1
        return mu, torch.zeros_like(mu)


def test_spatial_latents_are_reported_per_channel_and_per_position():
    torch.manual_seed(2)
    x = torch.randn(64, 1, 4, 4)                                      # images, N × C × H × W
    decoder = lambda z: Independent(Normal(z[:, :1], 1.0), 3)        # noqa: E731
    report = diagnose(FunctionAdapter(SpatialEncoder(), decoder), x, n_samples=20)
    level = report.levels[0]
    assert level.latent_shape == [3, 4, 4] and level.latent_dim == 48
    expected_channel_0 = float((0.5 * x[:, 0] ** 2).mean(0).sum())
    np.testing.assert_allclose(level.kl_per_channel, [expected_channel_0, 16 * 0.005, 0.0], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.sum(level.kl_per_position), sum(level.kl_per_channel), rtol=1e-12)
    assert np.shape(level.kl_per_position) == (4, 4)
    # each position of channel 1 is below the 0.01-nat rule, the channel (their sum) is above it
    assert level.active_channels == [True, True, False] and report.n_active == 2
    assert sum(level.active[16:32]) == 0
    assert any("headline count is of channels" in note for note in report.notes)
    again = CollapseReport.from_dict(report.to_dict())
    assert again.n_active == 2 and again.levels[0].kl_per_channel == level.kl_per_channel
    assert report.to_dict()["latent_size"] == 3
    text = render_markdown(report)                    # the reports count channels, and list them
    assert "2 of 3 channels of z active" in text and "latent shape 3×4×4" in text
    assert "| 2 | 0 | **collapsed** |" in text and "# Posterior-collapse report: custom model" in text
    page = render_html(report)
    assert "2 of 3 channels of z active" in page and "<td>2</td><td>0</td><td><b>collapsed</b></td>" in page


def test_the_full_dataset_mutual_information_subsamples_large_n_and_says_so(vae_and_data):
    model, x = vae_and_data
    report = diagnose(model, x, n_samples=None, mutual_info_examples=100)
    assert report.mutual_info <= math.log(100) + 1e-9
    assert any("random subset of 100 of the 300 examples" in note for note in report.notes)
    assert not any("random subset" in note for note in diagnose(model, x, n_samples=None).notes)
