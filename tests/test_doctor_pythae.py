"""The doctor on Pythae models trained by Pythae's own trainer (issue 12 §2): the effective β read from Pythae's
own loss is the β of its configuration (1 for the VAE, 4 for a BetaVAE with beta=4), and the checks pass a model
Pythae trained. Skipped where Pythae is not installed (``make test`` installs it)."""

from __future__ import annotations

import logging

import pytest
import torch
from optional import require

require("pythae")

from pythae.data.datasets import BaseDataset  # noqa: E402
from pythae.models import VAE, BetaVAE, BetaVAEConfig, VAEConfig  # noqa: E402
from pythae.trainers import BaseTrainer, BaseTrainerConfig  # noqa: E402

from collapsekit.data.digits import load_digits  # noqa: E402
from collapsekit.checkup import doctor  # noqa: E402

SHAPE = (1, 8, 8)
DIGITS = torch.tensor(load_digits().x, dtype=torch.float32).reshape(-1, *SHAPE)


def pythae_loss(model, batch):
    """What Pythae's trainer minimises: the model's own loss on an inputs dict."""
    return model({"data": batch}).loss


@pytest.fixture(scope="module", params=["vae", "beta4"])
def trained(request, tmp_path_factory):
    logging.getLogger("pythae").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_dim=SHAPE, latent_dim=4, reconstruction_loss="bce")) if request.param == "vae" \
        else BetaVAE(BetaVAEConfig(input_dim=SHAPE, latent_dim=4, reconstruction_loss="bce", beta=4.0))
    config = BaseTrainerConfig(output_dir=str(tmp_path_factory.mktemp("pythae")), num_epochs=3,
                               learning_rate=1e-3, per_device_train_batch_size=64)
    BaseTrainer(model, BaseDataset(DIGITS[:1500], torch.zeros(1500)), training_config=config).train()
    return model.eval(), (1.0 if request.param == "vae" else 4.0)


def test_the_effective_beta_of_pythaes_own_loss_is_its_configured_beta(trained):
    model, beta = trained
    report = doctor(model, DIGITS[:512], pythae_loss, checks=["effective_beta", "decoder_uses_z", "encoder_training",
                                                               "regularisation"])
    check = report["effective_beta"]
    assert check.status == "ok", check.message
    assert check.evidence["effective_beta"] == pytest.approx(beta, rel=0.02)
    assert report["decoder_uses_z"].status == "ok" and report["encoder_training"].status == "ok"
