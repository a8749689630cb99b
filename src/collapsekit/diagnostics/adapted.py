"""The streamed pass behind diagnosing any model through its adapter (:func:`~.diagnose.diagnose_adapter`).

:func:`collect_from_adapter` reads a model through the :class:`~collapsekit.adapters.ModelAdapter` protocol
(collapsekit's VAE/CVAE, a pair of callables, Pythae, diffusers' ``AutoencoderKL``, your own) and data
as a tensor or array of any shape (N, ...), a collapsekit ``Dataset``, a torch ``Dataset``, a
``DataLoader`` or any iterable of batches. One pass: each batch is encoded, its posterior statistics
are kept (mean, variance, one sample and the KL to the prior per example and latent dimension:
O(N·d) float64) and, with a likelihood, its importance-sampled log p(x) and ELBO are computed before the
next batch is read, so the inputs are never held whole and a one-shot iterator works.

Latents of any shape (B, *latent_shape) are flattened to d = Π latent_shape dimensions for the
metrics. A spatial latent (C, h, w) is also reported per channel and per position: a channel's KL is
the **sum** of its positions' KLs, KL(q(z_c|x) ‖ p(z_c)) = Σ_{i,j} KL(q(z_cij|x) ‖ p(z_cij)) for the
factorised Gaussians, i.e. the rate of the whole feature map the decoder reads, and the headline count
is the number of active channels (:mod:`collapsekit.activity`'s rule on that per-channel KL). The
per-position map is the sum over channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset as TorchDataset

from collapsekit.activity import active_mask, count_active
from collapsekit.adapters import ModelAdapter, likelihood_target
from collapsekit.data import Dataset
from collapsekit.errors import DataError, ParameterError
from collapsekit.diagnostics.gaussian import kl_to_prior, log_normal
from collapsekit.diagnostics.likelihood import Progress, auto_batch_size
from collapsekit.diagnostics.posterior import (LevelStats, PosteriorStats, at_least_float32, evaluation, placed,
                                               reference, to_device)
from collapsekit.models._checks import count

#: The full-dataset mutual information's cost grows as N²: above this many examples it is estimated on a
#: seeded random subset of them (and the report says so); every other measure uses all N.
MUTUAL_INFO_EXAMPLES = 10_000

def batches_of(data: object, batch_size: int) -> Iterator[object]:
    """The batches of ``data``: rows of a tensor/array/collapsekit Dataset ``batch_size`` at a time (``(x, y)``
    pairs for a Dataset with ``y``), a torch Dataset through a DataLoader, or the batches of any iterable (a
    DataLoader, a list, a generator)."""
    if isinstance(data, Dataset):
        if data.y is not None:                       # paired data (a CVAE's): (x, y) batches
            x, y = torch.as_tensor(np.asarray(data.x)), torch.as_tensor(np.asarray(data.y))
            for start in range(0, x.shape[0], batch_size):
                yield x[start:start + batch_size], y[start:start + batch_size]
            return
        data = data.x
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], (int, float, list)):
        try:
            data = np.asarray(data, dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"data: cannot be read as a numeric array ({exc})") from None
    if isinstance(data, (Tensor, np.ndarray)):
        rows = data if isinstance(data, Tensor) else torch.as_tensor(data)
        if rows.dim() == 0 or rows.shape[0] == 0:
            raise DataError(f"data: expected a non-empty array of examples (N, ...), got shape {tuple(rows.shape)}")
        for start in range(0, rows.shape[0], batch_size):
            yield rows[start:start + batch_size]
        return
    if isinstance(data, TorchDataset) and not isinstance(data, Iterable):
        data = DataLoader(data, batch_size=batch_size)
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, dict)):
        raise DataError(f"data must be a tensor, an array, a Dataset, a DataLoader or an iterable of batches, got "
                        f"{type(data).__name__}")
    yield from data


def _known_size(data: object) -> int | None:
    if isinstance(data, Dataset):
        return int(data.x.shape[0])
    if isinstance(data, (Tensor, np.ndarray)):
        return int(data.shape[0]) if data.ndim else None
    dataset = getattr(data, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass
class AdapterPass:
    """What one streamed pass of :func:`collect_from_adapter` keeps.

    Attributes
    ----------
    stats : PosteriorStats
        One level ``"z"``, latents flattened to (N, d).
    latent_shape : tuple of int
        The latent's shape per example, (d,) or (C, h, w) ...
    log_likelihood, elbo : ndarray or None
        Per example, nats; None when the adapter has no likelihood or ``n_samples`` was None.
    """

    stats: PosteriorStats
    latent_shape: tuple[int, ...]
    log_likelihood: np.ndarray | None
    elbo: np.ndarray | None


class _Noise:
    """Standard normal draws from a generator of our own, seeded once and made on the device of the first
    draw: the samples do not depend on what else draws from the global generator (a DataLoader's iterator
    does, for its workers' seeds)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.generator: torch.Generator | None = None

    def __call__(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if self.generator is None:
            self.generator = torch.Generator(device=like.device).manual_seed(self.seed)
        return torch.randn(shape, generator=self.generator, device=like.device, dtype=like.dtype)


def _log_weights(adapter: ModelAdapter, target: Tensor, mean: Tensor, var: Tensor, k: int, prior_var: float,
                 dtype: torch.dtype | None, noise: _Noise) -> Tensor | None:
    """log p(target|z) + log p(z) − log q(z|x) for k samples per example: (k, B); None without a likelihood."""
    b = mean.shape[0]
    z = mean + var.sqrt() * noise((k, *mean.shape), mean)
    flat = z.reshape(k * b, *mean.shape[1:])
    distribution = adapter.decode(flat if dtype is None else flat.to(dtype))
    if distribution is None:
        return None
    repeated = target.expand(k, *target.shape).reshape(k * b, *target.shape[1:])
    log_px = at_least_float32(distribution.log_prob(repeated))
    if tuple(log_px.shape) != (k * b,):
        raise ParameterError(f"{adapter.name}: decode(z).log_prob(x) has shape {tuple(log_px.shape)}, expected "
                             f"({k * b},): one value per row (an event over all of x's features)")
    log_prior = log_normal(z, torch.zeros_like(z), torch.full_like(z, prior_var)).flatten(2).sum(-1)
    log_q = log_normal(z, mean.expand_as(z), var.expand_as(z)).flatten(2).sum(-1)
    return log_px.reshape(k, b) + log_prior - log_q


def collect_from_adapter(adapter: ModelAdapter, data: object, *, batch_size: int = 256,
                         n_samples: int | None = 1000, sample_chunk: int = 100,
                         likelihood_batch_size: int | None = None, seed: int = 0,
                         device: torch.device | str | None = None,
                         on_batch: Progress | None = None) -> AdapterPass:
    """One streamed pass over ``data`` (module docstring): posterior statistics and, when the adapter has a
    likelihood and ``n_samples`` is not None, the importance-sampled log-likelihood and ELBO of every example.

    Parameters
    ----------
    adapter : ModelAdapter
    data : tensor, array, Dataset, DataLoader or iterable of batches
    batch_size : int
        Rows per batch when ``data`` is a tensor, an array or a Dataset (a loader keeps its own).
    n_samples : int or None
        Importance samples per example; None: no likelihood.
    sample_chunk, likelihood_batch_size
        Samples and examples per decoder pass (default examples: :func:`~.likelihood.auto_batch_size`).
    seed : int
        Seeds every sample, drawn from a generator of the pass's own (what else draws from the global
        generator, e.g. a DataLoader, does not change them); the global RNG state is restored.
    device : torch.device or str, optional
        Where the adapter's modules run (moved there and back); ``None``: where they are.
    on_batch : callable, optional
        ``on_batch(done, total)`` after each batch (``total`` is ``done`` when the size is unknown).
    """
    batch_size = count("batch_size", batch_size)
    if n_samples is not None:
        n_samples, sample_chunk = count("n_samples", n_samples), count("sample_chunk", sample_chunk)
    prior_var = float(adapter.prior_std) ** 2
    modules = list(adapter.modules())
    chunks: dict[str, list[np.ndarray]] = {key: [] for key in ("mean", "var", "sample", "kl", "ll", "elbo")}
    latent_shape: tuple[int, ...] | None = None
    total = _known_size(data)
    likelihood = n_samples is not None
    n = 0
    noise = _Noise(seed)
    with placed(modules, device):
        where, dtype = reference(*modules, device=device)
        has_home = dtype is not None or device is not None
        with evaluation(modules, seed, where):
            for batch in batches_of(data, batch_size):
                x = adapter.inputs(batch)
                if not isinstance(x, Tensor):
                    raise ParameterError(f"{adapter.name}: inputs(batch) must return a tensor, got {type(x).__name__}")
                if x.dim() == 0 or x.shape[0] == 0:
                    continue
                if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                    raise DataError(f"inputs: examples {n}..{n + x.shape[0] - 1} contain NaN or infinite values")
                x = to_device(x, where if has_home else x.device, dtype)
                q = adapter.posterior(x)
                mean, var = at_least_float32(q.loc), at_least_float32(q.scale) ** 2
                b = x.shape[0]
                if mean.dim() < 2 or mean.shape[0] != b:
                    raise ParameterError(f"{adapter.name}: posterior loc has shape {tuple(mean.shape)} for {b} "
                                         f"examples; expected ({b}, *latent_shape)")
                if latent_shape is None:
                    latent_shape = tuple(int(s) for s in mean.shape[1:])
                elif tuple(mean.shape[1:]) != latent_shape:
                    raise ParameterError(f"{adapter.name}: latent shape changed from {latent_shape} to "
                                         f"{tuple(mean.shape[1:])} between batches")
                if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(var).all()) and bool((var > 0).all())):
                    raise ParameterError(f"{adapter.name}: the posterior has NaN, infinite or zero-variance values for "
                                         f"examples {n}..{n + b - 1}")
                flat_mean, flat_var = mean.reshape(b, -1), var.reshape(b, -1)
                for key, value in (("mean", flat_mean), ("var", flat_var),
                                   ("sample", flat_mean + flat_var.sqrt() * noise(tuple(flat_mean.shape), flat_mean)),
                                   ("kl", kl_to_prior(flat_mean.double(), flat_var.double(), 0.0, prior_var))):
                    chunks[key].append(value.detach().to("cpu", torch.float64).numpy())
                if likelihood:
                    result = _batch_likelihood(adapter, x, mean, var, n_samples, sample_chunk,  # type: ignore[arg-type]
                                               likelihood_batch_size, prior_var, dtype, n, noise)
                    if result is None:
                        likelihood = False
                    else:
                        chunks["ll"].append(result[0])
                        chunks["elbo"].append(result[1])
                n += b
                if on_batch is not None:
                    on_batch(n, total if total is not None else n)
    if latent_shape is None:
        raise DataError("data: no examples (the loader or iterable yielded no batches)")
    arrays = {key: np.concatenate(value) for key, value in chunks.items() if value}
    level = LevelStats(name="z", mean=arrays["mean"], var=arrays["var"], sample=arrays["sample"], kl=arrays["kl"],
                       kl_exact=True, prior_std=float(adapter.prior_std), kl_samples=0)
    done = likelihood and "ll" in arrays
    return AdapterPass(stats=PosteriorStats(levels=[level], n=n), latent_shape=latent_shape,
                       log_likelihood=arrays["ll"] if done else None, elbo=arrays["elbo"] if done else None)


def _batch_likelihood(adapter: ModelAdapter, x: Tensor, mean: Tensor, var: Tensor, n_samples: int,
                      sample_chunk: int, batch_size: int | None, prior_var: float, dtype: torch.dtype | None,
                      first: int, noise: _Noise) -> tuple[np.ndarray, np.ndarray] | None:
    target = likelihood_target(adapter, x)
    features = int(np.prod(target.shape[1:])) if target.dim() > 1 else 1
    rows = auto_batch_size(batch_size, min(sample_chunk, n_samples), features, mean.device)
    log_likelihood, elbo = [], []
    for start in range(0, x.shape[0], rows):
        part = slice(start, min(x.shape[0], start + rows))
        running_lse: Tensor | None = None
        running_sum: Tensor | None = None
        for done in range(0, n_samples, sample_chunk):
            log_w = _log_weights(adapter, target[part], mean[part], var[part], min(sample_chunk, n_samples - done),
                                 prior_var, dtype, noise)
            if log_w is None:
                return None
            log_w = log_w.to(torch.float64)
            lse, total = torch.logsumexp(log_w, dim=0), log_w.sum(dim=0)
            running_lse = lse if running_lse is None else torch.logaddexp(running_lse, lse)
            running_sum = total if running_sum is None else running_sum + total
        assert running_lse is not None and running_sum is not None
        if not bool(torch.isfinite(running_lse).all() & torch.isfinite(running_sum).all()):
            raise DataError(f"log importance weights are NaN or infinite for examples {first + start}.."
                            f"{first + part.stop - 1}: is the data inside the likelihood's support?")
        log_likelihood.append((running_lse - math.log(n_samples)).cpu().numpy())
        elbo.append((running_sum / n_samples).cpu().numpy())
    return np.concatenate(log_likelihood), np.concatenate(elbo)


def spatial_fields(kl_per_dim: list[float], latent_shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-channel and per-position KL of a latent of shape (C, *positions): a channel's KL is the sum over
    its positions, a position's the sum over channels; the active channels by the headline rule."""
    kl = np.asarray(kl_per_dim, dtype=np.float64).reshape(latent_shape)
    per_channel = kl.reshape(latent_shape[0], -1).sum(axis=1)
    return {"latent_shape": list(latent_shape), "kl_per_channel": per_channel.tolist(),
            "kl_per_position": kl.sum(axis=0).tolist(), "active_channels": active_mask(per_channel).tolist(),
            "n_active_channels": count_active(per_channel)}
