"""One run's VAE forward pass with its sampling noise and η_enc given, so that ``vmap`` can vary both by run."""

from __future__ import annotations

from torch import Tensor, nn

from collapsekit.models._latent import centred_prior, check_output, posterior
from collapsekit.models.output import LatentLevel, ModelOutput
from collapsekit.models.vae import VAE

class ExplicitNoiseVAE(nn.Module):
    """``VAE.forward`` with the sampling noise and η_enc as arguments.

    ``VAE.forward`` draws its noise from the global generator and reads η_enc from a float attribute;
    under ``vmap`` neither can differ between runs. This module calls the VAE's own encoder, decoder
    and likelihood and takes both as inputs (tests/test_batched.py checks it against ``VAE.forward``).
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, noise: Tensor, eta_enc: Tensor) -> ModelOutput:
        vae = self.vae
        q = posterior(vae.encoder(x), vae.latent_dim, "z")
        z = q.loc + noise * q.scale                       # Normal.rsample, with the noise given
        mean = vae.decoder(z)
        check_output(mean, x)
        # eta_enc is one run's 0-d tensor: centred_prior only adds it to zeros
        prior = centred_prior(vae.latent_dim, eta_enc, z)  # type: ignore[arg-type]
        level = LatentLevel(name="z", posterior=q, prior=prior, sample=z)
        return ModelOutput(target=x, likelihood=vae.likelihood(mean), levels=[level])
