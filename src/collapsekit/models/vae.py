"""The one-level VAE: q(z|x) = N(mu(x), diag σ²), p(z) = N(0, η_enc² I), p(x|z) = likelihood(decoder(z)).

The model only produces distributions (:class:`~collapsekit.models.output.ModelOutput`); the
loss (β-ELBO, IWAE, free bits, ...) belongs to ``collapsekit.objectives``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from collapsekit.errors import DataError
from collapsekit.models._checks import batch, count, n_samples as _n_samples
from collapsekit.models._latent import OneLevelModel, centred_prior, check_output, posterior, reference_tensor
from collapsekit.models.output import LatentLevel, ModelOutput


class VAE(OneLevelModel):
    """Variational autoencoder with a Gaussian posterior and an isotropic Gaussian prior.

    Parameters
    ----------
    encoder : nn.Module
        ``encoder(x) -> (mu, log_var)``, each (B, d); e.g. :class:`~collapsekit.models.blocks.LinearEncoder`.
    decoder : nn.Module
        ``decoder(z) -> output`` (..., D), keeping the leading sample dimensions of z.
    likelihood : nn.Module
        ``likelihood(output) -> Distribution`` with event dimension 1, e.g.
        :class:`~collapsekit.models.likelihoods.GaussianLikelihood`.
    eta_enc : float
        Prior standard deviation η_enc.
    latent_dim : int, optional
        d; read from ``encoder.latent_dim`` when omitted.

    Examples
    --------
    The linear VAE of docs/theory.md §1.1 with learnable Σ:

    >>> from collapsekit.models import GaussianLikelihood, LinearDecoder, LinearEncoder, VAE
    >>> vae = VAE(LinearEncoder(6, 3), LinearDecoder(3, 6), GaussianLikelihood(eta_dec=0.5))
    >>> out = vae(torch.randn(4, 6), n_samples=10)
    >>> out.levels[0].sample.shape, out.likelihood.log_prob(out.target).shape
    (torch.Size([10, 4, 3]), torch.Size([10, 4]))
    """

    def forward(self, x: Tensor, y: Tensor | None = None, *, n_samples: int = 1) -> ModelOutput:
        """Encode x, draw ``n_samples`` reparameterised z per example, decode.

        Parameters
        ----------
        x : Tensor
            (B, D); also the target.
        y : None
            A VAE has no output besides x: passing y raises :class:`DataError` (use a CVAE).
        n_samples : int
            S, samples of z per example.

        Returns
        -------
        ModelOutput
            One level ``"z"``: posterior (B, d), prior N(0, η_enc²) of batch shape (d,), sample (S, B, d);
            likelihood of batch shape (S, B).
        """
        x = batch("x", x)
        if y is not None:
            raise DataError("a VAE reconstructs x and takes no y; use a CVAE for paired (x, y) data")
        q = posterior(self.encoder(x), self.latent_dim, "z")
        z = q.rsample((_n_samples(n_samples),))
        mean = self.decoder(z)
        check_output(mean, x)
        level = LatentLevel(name="z", posterior=q, prior=centred_prior(self.latent_dim, self.eta_enc, z), sample=z)
        return ModelOutput(target=x, likelihood=self.likelihood(mean), levels=[level])

    def generate(self, n: int) -> Distribution:
        """p(x|z) for n draws z ~ p(z): ``.mean`` gives images, ``.sample()`` noisy ones."""
        ref = reference_tensor(self)
        z = self.eta_enc * torch.randn(count("n", n), self.latent_dim, device=ref.device, dtype=ref.dtype)
        return self.likelihood(self.decoder(z))

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, eta_enc={self.eta_enc:g}"
