"""diffusers' ``AutoencoderKL`` (latent diffusion's VAE; ``diffusers>=0.42.1,<0.43``, tested) behind the adapter protocol.

Its posterior is a diagonal Gaussian over a spatial latent (C × h × w), read from
``model.encode(x).latent_dist`` (``mean``, ``std``); the prior of its KL term is N(0, I) in the unscaled
latent space (``config.scaling_factor`` only rescales latents for the diffusion model, after training).

Its decoder has **no likelihood**: it is trained with L1 (or L2), perceptual and adversarial terms, so a
measure that needs log p(x|z) (the log-likelihood, the ELBO, decoder-uses-z) gets a stated stand-in:
an independent Laplace (default; L1's likelihood) or Gaussian per feature, centred on the decoder's
output, with one scale fitted by maximum likelihood on data — ``b = mean |x − x̂|`` (Laplace) or
``σ² = mean (x − x̂)²`` (Gaussian), x̂ the decoding of the posterior mean. Pass ``scale=`` to use your own,
or ``likelihood=None`` for none. Without ``scale`` it is fitted on the first batch the adapter encodes
(frozen afterwards; the note says on how many examples) or by :meth:`DiffusersAdapter.fit_scale`.
The closed-form theory does not describe this model (a convolutional decoder trained without a
likelihood), and the notes say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Laplace, Normal

from collapsekit._validation import non_negative, positive
from collapsekit.errors import DataError, ParameterError
from collapsekit.adapters.batches import batch_inputs

LIKELIHOODS = ("laplace", "gaussian")
#: Why the closed forms are skipped, said in every report of this adapter.
THEORY_SKIPPED = ("closed-form theory skipped: it describes β-ELBO optima of linear/Gaussian decoders, and this "
                  "decoder is convolutional and trained without a likelihood (L1, perceptual, adversarial terms)")


def is_autoencoder_kl(model: object) -> bool:
    """A diffusers ``AutoencoderKL`` (or subclass), without importing diffusers."""
    return isinstance(model, nn.Module) and any(
        cls.__name__ == "AutoencoderKL" and cls.__module__.startswith("diffusers.") for cls in type(model).__mro__)


class DiffusersAdapter:
    """A diffusers ``AutoencoderKL``.

    Parameters
    ----------
    model : diffusers.AutoencoderKL
    likelihood : "laplace", "gaussian" or None
        The stand-in likelihood of the decoder (module docstring); None: no likelihood (``decode`` returns None).
    scale : float, optional
        Its scale (Laplace b or Gaussian σ); fitted on the data when omitted.
    beta : float, optional
        The KL weight of its training loss (latent diffusion's autoencoders used about 1e-6), when known.
    """

    def __init__(self, model: nn.Module, *, likelihood: str | None = "laplace", scale: float | None = None,
                 beta: float | None = None) -> None:
        if likelihood is not None and likelihood not in LIKELIHOODS:
            raise ParameterError(f"likelihood must be one of {', '.join(LIKELIHOODS)} or None, got {likelihood!r}")
        self.model = model
        self.name = f"diffusers {type(model).__name__}"
        self.prior_std = 1.0
        self.beta = None if beta is None else non_negative("beta", beta)
        self.likelihood = likelihood
        self.scale: float | None = None if scale is None else positive("scale", scale)
        self.fitted_on = 0
        self.notes: list[str] = [THEORY_SKIPPED]
        if likelihood is None:
            self.notes.append("no likelihood: the decoder is not a density and none was asked for (likelihood=None)")
        elif scale is not None:
            self._say_likelihood("given")

    def _say_likelihood(self, how: str) -> None:
        label = "Laplace" if self.likelihood == "laplace" else "Gaussian"
        self.notes = [n for n in self.notes if not n.startswith("likelihood stand-in")]
        self.notes.append(f"likelihood stand-in: the decoder has none (trained with L1/perceptual/adversarial "
                          f"losses); an independent {label} per feature around its output, scale {self.scale:.4g} "
                          f"{how}")

    def modules(self) -> Sequence[nn.Module]:
        return [self.model]

    def inputs(self, batch: object) -> Tensor:
        """A tensor (B, C, H, W), ``(images, ...)`` or a dict with ``"pixel_values"``/``"image"``/..."""
        return batch_inputs(batch)

    def posterior(self, x: Tensor) -> Normal:
        dist = self.model.encode(x).latent_dist
        q = Normal(dist.mean, dist.std, validate_args=False)
        if self.likelihood is not None and self.scale is None:
            self._fit([x], q)
        return q

    def fit_scale(self, data: Iterable[object], max_batches: int | None = None) -> float:
        """Fit the stand-in's scale by maximum likelihood on ``data`` (batches as a loader yields them, at most
        ``max_batches``), decoding each posterior mean (without gradients; put the model in eval mode first if
        it has layers that differ in training). Returns the scale."""
        if self.likelihood is None:
            raise ParameterError("likelihood=None: there is no scale to fit")
        xs = []
        for index, batch in enumerate(data):
            if max_batches is not None and index >= max_batches:
                break
            xs.append(self.inputs(batch))
        if not xs:
            raise DataError("fit_scale: no batches in data")
        self._fit(xs, None)
        return float(self.scale)  # type: ignore[arg-type]

    @torch.no_grad()
    def _fit(self, xs: list[Tensor], q: Normal | None) -> None:
        total, n, count = 0.0, 0, 0
        for x in xs:
            x = x.to(next(self.model.parameters()).device)
            mean = q.loc if q is not None else self.model.encode(x).latent_dist.mean
            residual = (x - self.model.decode(mean).sample).double()
            total += float(residual.abs().sum() if self.likelihood == "laplace" else (residual**2).sum())
            count += residual.numel()
            n += x.shape[0]
        value = total / count if self.likelihood == "laplace" else (total / count) ** 0.5
        self.scale = max(value, 1e-6)
        self.fitted_on = n
        self._say_likelihood(f"fitted by maximum likelihood on {n} examples (x̂ the decoded posterior mean)")

    def decode(self, z: Tensor) -> Distribution | None:
        if self.likelihood is None:
            return None
        if self.scale is None:
            raise ParameterError("the likelihood's scale is not fitted yet: call posterior() on a batch, "
                                 "fit_scale(data), or pass scale=")
        recon = self.model.decode(z).sample
        scale = torch.full_like(recon, self.scale)
        base = Laplace(recon, scale, validate_args=False) if self.likelihood == "laplace" else \
            Normal(recon, scale, validate_args=False)
        return Independent(base, recon.dim() - 1, validate_args=False)


def from_diffusers(model: nn.Module, **options: object) -> DiffusersAdapter:
    return DiffusersAdapter(model, **options)  # type: ignore[arg-type]
