"""Importance-sampled log-likelihood and ELBO per example (docs/metrics.md §4).

For each example, S samples z_s ~ q(z|x) (every level of a hierarchy, drawn up the encoder chain):

    log w_s = log p(target | z_s) + Σ_levels log p(z_s,l | ·) − Σ_levels log q(z_s,l | ·)
    log p̂(target) = logsumexp_s log w_s − log S          (≤ log p in expectation, → log p as S grows)
    ELBO          = (1/S) Σ_s log w_s                     (the same samples)

with the full log-densities (every constant; never the analytic KL, which would change the bound).
The target is x for a VAE or hierarchy and y for a CVAE (log p(y|x)). Samples are drawn
``sample_chunk`` at a time for a batch of examples, all in one vectorised forward pass; the
log-sum-exp is accumulated across chunks in float64 (log w itself is computed in the model's dtype,
or in float32 for a bfloat16/float16 model), so memory is bounded by one chunk:
O(sample_chunk · batch_size · D).

Everything runs on the model's device (``device=`` moves the model there for the call); the results
come back to the CPU once per batch of examples. The default batch of examples is chosen per device
(:func:`auto_batch_size`).
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
from collapsekit.diagnostics.posterior import (Encoder, as_rows, evaluation, gaussian_parameters, placed,
                                               promoted_distribution, promoted_output, reference, to_device)
from collapsekit.models._checks import count
from collapsekit.models.likelihoods import IsotropicGaussian
from collapsekit.objectives.iwae import log_importance_weights

#: ``on_batch(done, total)``: called after each batch of examples (examples done, examples in all).
Progress = Callable[[int, int], None]
#: ``decoder(z) -> Distribution``: z of shape (S·B, d); ``log_prob(x)`` one value per row.
Decoder = Callable[[Tensor], Distribution]

#: Decoder output values per forward pass when ``batch_size`` is left to us, per device type. CPU: 2²⁰
#: (4 MiB in float32): on MNIST, 0.4–2.6 × 10⁶ values per pass were equally fast and larger passes slower
#: (their temporaries leave the cache). A GPU has no such cache to stay in and wants large kernels:
#: 2²⁴ (64 MiB per decoder-sized temporary, well under 1 GiB in all for an MLP). The GPU value is a
#: design choice, not yet a measurement (bench/gpu_check.py times it where a GPU is lent).
VALUES_PER_PASS = {"cpu": 2**20, "other": 2**24}
#: At most this many examples per pass, per device type (a tiny decoder would otherwise take all of them).
MAX_EXAMPLES_PER_PASS = {"cpu": 1024, "other": 16384}


def _fast_likelihood(likelihood: Distribution) -> Distribution:
    """``likelihood`` with a cheaper ``log_prob`` when it is an isotropic Gaussian (a constant scale broadcast
    with stride 0 over the loc); anything else unchanged."""
    if (isinstance(likelihood, Independent) and likelihood.reinterpreted_batch_ndims == 1
            and type(likelihood.base_dist) is Normal):
        loc, scale = likelihood.base_dist.loc, likelihood.base_dist.scale
        if scale.dim() >= 1 and scale.numel() > 0 and all(stride == 0 for stride in scale.stride()):
            return IsotropicGaussian(loc, scale.reshape(-1)[0])
    return likelihood


def auto_batch_size(batch_size: int | None, sample_chunk: int, features: int,
                    device: torch.device | str = "cpu") -> int:
    """Examples per forward pass of the likelihood: ``batch_size`` when given, else about
    :data:`VALUES_PER_PASS` decoder outputs (sample_chunk × examples × features) for the device type,
    at most :data:`MAX_EXAMPLES_PER_PASS`."""
    if batch_size is not None:
        return count("batch_size", batch_size)
    kind = "cpu" if torch.device(device).type == "cpu" else "other"
    return int(min(MAX_EXAMPLES_PER_PASS[kind], max(1, VALUES_PER_PASS[kind] // (sample_chunk * features))))


def _importance_loop(log_weights: Callable[[slice, int], Tensor], n: int, *, n_samples: int, sample_chunk: int,
                     batch_size: int, on_batch: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``log_weights(rows, k) -> (k, B)`` over every batch and sample chunk; accumulate in float64."""
    log_likelihood, elbo = np.empty(n), np.empty(n)
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        running_lse: Tensor | None = None
        running_sum: Tensor | None = None
        finite: Tensor | None = None
        for done in range(0, n_samples, sample_chunk):
            log_w = log_weights(rows, min(sample_chunk, n_samples - done)).to(torch.float64)
            # Checked on the device and read once per batch of examples, not once per chunk of samples.
            chunk_finite = torch.isfinite(log_w).all()
            finite = chunk_finite if finite is None else finite & chunk_finite
            chunk_lse, chunk_sum = torch.logsumexp(log_w, dim=0), log_w.sum(dim=0)
            running_lse = chunk_lse if running_lse is None else torch.logaddexp(running_lse, chunk_lse)
            running_sum = chunk_sum if running_sum is None else running_sum + chunk_sum
        assert running_lse is not None and running_sum is not None and finite is not None
        if not bool(finite):
            raise DataError(f"log importance weights are NaN or infinite for examples {start}..{rows.stop - 1}: "
                            "is the data inside the likelihood's support (e.g. [0, 1] for Bernoulli)?")
        log_likelihood[rows] = (running_lse - math.log(n_samples)).cpu().numpy()
        elbo[rows] = (running_sum / n_samples).cpu().numpy()
        if on_batch is not None:
            on_batch(rows.stop, n)
    return log_likelihood, elbo


def importance_sampled_log_likelihood(model: nn.Module, x: object, y: object | None = None, *,
                                      n_samples: int = 1000, sample_chunk: int = 100, batch_size: int | None = None,
                                      seed: int = 0, on_batch: Progress | None = None,
                                      device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
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
        Examples per forward pass; default: chosen for the model's device (:func:`auto_batch_size`: about
        10⁶ decoder outputs per pass on a CPU, 13 MNIST digits × 100 samples; 16 times more on a GPU).
    seed : int
        Seeds the samples.
    on_batch : callable, optional
        ``on_batch(done, total)`` after each batch of examples (for a progress bar).
    device : torch.device or str, optional
        Where the model runs (moved there for the call and back); ``None``: where it is. The data go to
        the model's device batch by batch.

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

    def log_weights(rows: slice, k: int) -> Tensor:
        yb = None if ys is None else to_device(ys[rows], where, dtype)
        output = promoted_output(model(to_device(xs[rows], where, dtype), yb, n_samples=k))
        output.likelihood = _fast_likelihood(output.likelihood)
        return log_importance_weights(output)

    with placed([model], device):
        where, dtype = reference(model, data=xs, device=device)
        batch = auto_batch_size(batch_size, min(sample_chunk, n_samples), features, where)
        with evaluation([model], seed, where):
            return _importance_loop(log_weights, int(xs.shape[0]), n_samples=n_samples, sample_chunk=sample_chunk,
                                    batch_size=batch, on_batch=on_batch)


def importance_sampled_log_likelihood_from(encoder: Encoder, decoder: Decoder, x: object, *, eta_enc: float = 1.0,
                                           n_samples: int = 1000, sample_chunk: int = 100,
                                           batch_size: int | None = None, seed: int = 0,
                                           on_batch: Progress | None = None,
                                           device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    device : torch.device or str, optional
        Where the encoder and decoder run (modules are moved there for the call and back); ``None``: the
        first module's device, or for plain functions the device of x. x goes there batch by batch;
        z is drawn on the device of the encoder's output and given to the decoder in its dtype.

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
    prior_var = eta_enc**2

    def log_weights(rows: slice, k: int) -> Tensor:
        xb = to_device(xs[rows], where, dtype)
        b = xb.shape[0]
        mean, var = gaussian_parameters("encoder", encoder(xb), b, rows.start)   # float32 at least
        z = mean + var.sqrt() * torch.randn((k, *mean.shape), device=mean.device, dtype=mean.dtype)
        z_in = z.reshape(k * b, -1)
        distribution = decoder(z_in if decoder_dtype is None else z_in.to(decoder_dtype))
        if not isinstance(distribution, Distribution):
            raise ParameterError(f"decoder must return a torch.distributions.Distribution, got "
                                 f"{type(distribution).__name__}")
        distribution = promoted_distribution(_fast_likelihood(distribution))
        log_px = distribution.log_prob(xb.expand(k, *xb.shape).reshape(k * b, -1))
        if tuple(log_px.shape) != (k * b,):
            raise ParameterError(f"decoder(z).log_prob(x) has shape {tuple(log_px.shape)}, expected ({k * b},): one "
                                 "value per row; wrap a per-feature distribution in Independent(..., 1)")
        log_prior = log_normal(z, torch.zeros_like(z), torch.full_like(z, prior_var)).sum(-1)
        return log_px.reshape(k, b) + log_prior - log_normal(z, mean, var).sum(-1)

    with placed([encoder, decoder], device):
        where, dtype = reference(encoder, decoder, data=xs, device=device)
        decoder_dtype = reference(decoder)[1]
        batch = auto_batch_size(batch_size, min(sample_chunk, n_samples), int(xs.shape[1]), where)
        with evaluation([encoder, decoder], seed, where):
            return _importance_loop(log_weights, int(xs.shape[0]), n_samples=n_samples, sample_chunk=sample_chunk,
                                    batch_size=batch, on_batch=on_batch)
