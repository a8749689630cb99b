"""The doctor on diffusers' AutoencoderKL (issue 12 §2): the latent-diffusion failure — a KL weight of 1e-6 leaves
the latents far from the prior — is caught on a small model trained here, a KL weight of 1e-2 passes; the loss's
KL weight is read in its own units (the decoder has no likelihood, only a stated stand-in)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import AutoencoderKL  # noqa: E402

from collapsekit.data.digits import load_digits  # noqa: E402
from collapsekit.checkup import doctor  # noqa: E402

CONFIG = dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
              up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
              latent_channels=4, norm_num_groups=4, sample_size=8)
IMAGES = torch.tensor(load_digits().x, dtype=torch.float32).reshape(-1, 1, 8, 8) * 2 - 1       # in [-1, 1]


def l1_plus_kl(weight):
    """Latent diffusion's autoencoder loss, reduced to L1 + weight · KL."""
    def loss_fn(model, batch):
        posterior = model.encode(batch).latent_dist
        return (model.decode(posterior.sample()).sample - batch).abs().sum((1, 2, 3)).mean() + \
            weight * posterior.kl().mean()
    return loss_fn


@pytest.fixture(scope="module", params=[1e-2, 1e-6], ids=["kl-1e-2", "kl-1e-6"])
def trained(request):
    torch.manual_seed(0)
    model = AutoencoderKL(**CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(80):
        batch = IMAGES[torch.randint(0, 1500, (64,), generator=generator)]
        optimizer.zero_grad()
        l1_plus_kl(request.param)(model, batch).backward()
        optimizer.step()
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
