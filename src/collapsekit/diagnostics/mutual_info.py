"""Mutual information I_q(x; z) between the data and a diagonal Gaussian encoder (docs/metrics.md §3).

    I = E_n E_{q(z|x_n)}[log q(z|x_n)] − E_n E_{q(z|x_n)}[log q(z)],   q(z) = (1/N) Σ_m q(z|x_m)

Two estimators, both on the posterior means and variances of :mod:`.posterior`:

* :func:`mutual_info` — the **full-dataset** aggregate posterior: q(z) is the mixture of all N
  posteriors (ELBO surgery's I_q(n; z) ≤ log N). Exact up to Monte Carlo over z.
* :func:`mutual_info_minibatch` — He et al.'s estimator: the mixture over each minibatch of B
  examples (own component included), averaged over batches; it cannot exceed log B on average,
  so it saturates and depends on B (compare runs at equal B only).
* :func:`mutual_info_one_batch` — the same estimator on one batch of torch tensors, on their device
  (what :class:`~collapsekit.training.monitor.CollapseMonitor` reports each epoch while training).

The work is in :func:`log_aggregate_posterior`: log q(z) for Q query points against N components
without ever forming a Q × N × d array. The Gaussian exponent is expanded,
Σ_j (z_j − μ_j)²/v_j = Σ_j z_j²/v_j − 2 z_j μ_j/v_j + μ_j²/v_j, so one float64 matrix product of
[z², z, 1] (Q × (2d+1)) with the per-component coefficients ((2d+1) × N) gives every exponent; the
log-sum-exp subtracts each row's maximum (in float64) before exponentiating in float32 (terms
≤ 1, relative error ~1e-7, i.e. ~1e-7 nats). Query rows go in chunks so that memory is O(chunk · N).
The inputs are centred on the mean of the μ first, which keeps the expanded terms small.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from collapsekit.errors import DataError, ParameterError
from collapsekit._validation import as_2d_finite, real
from collapsekit.diagnostics.gaussian import LOG_2PI, log_normal, neg_entropy
from collapsekit.models._checks import count

#: Target number of (query, component) pairs per chunk: keeps the float64 block in cache-sized pieces.
_GEMM_BLOCK = 2**21
_ELEMENTWISE_BLOCK = 2**18


def _gaussians(mean: object, var: object) -> tuple[np.ndarray, np.ndarray]:
    mean = as_2d_finite("mean", mean).astype(np.float64, copy=False)
    var = as_2d_finite("var", var).astype(np.float64, copy=False)
    if var.shape != mean.shape:
        raise DataError(f"var has shape {var.shape} but mean has {mean.shape}")
    if (var <= 0).any():
        raise DataError("var: posterior variances must be > 0 (variances, not log-variances)")
    return mean, var


def _chunk(chunk_size: int | None, n: int, block: int) -> int:
    return max(1, block // n) if chunk_size is None else count("chunk_size", chunk_size)


def _exact_rows(z: np.ndarray, mean: np.ndarray, var: np.ndarray, chunk: int) -> np.ndarray:
    """log Σ_m exp(exponent) in plain float64, ``chunk`` rows at a time (the fallback for rows the fast
    kernel cannot resolve; one-dimensional, so a block is chunk × N)."""
    out = np.empty(z.shape[0])
    for start in range(0, z.shape[0], chunk):
        zc = z[start:start + chunk]
        exponent = -0.5 * ((zc[:, None] - mean[None]) ** 2 / var[None] + np.log(var)[None])
        out[start:start + chunk] = logsumexp(exponent, axis=1)
    return out


def _log_mixture_gemm(z: np.ndarray, mean: np.ndarray, var: np.ndarray, chunk: int) -> np.ndarray:
    """log Σ_m exp(−½ Σ_j [(z_j − μ_mj)²/v_mj + log v_mj]) per row of z, by one GEMM per chunk."""
    n, d = mean.shape
    precision = 1.0 / var
    coef = np.empty((2 * d + 1, n))
    coef[:d] = -0.5 * precision.T
    coef[d:2 * d] = (mean * precision).T
    coef[2 * d] = -0.5 * (mean**2 * precision + np.log(var)).sum(axis=1)
    out = np.empty(z.shape[0])
    rows = min(chunk, z.shape[0])
    block, block32 = np.empty((rows, n)), np.empty((rows, n), dtype=np.float32)
    features = np.empty((rows, 2 * d + 1))
    for start in range(0, z.shape[0], rows):
        zc = z[start:start + rows]
        q = zc.shape[0]
        f, b, b32 = features[:q], block[:q], block32[:q]
        np.square(zc, out=f[:, :d])
        f[:, d:2 * d] = zc
        f[:, 2 * d] = 1.0
        np.matmul(f, coef, out=b)
        top = b.max(axis=1)
        b -= top[:, None]
        np.copyto(b32, b, casting="same_kind")
        np.exp(b32, out=b32)
        # float32 pairwise sum of terms ≤ 1 (one of them exactly 1): relative error ~1e-7
        out[start:start + q] = np.log(b32.sum(axis=1).astype(np.float64)) + top
    return out


def _log_mixture_1d(z: np.ndarray, mean: np.ndarray, var: np.ndarray, chunk: int) -> np.ndarray:
    """The one-dimensional case, elementwise (a GEMM with inner size 3 is far slower):
    Σ_m exp(−(z − μ_m)²/(2v_m)) · π_m with π_m = exp(c_m − max c), c_m = −½ log v_m, as one GEMV."""
    z, mean, var = z[:, 0], mean[:, 0], var[:, 0]
    # a float32 block: exp of the float64 exponent, then one GEMV with the component weights
    half_precision = -0.5 / var
    c = -0.5 * np.log(var)
    c_max = float(c.max())
    weight = np.exp(c - c_max).astype(np.float32)
    out = np.empty(z.shape[0])
    rows = min(chunk, z.shape[0])
    block, block32 = np.empty((rows, mean.size)), np.empty((rows, mean.size), dtype=np.float32)
    for start in range(0, z.shape[0], rows):
        zc = z[start:start + rows]
        q = zc.shape[0]
        b, b32 = block[:q], block32[:q]
        np.subtract(zc[:, None], mean[None, :], out=b)     # the difference in float64: no cancellation
        np.square(b, out=b)
        np.multiply(b, half_precision, out=b32, casting="same_kind")
        np.exp(b32, out=b32)
        out[start:start + q] = (b32 @ weight).astype(np.float64)
    small = out < 1e-30                     # every term underflowed (a query far from all components)
    out = np.log(np.where(small, 1.0, out)) + c_max
    if small.any():
        out[small] = _exact_rows(z[small], mean, var, rows)
    return out


def log_aggregate_posterior(z: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
                            chunk_size: int | None = None) -> np.ndarray:
    """log q(z) = log (1/N) Σ_m N(z; mean_m, diag var_m) at each row of ``z``, nats.

    Parameters
    ----------
    z : ndarray (Q, d)
        Query points.
    mean, var : ndarray (N, d)
        The N diagonal Gaussian components (variances, not stds).
    chunk_size : int, optional
        Query rows per block; memory is O(chunk_size · N). Default: a cache-sized block.

    Returns
    -------
    ndarray (Q,)
        float64, every constant included.
    """
    mean, var = _gaussians(mean, var)
    z = as_2d_finite("z", z).astype(np.float64, copy=False)
    n, d = mean.shape
    if z.shape[1] != d:
        raise DataError(f"z has {z.shape[1]} dimensions but the components have {d}")
    centre = mean.mean(axis=0)
    z, mean = z - centre, mean - centre
    if d == 1:
        log_sum = _log_mixture_1d(z, mean, var, _chunk(chunk_size, n, _ELEMENTWISE_BLOCK))
    else:
        log_sum = _log_mixture_gemm(z, mean, var, _chunk(chunk_size, n, _GEMM_BLOCK))
    return log_sum - 0.5 * d * LOG_2PI - math.log(n)


def _neg_entropy(var: np.ndarray) -> np.ndarray:
    """E_q[log q(z|x_n)] per example (summed over dimensions), nats."""
    return neg_entropy(torch.from_numpy(var)).sum(dim=1).numpy()


def _samples(mean: np.ndarray, var: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """z ~ q(z|x_n), shape (n_samples, N, d)."""
    return mean + np.sqrt(var) * rng.standard_normal((n_samples, *mean.shape))


def mutual_info_minibatch(mean: np.ndarray, var: np.ndarray, batch_size: int = 128, seed: int = 0) -> dict[str, Any]:
    """He et al.'s minibatch estimate of I_q(x; z) (docs/metrics.md §3b).

    The estimator needs minibatches drawn at random from the data distribution: the examples are first
    put in a seeded random order (batches of data sorted by class would estimate I(x; z | class)
    instead). One sample z_i ~ q(z|x_i) per example; within each minibatch, log q̂(z_i) =
    logsumexp_{j in batch} log q(z_i|x_j) − log B, **j = i included**; the batch estimate is the mean of
    E_q[log q(z|x_i)] (analytic) − log q̂(z_i), and the dataset value the size-weighted average over
    batches. Because q̂(z_i) ≥ q(z_i|x_i)/B it cannot exceed log B on average: it saturates for
    informative encoders. It can come out negative by Monte Carlo error (the true value is ≥ 0).

    Returns
    -------
    dict
        ``mutual_info`` (nats), ``stderr`` (its Monte Carlo standard error from the spread of the batch
        estimates; None with a single batch), ``ci`` ([low, high], ± 1.96 standard errors, or None),
        ``ceiling`` = log min(B, N), ``batch_size``, ``n_batches``.
    """
    mean, var = _gaussians(mean, var)
    batch_size = count("batch_size", batch_size)
    n = mean.shape[0]
    z = _samples(mean, var, 1, np.random.default_rng(seed))[0]      # the same draws as mutual_info's
    order = np.random.default_rng([seed, 1]).permutation(n)           # a stream of its own for the batches
    mean, var, z = mean[order], var[order], z[order]
    negative_entropy = _neg_entropy(var)
    sums, sizes = [], []
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        # Σ over the batch of its per-example terms: the size-weighted average needs only the sums.
        sums.append(float((negative_entropy[rows] - log_aggregate_posterior(z[rows], mean[rows], var[rows])).sum()))
        sizes.append(rows.stop - rows.start)
    estimate = sum(sums) / n
    stderr = ci = None
    if len(sums) > 1:
        batch_means, weights = np.asarray(sums) / np.asarray(sizes), np.asarray(sizes) / n
        # the weighted mean of (nearly) independent batch estimates: Var = Σ w_b² σ², σ² from their spread
        spread = float(np.sum(weights * (batch_means - estimate) ** 2) / (1.0 - np.sum(weights**2)))
        stderr = math.sqrt(spread * float(np.sum(weights**2)))
        ci = [estimate - 1.96 * stderr, estimate + 1.96 * stderr]
    return {"mutual_info": estimate, "stderr": stderr, "ci": ci, "ceiling": math.log(min(batch_size, n)),
            "batch_size": batch_size, "n_batches": len(sums), "units": "nats"}


def mutual_info_one_batch(mean: torch.Tensor, var: torch.Tensor,
                          generator: torch.Generator) -> tuple[float | None, float | None]:
    """He et al. (2019)'s minibatch estimate of I(x; z) on one batch, on the tensors' device, in float64:
    E[log q(z|x)] − E[log q(z)] with q(z) ≈ (1/B) Σ_j q(z|x_j) (own component included) and one draw
    z_i ~ q(z|x_i) from ``generator``. It is at most log B and can be negative (docs/metrics.md §3b).

    Parameters
    ----------
    mean, var : Tensor (B, d)
        Posterior means and variances of the batch.
    generator : torch.Generator
        On the tensors' device; the only source of randomness.

    Returns
    -------
    (float, float) or (None, None)
        The estimate and its ceiling log B, nats; (None, None) for fewer than 2 examples.
    """
    if mean.shape[0] < 2:
        return None, None
    mu, var = mean.double(), var.double()
    b = mu.shape[0]
    z = mu + var.sqrt() * torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    log_q = log_normal(z[:, None, :], mu[None], var[None]).sum(-1)       # (B, B): log q(z_i | x_j)
    log_qz = torch.logsumexp(log_q, dim=1) - math.log(b)
    mi = neg_entropy(var).sum(-1).mean() - log_qz.mean()
    return float(mi), math.log(b)


def _bootstrap_interval(values: np.ndarray, resamples: int, confidence: float,
                        rng: np.random.Generator) -> list[float]:
    means = np.empty(resamples)
    block = max(1, 2**22 // values.size)                 # resamples per block of indices (32 MiB)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = values[rng.integers(0, values.size, size=(stop - start, values.size))].mean(axis=1)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return [float(low), float(high)]


def mutual_info(mean: np.ndarray, var: np.ndarray, *, n_samples: int = 1, chunk_size: int | None = None,
                bootstrap: int = 200, confidence: float = 0.95, seed: int = 0, per_dim: bool = True,
                per_dim_queries: int | None = 2000) -> dict[str, Any]:
    """Full-dataset estimate of I_q(x; z) with the aggregate posterior over all N examples.

    Per example n, with K = ``n_samples`` draws z_nk ~ q(z|x_n), the contribution is
    c_n = E_q[log q(z|x_n)] (analytic) − (1/K) Σ_k log q(z_nk), q(z) the N-component mixture
    (:func:`log_aggregate_posterior`); the estimate is the mean of c_n. It estimates I_q(n; z), the
    information about *which* example was encoded, which is at most log N; it matches the
    population I(x; z) when the posteriors overlap enough for the mixture of N posteriors to
    represent q(z) (I well below log N; see the notes the report adds near the ceiling).

    Parameters
    ----------
    mean, var : ndarray (N, d)
        Posterior means and variances.
    n_samples : int
        K, posterior samples per example.
    chunk_size : int, optional
        Query points per block; memory O(chunk_size · N), never N × N × d.
    bootstrap : int
        Resamples for the confidence interval (0: none). The bootstrap resamples the per-example
        contributions c_n with replacement, holding the mixture q(z) fixed: it captures the
        variability of the outer average (which examples, which posterior samples), not the bias
        of representing q(z) by N posteriors, nor the uncertainty of the encoder itself.
    confidence : float
        Level of the percentile interval.
    seed : int
        Seeds the posterior samples, the bootstrap and the per-dimension query subset.
    per_dim : bool
        Also estimate I(x; z_j) for each dimension alone (the same estimator on one coordinate;
        the values do not sum to the joint one).
    per_dim_queries : int or None
        Per-dimension values average c_n over this many randomly chosen examples (the mixture
        still has all N components): the 1-d kernel costs N² per dimension, about 0.2 s for
        N = 10,000, so exact per-dimension values for d = 32 take seconds. None: all N examples.

    Returns
    -------
    dict
        ``mutual_info``, ``ci`` ([low, high], or None without bootstrap), ``std_error`` (of the
        mean of c_n), ``per_example`` c_n (N,), ``per_dim`` (d,) or None, ``per_dim_std_error``,
        ``per_dim_queries`` (examples used), ``ceiling`` = log N, ``n_samples``, ``confidence``.
    """
    mean, var = _gaussians(mean, var)
    n, d = mean.shape
    if n < 2:
        raise DataError(f"mean: mutual information needs at least 2 examples, got {n}")
    n_samples = count("n_samples", n_samples)
    bootstrap = count("bootstrap", bootstrap, minimum=0)
    confidence = real("confidence", confidence)
    if not 0 < confidence < 1:
        raise ParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    queries = n if per_dim_queries is None else min(n, count("per_dim_queries", per_dim_queries, minimum=2))
    rng = np.random.default_rng(seed)
    z = _samples(mean, var, n_samples, rng)
    log_q = log_aggregate_posterior(z.reshape(-1, d), mean, var, chunk_size=chunk_size).reshape(n_samples, n)
    contributions = _neg_entropy(var) - log_q.mean(axis=0)
    out: dict[str, Any] = {
        "mutual_info": float(contributions.mean()), "std_error": float(contributions.std(ddof=1) / math.sqrt(n)),
        "ci": _bootstrap_interval(contributions, bootstrap, confidence, rng) if bootstrap else None,
        "confidence": confidence, "per_example": contributions, "per_dim": None, "per_dim_std_error": None,
        "per_dim_queries": queries if per_dim else 0, "ceiling": math.log(n), "n_samples": n_samples,
        "units": "nats"}
    if per_dim:
        subset = np.arange(n) if queries == n else np.sort(rng.choice(n, size=queries, replace=False))
        values, errors = np.empty(d), np.empty(d)
        for j in range(d):
            mj, vj = mean[:, j:j + 1], var[:, j:j + 1]
            log_qj = log_aggregate_posterior(z[:, subset, j].reshape(-1, 1), mj, vj,
                                             chunk_size=chunk_size).reshape(n_samples, queries)
            cj = _neg_entropy(vj[subset]) - log_qj.mean(axis=0)
            values[j], errors[j] = cj.mean(), cj.std(ddof=1) / math.sqrt(queries)
        out["per_dim"], out["per_dim_std_error"] = values, errors
    return out
