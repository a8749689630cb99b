"""Importance-sampled log-likelihood and ELBO per example (docs/metrics.md §4).

For each example, S samples z_s ~ q(z|x) (every level of a hierarchy, drawn up the encoder chain):

    log w_s = log p(target | z_s) + Σ_levels log p(z_s,l | ·) − Σ_levels log q(z_s,l | ·)
    log p̂(target) = logsumexp_s log w_s − log S          (≤ log p in expectation, → log p as S grows)
    ELBO          = (1/S) Σ_s log w_s                     (the same samples)

with the full log-densities (every constant; never the analytic KL, which would change the bound).
The target is x for a VAE or hierarchy and y for a CVAE (log p(y|x)). Samples are drawn
``sample_chunk`` at a time for a batch of examples, all in one vectorised forward pass; the
log-sum-exp is accumulated across chunks in float64 (log w itself is computed in the model's dtype),
so memory is bounded by one chunk: O(sample_chunk · batch_size · D).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from collapsekit._validation import positive
from collapsekit.errors import DataError, ParameterError
from collapsekit.diagnostics.gaussian import LOG_2PI, log_normal
from collapsekit.diagnostics.posterior import (Encoder, as_rows, evaluation, gaussian_parameters, reference,
                                               to_device)
from collapsekit.models._checks import count
from collapsekit.models.likelihoods import IsotropicGaussian
from collapsekit.objectives.iwae import log_importance_weights

#: ``on_batch(done, total)``: called after each batch of examples (examples done, examples in all).
Progress = Callable[[int, int], None]
#: ``decoder(z) -> Distribution``: z of shape (S·B, d); ``log_prob(x)`` one value per row.
Decoder = Callable[[Tensor], Distribution]

#: Decoder output values per forward pass when ``batch_size`` is left to us (4 MiB in float32): on MNIST,
#: 0.4–2.6 × 10⁶ values per pass were equally fast and larger passes slower (their temporaries leave the cache).
_VALUES_PER_PASS = 2**20


def _fast_likelihood(likelihood: Distribution) -> Distribution:
    """``likelihood`` with a cheaper ``log_prob`` when it is an isotropic Gaussian (a constant scale broadcast
    with stride 0 over the loc); anything else unchanged."""
    if (isinstance(likelihood, Independent) and likelihood.reinterpreted_batch_ndims == 1
            and type(likelihood.base_dist) is Normal):
        loc, scale = likelihood.base_dist.loc, likelihood.base_dist.scale
        if scale.dim() >= 1 and scale.numel() > 0 and all(stride == 0 for stride in scale.stride()):
            return IsotropicGaussian(loc, scale.reshape(-1)[0])
    return likelihood


def _auto_batch(batch_size: int | None, sample_chunk: int, features: int) -> int:
    if batch_size is not None:
        return count("batch_size", batch_size)
    return int(min(1024, max(1, _VALUES_PER_PASS // (sample_chunk * features))))


def _importance_loop(log_weights: Callable[[slice, int], Tensor], n: int, *, n_samples: int, sample_chunk: int,
                     batch_size: int, on_batch: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``log_weights(rows, k) -> (k, B)`` over every batch and sample chunk; accumulate in float64."""
    log_likelihood, elbo = np.empty(n), np.empty(n)
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        running_lse: Tensor | None = None
        running_sum: Tensor | None = None
        for done in range(0, n_samples, sample_chunk):
            log_w = log_weights(rows, min(sample_chunk, n_samples - done)).to(torch.float64)
            if not bool(torch.isfinite(log_w).all()):
                raise DataError(f"log importance weights are NaN or infinite for examples {start}..{rows.stop - 1}: "
                                "is the data inside the likelihood's support (e.g. [0, 1] for Bernoulli)?")
            chunk_lse, chunk_sum = torch.logsumexp(log_w, dim=0), log_w.sum(dim=0)
            running_lse = chunk_lse if running_lse is None else torch.logaddexp(running_lse, chunk_lse)
            running_sum = chunk_sum if running_sum is None else running_sum + chunk_sum
        assert running_lse is not None and running_sum is not None
        log_likelihood[rows] = (running_lse - math.log(n_samples)).cpu().numpy()
        elbo[rows] = (running_sum / n_samples).cpu().numpy()
        if on_batch is not None:
            on_batch(rows.stop, n)
    return log_likelihood, elbo


def importance_sampled_log_likelihood(model: nn.Module, x: object, y: object | None = None, *,
                                      n_samples: int = 1000, sample_chunk: int = 100, batch_size: int | None = None,
                                      seed: int = 0, on_batch: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Importance-sampled log p(target) and the ELBO of every example, for our models.

    Parameters
    ----------
    model : nn.Module
        A VAE, CVAE or hierarchical VAE of :mod:`collapsekit.models` (any model whose forward
        returns a :class:`~collapsekit.models.output.ModelOutput`). Run in eval mode, no gradients;
        every module's training flag and the global RNG state are restored.
    x, y : tensor or array
        (N, D) inputs; y the CVAE's outputs (the likelihood is then log p(y|x)).
    n_samples : int
        S, importance samples per example (the paper's code uses 1000 for the CVAE).
    sample_chunk : int
        Samples per forward pass.
    batch_size : int, optional
        Examples per forward pass; default: about 10⁶ decoder outputs per pass (13 MNIST digits × 100 samples).
    seed : int
        Seeds the samples.
    on_batch : callable, optional
        ``on_batch(done, total)`` after each batch of examples (for a progress bar).

    Returns
    -------
    log_likelihood, elbo : ndarray (N,)
        float64, nats per example. ``log_likelihood ≥ elbo`` for every example (Jensen, on the same
        samples).
    """
    xs = as_rows("x", x)
    ys = None if y is None else as_rows("y", y)
    if ys is not None and ys.shape[0] != xs.shape[0]:
        raise DataError(f"x has {xs.shape[0]} rows but y has {ys.shape[0]}")
    n_samples, sample_chunk = count("n_samples", n_samples), count("sample_chunk", sample_chunk)
    features = int((xs if ys is None else ys).shape[1])
    batch = _auto_batch(batch_size, min(sample_chunk, n_samples), features)
    device, dtype = reference(model)

    def log_weights(rows: slice, k: int) -> Tensor:
        yb = None if ys is None else to_device(ys[rows], device, dtype)
        output = model(to_device(xs[rows], device, dtype), yb, n_samples=k)
        output.likelihood = _fast_likelihood(output.likelihood)
        return log_importance_weights(output)

    with evaluation([model], seed, device):
        return _importance_loop(log_weights, int(xs.shape[0]), n_samples=n_samples, sample_chunk=sample_chunk,
                                batch_size=batch, on_batch=on_batch)


def importance_sampled_log_likelihood_from(encoder: Encoder, decoder: Decoder, x: object, *, eta_enc: float = 1.0,
                                           n_samples: int = 1000, sample_chunk: int = 100,
                                           batch_size: int | None = None, seed: int = 0,
                                           on_batch: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Importance-sampled log p(x) and ELBO for any Gaussian encoder and decoder (bring your own).

    Parameters
    ----------
    encoder : callable
        ``encoder(x_batch)`` → ``(mu, log_var)`` or a diagonal ``Normal``, each (B, d)
        (as :func:`~collapsekit.diagnostics.posterior.collect_from_encoder`).
    decoder : callable
        ``decoder(z)`` → ``torch.distributions.Distribution`` over x. It receives z **flattened to
        (S·B, d)** (sample-major: rows s·B … s·B + B − 1 are sample s of the batch), so any decoder
        that maps a 2-D batch works, and ``log_prob`` is called on x repeated the same way,
        (S·B, D); it must return one value per row (S·B,), e.g. ``Independent(Normal(mean, η), 1)``.
    x : tensor or array
        (N, D) data.
    eta_enc : float
        The prior is N(0, η_enc² I).
    n_samples, sample_chunk, batch_size, seed, on_batch
        As for :func:`importance_sampled_log_likelihood`.

    Returns
    -------
    log_likelihood, elbo : ndarray (N,)
        float64, nats per example.

    Raises
    ------
    ParameterError
        For a bad encoder output, a decoder that returns no Distribution, or a ``log_prob`` with a
        shape other than (S·B,) (a per-feature density missing ``Independent(..., 1)``).
    """
    for name, value in (("encoder", encoder), ("decoder", decoder)):
        if not callable(value):
            raise ParameterError(f"{name} must be callable, got {type(value).__name__}")
    eta_enc = positive("eta_enc", eta_enc)
    xs = as_rows("x", x)
    n_samples, sample_chunk = count("n_samples", n_samples), count("sample_chunk", sample_chunk)
    batch = _auto_batch(batch_size, min(sample_chunk, n_samples), int(xs.shape[1]))
    device, dtype = reference(encoder, decoder)
    prior_var = eta_enc**2

    def log_weights(rows: slice, k: int) -> Tensor:
        xb = to_device(xs[rows], device, dtype)
        b = xb.shape[0]
        mean, var = gaussian_parameters("encoder", encoder(xb), b, rows.start)
        z = mean + var.sqrt() * torch.randn((k, *mean.shape), device=mean.device, dtype=mean.dtype)
        distribution = decoder(z.reshape(k * b, -1))
        if not isinstance(distribution, Distribution):
            raise ParameterError(f"decoder must return a torch.distributions.Distribution, got "
                                 f"{type(distribution).__name__}")
        distribution = _fast_likelihood(distribution)
        log_px = distribution.log_prob(xb.expand(k, *xb.shape).reshape(k * b, -1))
        if tuple(log_px.shape) != (k * b,):
            raise ParameterError(f"decoder(z).log_prob(x) has shape {tuple(log_px.shape)}, expected ({k * b},): one "
                                 "value per row; wrap a per-feature distribution in Independent(..., 1)")
        log_prior = log_normal(z, torch.zeros_like(z), torch.full_like(z, prior_var)).sum(-1)
        return log_px.reshape(k, b) + log_prior - log_normal(z, mean, var).sum(-1)

    with evaluation([encoder, decoder], seed, device):
        return _importance_loop(log_weights, int(xs.shape[0]), n_samples=n_samples, sample_chunk=sample_chunk,
                                batch_size=batch, on_batch=on_batch)
