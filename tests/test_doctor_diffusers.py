"""The doctor on diffusers' AutoencoderKL (issue 12 §2): the latent-diffusion failure — a KL weight of 1e-6 leaves
the latents far from the prior — is caught on a small model trained here, a KL weight of 1e-2 passes; the loss's
KL weight is read in its own units (the decoder has no likelihood, only a stated stand-in)."""

from __future__ import annotations

import pytest
import torch
from optional import require

require("diffusers")

from diffusers_models import IMAGES, l1_plus_kl, train_autoencoder_kl  # noqa: E402

from collapsekit.checkup import doctor  # noqa: E402


@pytest.fixture(scope="module", params=[1e-2, 1e-6], ids=["kl-1e-2", "kl-1e-6"])
def trained(request):
    model, optimizer = train_autoencoder_kl(request.param)
    return request.param, model, optimizer


def test_a_kl_weight_of_1e_6_leaves_the_latents_under_regularised_and_1e_2_does_not(trained):
    weight, model, optimizer = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = doctor(model, IMAGES[:512], l1_plus_kl(weight), optimizer, beta=weight)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    checks = {c.name: c for c in report.checks}
    assert checks["decoder_uses_z"].status == "ok" and len(checks["decoder_uses_z"].evidence["gain_per_unit"]) == 4
    assert checks["encoder_training"].status == "ok"
    assert checks["effective_beta"].status == "ok" and checks["effective_beta"].evidence["stand_in"]
    assert checks["effective_beta"].evidence["kl_weight"] == pytest.approx(weight, rel=0.05, abs=3e-6)
    assert any(s.name == "theory" for s in report.skipped)
    assert any(note.startswith("likelihood stand-in") for note in report.notes)
    regularisation = checks["regularisation"]
    if weight == 1e-2:
        assert regularisation.status == "ok" and regularisation.evidence["moment_kl"] < 0.25 * 4
    else:
        assert regularisation.status in ("warn", "fail") and regularisation.evidence["moment_kl"] > 1.0 * 4
