"""diffusers' AutoencoderKL (issue 12): small models built from a config and trained here (no download),
diagnosed per channel and per position, with the stated likelihood stand-in. Skipped without diffusers
(``make test`` installs it: the ``diffusers`` extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optional import require

require("diffusers")

from diffusers import AutoencoderKL  # noqa: E402
from diffusers_models import CONFIG, IMAGES, train_autoencoder_kl  # noqa: E402

from collapsekit.adapters import as_adapter  # noqa: E402
from collapsekit.adapters.diffusers import THEORY_SKIPPED, DiffusersAdapter  # noqa: E402
from collapsekit.diagnostics import diagnose  # noqa: E402
from collapsekit.errors import ParameterError  # noqa: E402

@pytest.fixture(scope="module")
def images():
    return IMAGES


@pytest.fixture(scope="module")
def trained():
    """An AutoencoderKL (8×8 images → 4 × 4 × 4 latents) trained 80 steps with L1 + 1e-2·KL (~5 s)."""
    model, _ = train_autoencoder_kl(1e-2)
    return model.eval()


def _kl_per_channel(model, x):
    """The reference: diffusers' own posterior, KL to N(0, I) per element, summed over positions."""
    with torch.no_grad():
        q = model.encode(x).latent_dist
    kl = 0.5 * (q.mean**2 + q.var - 1 - q.logvar)
    return kl.double().mean(0).sum((1, 2)).numpy()


def test_per_channel_kl_is_the_sum_over_positions_of_diffusers_own_posterior(trained, images):
    x = images[1500:1700]
    report = diagnose(trained, x, n_samples=10, batch_size=100)
    level = report.levels[0]
    assert report.model["name"] == "diffusers AutoencoderKL" and level.latent_shape == [4, 4, 4]
    np.testing.assert_allclose(level.kl_per_channel, _kl_per_channel(trained, x), rtol=1e-5)
    assert np.shape(level.kl_per_position) == (4, 4)
    assert level.n_active_channels == report.n_active == 4                # a healthy model: every channel in use
    assert THEORY_SKIPPED in report.notes
    assert any(note.startswith("likelihood stand-in") and "Laplace" in note and "fitted" in note
               for note in report.notes)
    assert (report.log_likelihood_per_example >= report.elbo_per_example - 1e-9).all()


def test_a_channel_planted_at_the_prior_is_reported_collapsed(trained, images):
    """Zero the rows of quant_conv that give channel 2's mean and log-variance: q(z_2|x) = N(0, I), the
    prior, at every position — its KL is 0 and it is the one collapsed channel."""
    planted = AutoencoderKL(**CONFIG)
    planted.load_state_dict(trained.state_dict())
    with torch.no_grad():
        for row in (2, 2 + CONFIG["latent_channels"]):                   # moments: means, then log-variances
            planted.quant_conv.weight[row] = 0.0
            planted.quant_conv.bias[row] = 0.0
    level = diagnose(planted, images[1500:1600], n_samples=None).levels[0]
    assert level.active_channels == [True, True, False, True] and level.kl_per_channel[2] < 1e-9
    np.testing.assert_allclose(np.delete(level.kl_per_channel, 2),
                               np.delete(_kl_per_channel(trained, images[1500:1600]), 2), rtol=1e-5)


def test_the_likelihood_stand_in_is_stated_and_fitted_by_maximum_likelihood(trained, images):
    """The Laplace scale is mean |x − x̂| (its maximum-likelihood value) on the first batch; the fitted scale
    scores those reconstructions higher than half or twice of it; a Gaussian stand-in and none are asked by
    name."""
    x = images[1500:1564]
    adapter = as_adapter(trained)
    assert isinstance(adapter, DiffusersAdapter) and adapter.scale is None and adapter.beta is None
    with torch.no_grad():
        adapter.posterior(x)
        residual = x - trained.decode(trained.encode(x).latent_dist.mean).sample
        scores = [torch.distributions.Laplace(0.0, factor * adapter.scale).log_prob(residual).sum().item()
                  for factor in (0.5, 1.0, 2.0)]
    assert adapter.scale == pytest.approx(float(residual.abs().mean()), rel=1e-5) and adapter.fitted_on == 64
    assert scores[1] > max(scores[0], scores[2])
    gaussian = as_adapter(trained, likelihood="gaussian", scale=0.2, beta=1e-6)
    assert gaussian.beta == 1e-6 and any("Gaussian" in note and "given" in note for note in gaussian.notes)
    report = diagnose(trained, x, n_samples=10, adapter_options={"likelihood": None})
    assert report.log_likelihood is None and any("no likelihood" in note for note in report.notes)
    with pytest.raises(ParameterError, match="likelihood must be one of"):
        as_adapter(trained, likelihood="l1")
