"""Forecasts of how many latent dimensions a configured run will keep, before or early in training.

Every method has one signature — a configuration and its data in, a :class:`Forecast` out (count, interval,
per-rank KL, method, cost as a fraction of the run's optimiser steps): :func:`closed_form`, :func:`posthoc`,
:func:`adjusted`, :func:`shifted` (cost 0) and :func:`early` (a prefix of the run). :func:`forecast_config` is the one
``collapsekit forecast`` runs; :func:`recommend_beta` (``--keep K``) the largest β that keeps K dimensions.
docs/forecast.md gives each method's measured accuracy on the benchmark of
nonlinear configurations (bench/forecast/).
"""

from collapsekit.forecast.accuracy import MEASURED, benchmark_accuracy, evidence
from collapsekit.forecast.closed_form import (adjusted, bernoulli_eta, centred_moments, closed_form, closed_form_kl,
                                              compact, final_beta_scale, learned_eta_estimate, method_kl, posthoc,
                                              shifted, total_steps)
from collapsekit.diagnostics.forecast_intervals import conformal_interval, conformal_quantile
from collapsekit.forecast.early import base, early, extrapolate, prefix_epochs, prefix_problem, train_prefix, train_prefixes
from collapsekit.forecast.recommend import BetaRecommendation, pilot_grid, recommend_beta
from collapsekit.forecast.result import Forecast
from collapsekit.forecast.run import forecast_config, needs_run_dir

__all__ = ["MEASURED", "BetaRecommendation", "Forecast", "adjusted", "base", "benchmark_accuracy", "bernoulli_eta", "centred_moments",
           "closed_form", "closed_form_kl", "compact", "conformal_interval", "conformal_quantile", "early", "evidence",
           "extrapolate", "final_beta_scale",
           "forecast_config", "learned_eta_estimate", "method_kl", "needs_run_dir", "posthoc", "prefix_epochs",
           "pilot_grid", "prefix_problem", "recommend_beta", "shifted", "total_steps", "train_prefix", "train_prefixes"]
