"""Measure posterior collapse: one pass over the data, every metric, one :class:`CollapseReport`.

* :func:`diagnose` — any model: an encoder ``x -> (mu, log_var)`` or ``Normal`` (and optionally a
  decoder ``z -> Distribution`` for the likelihood), prior N(0, η_enc² I).
* :func:`diagnose_model` — collapsekit's VAE, CVAE and hierarchies: every latent level, the ELBO
  and the importance-sampled log-likelihood.
* :func:`measure_level` — the metrics of one level from its :class:`~.posterior.LevelStats`.

The theory comparison (``LevelReport.theory``) is added separately.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from collapsekit._validation import resolve_device
from collapsekit.activity import active_mask, count_active
from collapsekit.adapters import FunctionAdapter, ModelAdapter, as_adapter, find_adapter
from collapsekit.data import Dataset
from collapsekit.models.cvae import CVAE
from collapsekit.diagnostics import metrics
from collapsekit.diagnostics.headline import BATCH_SIZE, POSTERIOR_SAMPLES, SEED
from collapsekit.diagnostics.metric_registry import compute_metrics
from collapsekit.diagnostics.adapted import MUTUAL_INFO_EXAMPLES, collect_from_adapter, spatial_fields
from collapsekit.diagnostics.likelihood import (Decoder, Progress, importance_sampled_log_likelihood,
                                                importance_sampled_log_likelihood_from)
from collapsekit.diagnostics.mutual_info import mutual_info, mutual_info_minibatch
from collapsekit.diagnostics.posterior import (Encoder, LevelStats, PosteriorStats, collect_from_encoder,
                                               collect_posterior)
from collapsekit.diagnostics.report import CollapseReport, LevelReport
from collapsekit.models._checks import count

#: The ε of the (ε, δ)-collapse sweep (docs/metrics.md §10).
EPSILONS = (0.01, 0.05, 0.1)
#: The stages :func:`diagnose_model` reports to its ``progress`` callback (the likelihood's: :func:`likelihood_stage`).
POSTERIOR_STAGE = "posterior pass (examples)"
METRICS_STAGE = "metrics (latent levels)"


def likelihood_stage(n_samples: int) -> str:
    """The name of the importance-sampled likelihood's stage."""
    return f"log-likelihood, {n_samples} importance samples (examples)"


def measure_level(stats: LevelStats, *, minibatch_size: int = 128, mi_bootstrap: int = 200,
                  mi_samples: int = 1, mi_per_dim_queries: int | None = 2000,
                  epsilons: Sequence[float] = EPSILONS, epsilon: float = 0.01, delta: float = 0.01,
                  active_units_threshold: float = 0.01, kl_threshold: float = 0.01, seed: int = 0,
                  mutual_info_examples: int | None = None) -> LevelReport:
    """Every metric of one latent level (``theory`` left None).

    Parameters
    ----------
    stats : LevelStats
        From :func:`~.posterior.collect_posterior` or :func:`~.posterior.collect_from_encoder`.
    minibatch_size : int
        B of He et al.'s minibatch mutual information (its ceiling is log B).
    mi_bootstrap, mi_samples, mi_per_dim_queries
        Bootstrap resamples, posterior samples per example and per-dimension query examples of
        the full-dataset mutual information (:func:`~.mutual_info.mutual_info`).
    epsilons : sequence of float
        ε values of the (ε, δ)-collapsed fraction.
    epsilon, delta : float
        The (ε, δ) of the per-dimension ``collapsed`` flags.
    active_units_threshold : float
        Threshold on Var_x E_q[z_j] (Burda et al.).
    kl_threshold : float
        Threshold on KL_j(x) of the paper's active fraction.
    seed : int
        Seeds the mutual-information estimators.
    mutual_info_examples : int, optional
        The full-dataset mutual information on at most this many examples, a seeded random subset (its
        cost grows as N²); None: all of them. Every other measure uses all examples.
    """
    rate = metrics.kl_per_dim(stats.kl)
    units = metrics.active_units(stats.mean, active_units_threshold)
    fraction = metrics.active_fraction(stats.kl, kl_threshold)
    collapse = metrics.eps_delta_collapse(stats.kl, epsilon, delta)
    sweep = metrics.collapse_fractions(stats.kl, epsilons, delta)
    types = metrics.variable_types(stats.var, prior_var=stats.prior_var)
    correlation = metrics.mean_sampled_correlation(stats.mean, stats.sample, types["types"])
    correlation.pop("units")
    mi_mean, mi_var = stats.mean, stats.var
    if mutual_info_examples is not None and stats.n > count("mutual_info_examples", mutual_info_examples):
        subset = np.sort(np.random.default_rng(seed).choice(stats.n, size=mutual_info_examples, replace=False))
        mi_mean, mi_var = stats.mean[subset], stats.var[subset]
    full = mutual_info(mi_mean, mi_var, n_samples=mi_samples, bootstrap=mi_bootstrap, seed=seed,
                       per_dim_queries=mi_per_dim_queries)
    minibatch = mutual_info_minibatch(stats.mean, stats.var, batch_size=minibatch_size, seed=seed)
    return LevelReport(
        name=stats.name, latent_dim=stats.latent_dim, kl_per_dim=rate["kl_per_dim"].tolist(), rate=rate["rate"],
        kl_exact=stats.kl_exact, variance_of_mean=units["variance_of_mean"].tolist(),
        active_units=units["active_units"], active_fraction=fraction["active_fraction"],
        active_fraction_per_dim=fraction["active_fraction_per_dim"].tolist(),
        active=[bool(a) for a in active_mask(rate["kl_per_dim"])], n_active=count_active(rate["kl_per_dim"]),
        eps_delta_collapsed=[bool(c) for c in collapse["collapsed"]], collapse_fraction=sweep["collapse_fraction"],
        variable_types=types["types"], mean_sampled_correlation=correlation,
        mutual_info=full["mutual_info"], mutual_info_ci=[] if full["ci"] is None else full["ci"],
        mutual_info_per_dim=full["per_dim"].tolist(), mutual_info_minibatch=minibatch["mutual_info"],
        mutual_info_ceiling=minibatch["ceiling"], minibatch_size=minibatch["batch_size"],
        mutual_info_minibatch_ci=minibatch["ci"] or [],
        prior_std=stats.prior_std, active_units_threshold=units["threshold"], kl_threshold=fraction["threshold"],
        epsilon=collapse["epsilon"], delta=collapse["delta"], metrics=compute_metrics(stats))


def _level_notes(stats: PosteriorStats, levels: list[LevelReport]) -> list[str]:
    """What a reader must know to read the numbers right."""
    notes = []
    for level_stats, level in zip(stats.levels, levels):
        if level.mutual_info > math.log(stats.n) - 1.0:
            notes.append(f"{level.name}: the full-dataset I(x; z) = {level.mutual_info:.2f} nats is within 1 nat "
                         f"of its ceiling log N = {math.log(stats.n):.2f}: N posteriors cannot resolve more "
                         "information; read it as a lower bound (more examples raise the ceiling)")
        if level.mutual_info_minibatch > 0.9 * level.mutual_info_ceiling:
            notes.append(f"{level.name}: the minibatch I(x; z) = {level.mutual_info_minibatch:.2f} nats is near its "
                         f"ceiling log B = {level.mutual_info_ceiling:.2f} (B = {level.minibatch_size}); it saturates, "
                         "compare runs at equal B only")
        if not level_stats.kl_exact:
            notes.append(f"{level.name}: KL to the conditional prior p({level.name}|level above) is a paired Monte "
                         f"Carlo estimate ({level_stats.kl_samples} samples per example); single values can be "
                         "negative")
    if len(stats.levels) > 1:
        notes.append("upper levels are measured from q(z_l | z_{l-1}) at one sampled z_{l-1} per example "
                     "(as Burda et al.): their mutual information is I(z_{l-1}; z_l), an upper bound on I(x; z_l)")
    return notes


def _rows(data: object) -> tuple[object, object | None]:
    """(x, y) of a Dataset, or (data, None)."""
    return (data.x, data.y) if isinstance(data, Dataset) else (data, None)


def _likelihood_fields(ll: np.ndarray, elbo: np.ndarray, n_samples: int) -> dict[str, Any]:
    return {"log_likelihood": float(ll.mean()), "elbo": float(elbo.mean()), "importance_samples": n_samples,
            "log_likelihood_per_example": ll, "elbo_per_example": elbo}


def _is_rows(data: object) -> bool:
    """Data the original path reads: an (N, D) tensor/array/Dataset or nested lists of numbers."""
    if isinstance(data, Dataset):
        data = data.x
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data.ndim == 2
    return isinstance(data, (list, tuple)) and bool(data) and isinstance(data[0], (list, tuple)) and bool(data[0]) \
        and isinstance(data[0][0], (int, float))


def diagnose(encoder: Encoder | object, data: object, decoder: Decoder | None = None, *, eta_enc: float = 1.0,
             n_samples: int = 1000, batch_size: int = 1024, sample_chunk: int = 100,
             likelihood_batch_size: int | None = None, seed: int = 0, on_batch: Progress | None = None,
             device: torch.device | str | None = None, **measure: Any) -> CollapseReport:
    """Diagnose posterior collapse of any model: one you already have, or a Gaussian encoder (and decoder).

    ``diagnose(model, data)`` with a model an adapter knows (collapsekit's VAE/CVAE, Pythae's VAE family,
    diffusers' ``AutoencoderKL``, an adapter, or a family added by ``register_adapter``) goes through
    :func:`diagnose_adapter`, as do data other than an (N, D) array (a ``DataLoader``, any iterable of
    batches, images N × C × H × W) and latents of any shape.

    Parameters
    ----------
    encoder : model or callable
        A model an adapter knows, or ``encoder(x_batch)`` → ``(mu, log_var)`` (each (B, d)) or a diagonal
        ``torch.distributions.Normal``. An ``nn.Module`` runs in eval mode on its own device.
    data : tensor, array, Dataset, DataLoader or iterable of batches
        Evaluation inputs: (N, D) rows, inputs of any shape (N, ...), or batches as a loader yields them
        (``x``, ``(x, label)``, a dict with ``"x"``/``"data"``/``"pixel_values"``...).
    decoder : callable, optional
        ``decoder(z)`` → Distribution over x, z of shape (S·B, d) (see
        :func:`~.likelihood.importance_sampled_log_likelihood_from`). Without it the report has
        no ELBO or log-likelihood, and ``notes`` says so.
    eta_enc : float
        Prior std η_enc: the KL is to N(0, η_enc² I) and variable types scale by η_enc².
    n_samples : int
        Importance samples per example for the log-likelihood.
    batch_size : int
        Examples per encoder call in the statistics pass.
    sample_chunk, likelihood_batch_size
        Samples and examples per decoder pass of the likelihood.
    seed : int
        Seeds every sample; results are reproducible and the global RNG state is restored.
    on_batch : callable, optional
        ``on_batch(done, total)`` during the likelihood.
    device : torch.device or str, optional
        Where the encoder and decoder run: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when
        available, else the CPU). Modules are moved there for the call and back afterwards, and the
        data go there batch by batch, for a plain function too. ``None`` (default) moves nothing: the
        batches go to a module encoder's device, and a plain function gets them where the data are (a
        tensor on a GPU stays there).
    **measure
        Passed to :func:`measure_level` (``minibatch_size``, ``mi_bootstrap``, ``epsilons``, ...), or for a
        model an adapter reads, to :func:`diagnose_adapter` (``adapter_options``, ``mutual_info_examples``).

    Returns
    -------
    CollapseReport
        One level ``"z"``.
    """
    if decoder is None and (isinstance(encoder, ModelAdapter) or find_adapter(encoder) is not None):
        return diagnose_adapter(encoder, data, n_samples=n_samples, batch_size=batch_size, sample_chunk=sample_chunk,
                                likelihood_batch_size=likelihood_batch_size, seed=seed, on_batch=on_batch,
                                device=device, **measure)
    if not _is_rows(data):
        adapter = FunctionAdapter(encoder, decoder, prior_std=eta_enc)      # type: ignore[arg-type]
        return diagnose_adapter(adapter, data, n_samples=n_samples, batch_size=batch_size, sample_chunk=sample_chunk,
                                likelihood_batch_size=likelihood_batch_size, seed=seed, on_batch=on_batch,
                                device=device, **measure)
    x, _ = _rows(data)
    device = None if device is None else resolve_device(device)
    stats = collect_from_encoder(encoder, x, eta_enc=eta_enc, batch_size=batch_size, seed=seed, device=device)
    levels = [measure_level(level, seed=seed, **measure) for level in stats.levels]
    report = CollapseReport(levels=levels, n_examples=stats.n,
                            model={"kind": "custom", "latent_dims": [levels[0].latent_dim], "eta_enc": eta_enc},
                            notes=_level_notes(stats, levels))
    if decoder is None:
        report.notes.append("no decoder given: the ELBO and the importance-sampled log-likelihood need one "
                            "(pass decoder=..., a callable z -> torch.distributions.Distribution over x)")
        return report
    ll, elbo = importance_sampled_log_likelihood_from(encoder, decoder, x, eta_enc=eta_enc, n_samples=n_samples,
                                                      sample_chunk=sample_chunk, batch_size=likelihood_batch_size,
                                                      seed=seed, on_batch=on_batch, device=device)
    for key, value in _likelihood_fields(ll, elbo, n_samples).items():
        setattr(report, key, value)
    return report


def diagnose_adapter(model: object, data: object, *, n_samples: int | None = 1000, batch_size: int = 256,
                     sample_chunk: int = 100, likelihood_batch_size: int | None = None, seed: int = 0,
                     on_batch: Progress | None = None, device: torch.device | str | None = None,
                     mutual_info_examples: int | None = MUTUAL_INFO_EXAMPLES,
                     adapter_options: dict[str, Any] | None = None, **measure: Any) -> CollapseReport:
    """Diagnose any model through its adapter, streaming over the data (:mod:`.adapted`).

    Parameters
    ----------
    model : object
        An adapter, or anything :func:`~collapsekit.adapters.as_adapter` adapts.
    data : tensor, array, Dataset, DataLoader or iterable of batches
        Read once, batch by batch (a generator works); inputs of any shape (N, ...).
    n_samples : int or None
        Importance samples per example for the log-likelihood; None skips it.
    batch_size : int
        Rows per batch when ``data`` is a tensor, an array or a Dataset (a loader keeps its own).
    sample_chunk, likelihood_batch_size, seed, on_batch, device
        As for :func:`diagnose`.
    mutual_info_examples : int or None
        The full-dataset mutual information uses at most this many examples (a seeded random subset; the
        report notes it); None: all.
    adapter_options : dict, optional
        Passed to ``as_adapter`` (e.g. ``{"beta": 4.0}``).
    **measure
        Passed to :func:`measure_level`.

    Returns
    -------
    CollapseReport
        One level ``"z"`` (latents flattened to C·h·w dimensions); a spatial latent also per channel and per
        position (``LevelReport.kl_per_channel``, ...) with active channels as the headline count.
        ``model`` holds the adapter's name, latent shape, η_enc and β; ``notes`` its stand-ins.
    """
    adapter = as_adapter(model, **(adapter_options or {}))
    device = None if device is None else resolve_device(device)
    result = collect_from_adapter(adapter, data, batch_size=batch_size, n_samples=n_samples,
                                  sample_chunk=sample_chunk, likelihood_batch_size=likelihood_batch_size, seed=seed,
                                  device=device, on_batch=on_batch)
    stats = result.stats
    level = measure_level(stats.levels[0], seed=seed, mutual_info_examples=mutual_info_examples, **measure)
    notes = list(adapter.notes) + _level_notes(stats, [level])
    if mutual_info_examples is not None and stats.n > mutual_info_examples:
        notes.append(f"z: the full-dataset I(x; z) is estimated on a random subset of {mutual_info_examples} of the "
                     f"{stats.n} examples (its cost grows as N²); every other measure uses all {stats.n}")
    shape = result.latent_shape
    if len(shape) > 1:
        for key, value in spatial_fields(level.kl_per_dim, shape).items():
            setattr(level, key, value)
        notes.append(f"z is spatial, {'×'.join(map(str, shape))}: the headline count is of channels "
                     f"({level.n_active_channels} of {shape[0]} active; a channel's KL is the sum over its "
                     f"{int(np.prod(shape[1:]))} positions); per-dimension measures count channel×position units")
    report = CollapseReport(levels=[level], n_examples=stats.n,
                            model={"kind": "adapter", "name": adapter.name, "latent_shape": list(shape),
                                   "latent_dims": [int(np.prod(shape))], "eta_enc": float(adapter.prior_std),
                                   "beta": adapter.beta},
                            notes=notes)
    if result.log_likelihood is None or result.elbo is None:
        report.notes.append("likelihood skipped (n_samples=None): no ELBO or log-likelihood" if n_samples is None
                            else f"{adapter.name} has no likelihood (decode returned None): no ELBO or log-likelihood")
        return report
    for key, value in _likelihood_fields(result.log_likelihood, result.elbo, int(n_samples or 0)).items():
        setattr(report, key, value)
    return report


def _model_info(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    info: dict[str, Any] = {"class": type(model).__name__,
                            "latent_dims": [int(d) for d in getattr(model, "latent_dims", ())]}
    if isinstance(config, dict):
        info["kind"] = config.get("kind")
        info["config"] = config
    return info


def diagnose_model(model: nn.Module, x: object, y: object | None = None, *, n_samples: int | None = 1000,
                   posterior_samples: int = POSTERIOR_SAMPLES, batch_size: int = BATCH_SIZE, sample_chunk: int = 100,
                   likelihood_batch_size: int | None = None, seed: int = SEED, on_batch: Progress | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   device: torch.device | str | None = None, **measure: Any) -> CollapseReport:
    """Diagnose one of collapsekit's models: every latent level, the ELBO and the log-likelihood.

    Parameters
    ----------
    model : nn.Module
        A :class:`~collapsekit.models.VAE`, :class:`~collapsekit.models.CVAE` or
        :class:`~collapsekit.models.HierarchicalVAE`.
    x, y : tensor, array or Dataset
        Evaluation data; for a CVAE, y (or a Dataset with ``y``, passed as x).
    n_samples : int or None
        Importance samples per example (log p(x), or log p(y|x) for a CVAE); None skips the
        likelihood.
    posterior_samples : int
        Samples averaged in the Monte Carlo KL of a hierarchy's levels.
    batch_size : int
        Examples per forward pass of the statistics pass.
    sample_chunk, likelihood_batch_size, seed, on_batch, **measure
        As for :func:`diagnose`.
    progress : callable, optional
        ``progress(stage, done, total)`` through the three stages: :data:`POSTERIOR_STAGE` (examples),
        :data:`METRICS_STAGE` (latent levels) and the likelihood (:func:`likelihood_stage`, examples).
    device : torch.device or str, optional
        Where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``: CUDA when available): it is
        moved there for the call and back afterwards. ``None`` (default): where its parameters are. The
        data go to the model's device batch by batch, wherever they are.

    Returns
    -------
    CollapseReport
        Levels bottom to top.
    """
    if isinstance(x, Dataset):
        x, data_y = _rows(x)
        y = data_y if y is None and isinstance(model, CVAE) else y
    stage = progress if progress is not None else (lambda name, done, total: None)
    device = None if device is None else resolve_device(device)
    stats = collect_posterior(model, x, y, batch_size=batch_size, n_samples=posterior_samples, seed=seed,
                              on_batch=lambda done, total: stage(POSTERIOR_STAGE, done, total), device=device)
    levels = []
    for index, level in enumerate(stats.levels):
        stage(METRICS_STAGE, index, len(stats.levels))
        levels.append(measure_level(level, seed=seed, **measure))
    stage(METRICS_STAGE, len(stats.levels), len(stats.levels))
    report = CollapseReport(levels=levels, n_examples=stats.n, model=_model_info(model),
                            notes=_level_notes(stats, levels))
    if n_samples is None:
        report.notes.append("likelihood skipped (n_samples=None): no ELBO or log-likelihood")
        return report
    n_samples = count("n_samples", n_samples)

    def likelihood_batch(done: int, total: int) -> None:
        stage(likelihood_stage(n_samples), done, total)
        if on_batch is not None:
            on_batch(done, total)

    stage(likelihood_stage(n_samples), 0, stats.n)
    ll, elbo = importance_sampled_log_likelihood(model, x, y, n_samples=n_samples, sample_chunk=sample_chunk,
                                                 batch_size=likelihood_batch_size, seed=seed,
                                                 on_batch=likelihood_batch, device=device)
    for key, value in _likelihood_fields(ll, elbo, n_samples).items():
        setattr(report, key, value)
    return report
