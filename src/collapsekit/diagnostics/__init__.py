"""Diagnostics: measure posterior collapse in a trained (or training) model.

One pass over the evaluation data collects, per latent level, the posterior mean, variance, one
sample and the KL to the prior of every example (:mod:`.posterior`); every metric reuses those
arrays (:mod:`.metrics`, :mod:`.mutual_info`); the importance-sampled log-likelihood and ELBO run
the decoder (:mod:`.likelihood`); :mod:`.diagnose` puts it all into a :class:`CollapseReport`.
All values are in nats.

>>> report = diagnose_model(model, x_test)                        # doctest: +SKIP
>>> report.kl_per_dim, report.active_units, report.mutual_info   # doctest: +SKIP
>>> report = diagnose(my_encoder, x_test, decoder=my_decoder)    # any Gaussian encoder  # doctest: +SKIP

Diagnosing a run directory (``diagnose_run``) needs the trainer's checkpoints and configs: it
lives in :mod:`collapsekit.runs`, above both this package and :mod:`collapsekit.training`.
"""

from typing import Any

from collapsekit.diagnostics.adapted import MUTUAL_INFO_EXAMPLES, AdapterPass, batches_of, collect_from_adapter
from collapsekit.diagnostics.diagnose import EPSILONS, diagnose, diagnose_adapter, diagnose_model, measure_level
from collapsekit.diagnostics.gaussian import LOG_2PI, kl_to_prior, log_normal, neg_entropy
from collapsekit.diagnostics.likelihood import (importance_sampled_log_likelihood,
                                                importance_sampled_log_likelihood_from)
from collapsekit.diagnostics.metric_registry import METRICS, Metric, register_metric, unregister_metric
from collapsekit.diagnostics.metrics import (VARIABLE_TYPES, active_fraction, active_units, collapse_fractions,
                                             eps_delta_collapse, kl_per_dim, mean_sampled_correlation, variable_types)
from collapsekit.diagnostics.mutual_info import log_aggregate_posterior, mutual_info, mutual_info_minibatch
from collapsekit.diagnostics.posterior import LevelStats, PosteriorStats, collect_from_encoder, collect_posterior
from collapsekit.diagnostics.report import CollapseReport, LevelReport, TheoryComparison
from collapsekit.diagnostics.theory_compare import TheorySetting, compare_with_theory

__all__ = [
    "EPSILONS", "LOG_2PI", "METRICS", "MUTUAL_INFO_EXAMPLES", "VARIABLE_TYPES", "AdapterPass", "CollapseReport", "LevelReport", "LevelStats", "Metric",
    "PosteriorStats",
    "TheoryComparison", "TheorySetting", "compare_with_theory", "active_fraction", "active_units",
    "batches_of", "collapse_fractions", "collect_from_adapter", "collect_from_encoder", "diagnose_adapter",
    "collect_posterior", "diagnose", "diagnose_model", "eps_delta_collapse", "importance_sampled_log_likelihood",
    "importance_sampled_log_likelihood_from", "kl_per_dim", "kl_to_prior", "log_aggregate_posterior", "log_normal",
    "mean_sampled_correlation", "measure_level", "mutual_info", "mutual_info_minibatch", "neg_entropy",
    "register_metric", "unregister_metric", "variable_types",
]


# Moved names: this package sits below collapsekit.runs and does not import it (not even lazily), so
# the old path cannot be kept as a re-export; it says where the name went instead.
_MOVED = {"diagnose_run": "collapsekit.runs", "RunDiagnosis": "collapsekit.runs"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        # ImportError, not AttributeError: `from collapsekit.diagnostics import diagnose_run` then shows
        # this message rather than Python's generic "cannot import name".
        raise ImportError(f"collapsekit.diagnostics.{name} moved to {_MOVED[name]}: "
                          f"use `from {_MOVED[name]} import {name}` (see CHANGELOG.md)")
    raise AttributeError(f"module 'collapsekit.diagnostics' has no attribute {name!r}")
