"""The pure kernels of the end-of-run forecast, one home for both users: :mod:`collapsekit.forecast` (the methods
``collapsekit forecast`` runs) and the collapse monitor (:mod:`collapsekit.training.monitor`, which forecasts
during training). They sit here, below both, because the monitor may not import the forecast package.

* :func:`closed_form_kl` — the linear optimum's KL per rank (docs/theory.md §2) for a configuration and moments,
  any likelihood treated as Gaussian; :func:`compact` — the same moments in fewer coordinates;
* :func:`extrapolate` — each dimension's KL at the end of the run from its KL trajectory so far;
* :func:`blend` — the extrapolation and the closed form combined;
* :func:`free_bits_floor` — what free bits do to a forecast KL per dimension;
* :func:`early_interval` — the early forecast's stated interval: split-conformal, the count ± the half-width
  calibrated on the benchmark's tuning split for the configuration's regime (:mod:`.forecast_intervals`);
* :func:`interval_counts` — the older interval of a forecast KL per rank (the counts clearing the threshold times /
  divided by a factor), kept for an explicit ``width``;
* re-exported from :mod:`.forecast_accuracy` (the benchmark's numbers): :data:`EARLY_DEFAULTS`, the early-training
  method's constants tuned on its tuning split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.diagnostics.forecast_accuracy import EARLY_DEFAULTS
from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width
from collapsekit.diagnostics.theory_compare import TheorySetting, predict_for, unsupported_reason
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments

__all__ = ["COMPACT_MODES", "EARLY_DEFAULTS", "FLOOR", "blend", "closed_form_kl", "compact", "early_interval",
           "extrapolate", "interval_counts"]

#: Smallest KL (nats) a trajectory is read at: log KL of a fully collapsed dimension stays finite.
FLOOR = 1e-6
#: Leading modes kept by :func:`compact`: more than any latent size of the benchmark.
COMPACT_MODES = 64


def compact(config: Any, moments: Moments) -> Moments:
    """Moments with the same VAE / hierarchy closed form in fewer coordinates: those closed forms depend on the
    leading eigenvalues of E[xxᵀ] only (rotation invariance), so a diagonal of the leading
    :data:`COMPACT_MODES` gives the same KL per dimension (a CVAE's moments are returned as they are)."""
    if config.model.kind == "cvae" or moments.d_x <= max(COMPACT_MODES, *config.model.latent_dims):
        return moments
    return Moments(xx=np.diag(moments.vae_spectrum()[:COMPACT_MODES] ** 2))


def closed_form_kl(config: Any, moments: Moments, *, beta_scale: float = 1.0,
                   eta_dec: float | None = None) -> np.ndarray:
    """The closed form's KL per dimension of the summary level (largest first) for ``config`` on ``moments``,
    treating any likelihood as Gaussian with decoder std ``eta_dec`` (default: the configured one)."""
    setting = TheorySetting.from_config(config, eta_dec=eta_dec, beta_scale=beta_scale)
    setting.likelihood, setting.objective = "gaussian", "elbo"
    if setting.kind == "hvae" and setting.sigma1 is None:
        raise ParameterError("the MHVAE closed form needs a fixed σ₁ (model.sigma1: a number)")
    reason = unsupported_reason(setting)
    if reason is not None:                 # e.g. a registered model family with no closed form
        raise ParameterError(f"no closed form for this configuration: {reason}")
    _, kl = list(predict_for(setting, moments).values())[-1]
    return np.sort(np.asarray(kl, float))[::-1]


def extrapolate(trajectory: Any, total_epochs: int, *, gamma: float, done: int | None = None) -> np.ndarray:
    """Each dimension's KL at the end of the run from its trajectory (rows: epochs, columns: dimensions).

    A dimension whose KL is falling has its log KL extrapolated linearly to the end of the run at ``gamma`` times
    its slope over the last two epochs (one where only two rows are given); a rising or flat one keeps its last
    value. Only the last three rows are read. ``done``: epochs of the run the last row closes (default: the rows
    given; the monitor, which keeps only the last rows, passes its epoch count).
    """
    kl = np.maximum(np.asarray(trajectory, float), FLOOR)
    if kl.ndim != 2 or kl.shape[0] < 1:
        raise ParameterError("a KL trajectory needs at least one epoch of per-dimension KL")
    rows = kl.shape[0]
    done = rows if done is None else int(done)
    last = np.log(kl[-1])
    if rows == 1:
        return np.exp(last)
    m = min(2, rows - 1)
    slope = (np.log(kl[-1]) - np.log(kl[-1 - m])) / m
    return np.exp(last + gamma * np.minimum(slope, 0.0) * max(total_epochs - done, 0))


def blend(ending: Any, theory: Any, weight: float) -> np.ndarray:
    """The early forecast's KL per rank blended with the closed form's, geometrically (in log KL, nats): weight
    ``weight`` on the extrapolated ``ending``, the rest on ``theory`` (floored at :data:`FLOOR`, cut to the
    ranks of ``ending``)."""
    ending = np.asarray(ending, float)
    theory = np.maximum(np.asarray(theory, float), FLOOR)[: ending.size]
    return np.exp(weight * np.log(ending) + (1 - weight) * np.log(theory))


def free_bits_floor(kl: Any, free_bits: float | None) -> np.ndarray:
    """A forecast KL per dimension (nats) under free bits λ: ``max(KL, λ)``.

    With free bits the objective charges ``max(KL_j, λ)`` per dimension, so a dimension whose KL is below λ gets no
    gradient from the KL term while the reconstruction term still pays for what it carries: its KL rises to about
    λ instead of collapsing (on the benchmark's free-bits runs, λ = 0.05, every dimension ended between 0.037 and
    0.067 nats). The linear closed form and a falling trajectory know nothing of this, hence the floor. Unchanged
    without free bits (``None`` or 0)."""
    kl = np.asarray(kl, float)
    return kl if not free_bits else np.maximum(kl, float(free_bits))


def interval_counts(kl: Any, width: float) -> tuple[int, int]:
    """``(lo, hi)``: the dimensions whose forecast KL clears the active threshold times / divided by ``width``."""
    values = np.asarray(kl, float)
    return (int(np.count_nonzero(values >= KL_ACTIVE_THRESHOLD * width)),
            int(np.count_nonzero(values >= KL_ACTIVE_THRESHOLD / width)))


def early_interval(n_active: int, latent_size: int, regime: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The early forecast's interval: ``n_active`` ± the conformal half-width ``CONFORMAL["early"]`` for the
    configuration's regime (:func:`~.forecast_intervals.regime_of`; None: the pooled one), clipped to
    ``[0, latent_size]`` — calibrated on the benchmark's tuning configurations where a prefix existed."""
    return conformal_interval(n_active, latent_size, half_width(CONFORMAL["early"], regime))
