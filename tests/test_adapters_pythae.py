"""Pythae (issue 12): models trained by Pythae's own trainer, diagnosed through the adapter and monitored by
the callback. Skipped where Pythae is not installed (``make test`` installs it: the ``pythae`` extra)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from optional import require
from torch.distributions import Bernoulli, Independent
from torch.utils.data import DataLoader

pythae = require("pythae")

from pythae.data.datasets import BaseDataset  # noqa: E402
from pythae.models import VAMP, VAE, BetaVAE, BetaVAEConfig, VAEConfig, VAMPConfig  # noqa: E402
from pythae.trainers import BaseTrainer, BaseTrainerConfig  # noqa: E402

from collapsekit.adapters import as_adapter  # noqa: E402
from collapsekit.data.digits import load_digits  # noqa: E402
from collapsekit.diagnostics import diagnose  # noqa: E402
from collapsekit.errors import ParameterError  # noqa: E402
from collapsekit.integrations.pythae import PythaeCollapseMonitor  # noqa: E402

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return torch.tensor(load_digits().x, dtype=torch.float32).reshape(-1, *SHAPE)      # 1797 images in [0, 1]


def _dataset(x):
    return BaseDataset(x, torch.zeros(len(x)))


def _train(model, x, tmp_path, epochs=4, callbacks=None, learning_rate=1e-3, eval_x=None):
    logging.getLogger("pythae").setLevel(logging.ERROR)
    config = BaseTrainerConfig(output_dir=str(tmp_path), num_epochs=epochs, learning_rate=learning_rate,
                               per_device_train_batch_size=64, per_device_eval_batch_size=64)
    BaseTrainer(model, _dataset(x), eval_dataset=None if eval_x is None else _dataset(eval_x),
                training_config=config, callbacks=callbacks).train()
    return model


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A Bernoulli ('bce') VAE with 4 latents, trained by Pythae for 4 epochs on 1500 digits (~2 s)."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_dim=SHAPE, latent_dim=4, reconstruction_loss="bce"))
    return _train(model, digits[:1500], tmp_path_factory.mktemp("pythae"))


def _by_hand(model):
    """What a user writes for the generic API: Pythae's encoder and decoder as callables."""
    def encoder(x):
        out = model.encoder(x)
        return out["embedding"], out["log_covariance"]

    def decoder(z):
        probs = model.decoder(z)["reconstruction"].clamp(1e-7, 1 - 1e-7)
        return Independent(Bernoulli(probs=probs, validate_args=False), 3, validate_args=False)

    def flat_decoder(z):
        probs = model.decoder(z)["reconstruction"].reshape(len(z), -1).clamp(1e-7, 1 - 1e-7)
        return Independent(Bernoulli(probs=probs, validate_args=False), 1, validate_args=False)

    return encoder, decoder, flat_decoder


def test_the_diagnosis_through_the_adapter_equals_the_generic_apis(trained, digits):
    """diagnose(pythae_model, loader) against diagnose(encoder, data, decoder) written by hand: on the same
    batches (images, streamed) every number is the same; against the original (N, D) path the posterior
    measures are equal and the log-likelihoods, drawn with other samples, agree within Monte Carlo error."""
    x = digits[1500:1700]
    loader = DataLoader(_dataset(x), batch_size=50)
    adapted = diagnose(trained, loader, n_samples=200)
    assert adapted.model["name"] == "pythae VAE" and adapted.model["beta"] == 1.0 and adapted.n_examples == 200
    assert any("Bernoulli" in note for note in adapted.notes)
    encoder, decoder, flat_decoder = _by_hand(trained)
    streamed = diagnose(encoder, x, decoder, n_samples=200, batch_size=50)
    np.testing.assert_allclose(adapted.kl_per_dim, streamed.kl_per_dim, rtol=1e-12)
    np.testing.assert_allclose(adapted.log_likelihood_per_example, streamed.log_likelihood_per_example, rtol=1e-12)
    assert adapted.mutual_info == streamed.mutual_info and adapted.n_active == streamed.n_active == 4

    rows = diagnose(encoder, x.reshape(200, -1), flat_decoder, n_samples=200)          # the original path
    np.testing.assert_allclose(adapted.kl_per_dim, rows.kl_per_dim, rtol=1e-6)
    np.testing.assert_allclose(adapted.levels[0].variance_of_mean, rows.levels[0].variance_of_mean, rtol=1e-6)
    difference = adapted.log_likelihood_per_example - rows.log_likelihood_per_example
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / np.sqrt(len(difference))


def _pythae_nll(model, x, samples):
    """Pythae's own importance-sampled estimate per example (get_nll draws `batch_size` samples when
    n_samples ≤ batch_size, so both are set to `samples`)."""
    model.eval()
    with torch.no_grad():
        torch.manual_seed(123)
        return np.array([model.get_nll(x[i:i + 1], n_samples=samples, batch_size=samples) for i in range(len(x))])


def test_our_importance_sampled_log_likelihood_agrees_with_pythaes_estimate(trained, digits):
    """Both estimate log p(x) with S = 300 samples from the same q(z|x), independently: the per-example
    differences have mean 0. Statistic: their mean over 200 examples is within 4 standard errors of 0.
    A planted defect (the prior taken as N(0, 1.5² I)) is caught by the same statistic."""
    x = digits[1500:1700]
    theirs = _pythae_nll(trained, x, 300)
    ours = diagnose(trained, x, n_samples=300).log_likelihood_per_example
    difference = ours - theirs
    standard_error = difference.std(ddof=1) / np.sqrt(len(difference))
    assert abs(difference.mean()) < 4 * standard_error, (difference.mean(), standard_error)
    wrong = as_adapter(trained)
    wrong.prior_std = 1.5
    planted = diagnose(wrong, x, n_samples=300).log_likelihood_per_example - theirs
    assert abs(planted.mean()) > 4 * planted.std(ddof=1) / np.sqrt(len(planted))


def test_the_callback_monitors_pythaes_trainer_and_leaves_the_model_as_found(digits, tmp_path):
    """With the callback, Pythae trains exactly the weights it trains without it (the hook only reads, the
    monitor draws nothing from the global generator) and the hook is gone afterwards; each epoch counts the
    training examples only (not the evaluation passes). Then one more epoch at learning rate 0: the
    monitor's per-dimension KL over the epoch equals the diagnosis of the same weights on the same data."""
    x, held_out = digits[:640], digits[1500:1564]
    weights = []
    monitor = PythaeCollapseMonitor(warn=False)
    for callbacks in ([monitor], None):
        torch.manual_seed(1)
        model = VAE(VAEConfig(input_dim=SHAPE, latent_dim=3, reconstruction_loss="bce"))
        _train(model, x, tmp_path / str(len(weights)), epochs=3, callbacks=callbacks, eval_x=held_out)
        weights.append(model.state_dict())
        assert not model.encoder._forward_hooks
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    assert [record["epoch"] for record in monitor.monitor.history] == [1, 2, 3]
    assert all(record["levels"]["z"]["examples"] == 640 for record in monitor.monitor.history)
    assert monitor.steps == 3 * 10 and monitor.monitor.hyper == {"beta": 1.0}
    logs = {"train_epoch_loss": 1.0}                       # what Pythae's logging callbacks get, after the last epoch
    monitor.on_log(None, logs)
    last = monitor.monitor.history[-1]["levels"]["z"]
    assert logs["train_collapse_z_n_active"] == last["n_active"] and logs["train_collapse_z_kl"] == last["kl"]

    observer = PythaeCollapseMonitor(warn=False)
    _train(model, x, tmp_path / "observe", epochs=1, callbacks=[observer], learning_rate=0.0)
    measured = diagnose(model, x, n_samples=None)
    np.testing.assert_allclose(observer.monitor.history[-1]["levels"]["z"]["kl_per_dim"], measured.kl_per_dim,
                               rtol=1e-4)


def test_the_kl_weight_is_read_and_models_outside_the_family_are_refused():
    beta_vae = BetaVAE(BetaVAEConfig(input_dim=SHAPE, latent_dim=2, beta=4.0))
    assert as_adapter(beta_vae).beta == 4.0 and as_adapter(beta_vae, beta=2.0).beta == 2.0
    with pytest.raises(ParameterError, match="VampPrior"):
        as_adapter(VAMP(VAMPConfig(input_dim=SHAPE, latent_dim=2)))


FAMILIES = {"VAE": 1.0, "BetaVAE": 1.0, "DisentangledBetaVAE": 10.0, "BetaTCVAE": None, "FactorVAE": 1.0,
            "INFOVAE_MMD": 1.0, "MSSSIM_VAE": 1.0, "IWAE": None, "MIWAE": None, "PIWAE": None, "CIWAE": None}
REFUSED = {"VAMP": "VAMPConfig", "VAE_IAF": "VAE_IAF_Config", "VAE_LinNF": "VAE_LinNF_Config", "HVAE": "HVAEConfig",
           "RHVAE": "RHVAEConfig", "SVAE": "SVAEConfig", "PoincareVAE": "PoincareVAEConfig", "AE": "AEConfig"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_supported_family_reads_its_encoder_its_likelihood_and_its_kl_weight(family):
    """Each family's adapter gives the encoder's own N(embedding, exp(log_covariance)) and the decoder's unit
    Gaussian log-density (Pythae's 'mse' loss, −½‖x − x̂‖² − D/2·log 2π) at the same z."""
    import pythae.models as models

    config = getattr(models, family + ("_Config" if family == "INFOVAE_MMD" else "Config"))
    torch.manual_seed(0)
    model = getattr(models, family)(config(input_dim=SHAPE, latent_dim=3))
    adapter = as_adapter(model)
    assert adapter.beta == FAMILIES[family] and adapter.name == f"pythae {family}"
    x = torch.rand(5, *SHAPE)
    with torch.no_grad():
        q = adapter.posterior(x)
        out = model.encoder(x)
        torch.testing.assert_close(q.loc, out["embedding"])
        torch.testing.assert_close(q.scale ** 2, out["log_covariance"].exp())
        reconstruction = model.decoder(q.loc)["reconstruction"]
        expected = -0.5 * ((x - reconstruction) ** 2).sum((1, 2, 3)) - 32 * np.log(2 * np.pi)
        torch.testing.assert_close(adapter.decode(q.loc).log_prob(x), expected)


@pytest.mark.parametrize("family", sorted(REFUSED))
def test_models_without_the_encoders_gaussian_against_a_standard_prior_are_refused(family):
    import pythae.models as models

    model = getattr(models, family)(getattr(models, REFUSED[family])(input_dim=SHAPE, latent_dim=3))
    with pytest.raises(ParameterError, match=f"pythae {family} is not supported"):
        as_adapter(model)
