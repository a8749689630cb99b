"""The collapse monitor's settings as one typed, validated object (:class:`MonitorOptions`).

``CollapseMonitor(patience=3, hyper={...})`` and ``CollapseMonitor(MonitorOptions(patience=3, hyper={...}))``
are the same monitor; keywords given beside an options object replace its fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapsekit._validation import positive, zero_beta
from collapsekit.diagnostics.explain import read_hyper
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments
from collapsekit.training.monitor.forecaster import check_base

#: How a plain loop's reconstruction loss may reduce over features.
LOSS_REDUCTIONS: tuple[str, ...] = ("sum", "mean")


@dataclass
class MonitorOptions:
    """Everything a :class:`~collapsekit.training.monitor.CollapseMonitor` is told, validated when made.

    Detection
    ---------
    eta_enc : float or dict of str to float
        Prior std η_enc used by ``update`` (a per-level dict is allowed); ``update_output`` reads each
        level's prior from the model instead.
    patience : int
        Consecutive epochs needed to confirm a collapse, and to confirm a recovery (2).
    recover_factor : float
        A warned dimension recovers only with KL ≥ ``recover_factor`` × 0.01 nats (2).
    au_threshold : float
        Burda et al.'s active-unit threshold on the variance over examples of the posterior mean (0.01).
    mi_examples : int
        The minibatch MI estimate (He et al. 2019) uses one batch of up to this many examples per epoch,
        the largest seen (the last of equal size); its value cannot exceed log B.
    seed : int
        Seed of the monitor's own generator (the MI estimate's samples).

    Reporting
    ---------
    warn : bool
        Issue :class:`~collapsekit.training.monitor.CollapseWarning` with :func:`warnings.warn`.
    log : callable, optional
        Called with the text of every warning and recovery (e.g. ``print`` or ``logger.warning``).

    What the explanations know of the run
    -------------------------------------
    model_kind : {"vae", "cvae", "hvae"}, optional
        For the explanations; inferred when omitted (``hvae`` if several levels are seen, ``cvae`` if
        the moments are paired, else ``vae``).
    moments : Moments, optional
        Raw second moments of the training data: the explanations then predict numbers.
    hyper : dict, optional
        ``beta`` (number, or one per level bottom to top), ``eta_dec``, ``eta_enc``, ``encoder_std``,
        ``sigma1``, ``sigma2``, ``latent_dims`` (see :func:`collapsekit.diagnostics.explain.read_hyper`).
    schedule : Schedule, ScheduleInfo or dict, optional
        The KL schedule (a :mod:`collapsekit.objectives.schedules` object, read at the monitor's step
        count), or a fixed description (``{"warmup_steps": ..., "total_steps": ...}``).
    total_steps : int, optional
        Optimiser steps of the whole run (for a schedule object).
    linear : bool
        The model is the theory's linear model: predicted numbers are exact, not estimates.
    loss_reduction : {"sum", "mean"}
        How a plain loop's reconstruction loss reduces over features (``"mean"`` adds the β·D hint).
    n_features : int, optional
        D, for that hint; ``update_output`` records it from the target.

    Forecast of the run's end (:mod:`.forecaster`)
    ----------------------------------------------
    total_epochs : int, optional
        Epochs of the whole run: with it, every epoch's record forecasts the end-of-run count of active
        dimensions of the summary level, with an interval (without it, no forecast).
    forecast_base : dict, optional
        The closed form from the configuration (``n_active``, ``interval``, ``kl_per_rank``): the forecast where
        the trajectory cannot be extrapolated (a β warm-up in progress, a cyclical or capacity schedule).
    min_active : int, optional
        Warn (one :class:`~collapsekit.training.monitor.CollapseWarning`) the first time the forecast says the
        run ends with fewer active dimensions than this; needs ``total_epochs``.
    forecast_regime : dict, optional
        The run's regime labels (``arch``, ``likelihood``, ``schedule``, ``kind``:
        :func:`~collapsekit.diagnostics.forecast_intervals.regime_of`): the forecast interval's conformal
        half-width and the benchmark row the warning quotes are that regime's (None: pooled, the whole split).
    forecast_free_bits : float, optional
        The run's free bits λ in nats (``objective.free_bits``): no dimension's forecast KL ends below it
        (:func:`~collapsekit.diagnostics.forecast_kernel.free_bits_floor`). None or 0: no floor.
    """

    eta_enc: float | Mapping[str, float] = 1.0
    patience: int = 2
    recover_factor: float = 2.0
    au_threshold: float = 0.01
    mi_examples: int = 256
    model_kind: str | None = None
    moments: Moments | None = None
    hyper: Mapping[str, Any] = field(default_factory=dict)
    schedule: Any = None
    total_steps: int | None = None
    linear: bool = False
    loss_reduction: str = "sum"
    n_features: int | None = None
    warn: bool = True
    log: Callable[[str], Any] | None = None
    seed: int = 0
    total_epochs: int | None = None
    forecast_base: Mapping[str, Any] | None = None
    min_active: int | None = None
    forecast_regime: Mapping[str, str] | None = None
    forecast_free_bits: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.eta_enc, Mapping):
            self.eta_enc = {str(k): positive(f"eta_enc[{k!r}]", v) for k, v in self.eta_enc.items()}
        else:
            self.eta_enc = positive("eta_enc", self.eta_enc)
        recover_factor = self.recover_factor
        self.patience = _count("patience", self.patience)
        self.recover_factor = positive("recover_factor", recover_factor)
        if self.recover_factor < 1:
            raise ParameterError(f"recover_factor must be ≥ 1 (recovery needs more KL than collapse), got "
                                 f"{recover_factor!r}")
        self.au_threshold = positive("au_threshold", self.au_threshold)
        self.mi_examples = _count("mi_examples", self.mi_examples, minimum=2)
        if self.moments is not None and not isinstance(self.moments, Moments):
            raise ParameterError("moments must be a collapsekit.theory.Moments (Moments.from_data(x[, y]))")
        self.hyper = dict(self.hyper or {})
        if not zero_beta(self.hyper.get("beta")):             # β = 0: a plain autoencoder, outside the theory
            read_hyper(self.model_kind or "vae", self.hyper)  # bad settings fail now, not at the first warning
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ParameterError(f"loss_reduction must be 'sum' or 'mean', got {self.loss_reduction!r}")
        self.linear = bool(self.linear)
        self.warn = bool(self.warn)
        self.seed = int(self.seed)
        self.total_epochs = None if self.total_epochs is None else _count("total_epochs", self.total_epochs)
        self.forecast_base = check_base(self.forecast_base)
        self.min_active = None if self.min_active is None else _count("min_active", self.min_active)
        if self.min_active is not None and self.total_epochs is None:
            raise ParameterError("min_active needs total_epochs: the forecast extrapolates to the run's last epoch")
        if self.forecast_regime is not None:
            if not isinstance(self.forecast_regime, Mapping):
                raise ParameterError("forecast_regime must be a mapping of regime labels (regime_of(config))")
            self.forecast_regime = {str(k): str(v) for k, v in self.forecast_regime.items()}
        if self.forecast_free_bits is not None:
            free_bits = self.forecast_free_bits
            if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) or not free_bits >= 0:
                raise ParameterError(f"forecast_free_bits must be a number of nats ≥ 0, got {free_bits!r}")
            self.forecast_free_bits = float(free_bits)

    def eta_enc_of(self, level: str) -> float:
        """η_enc of ``level`` (1 for a level a per-level dict does not name)."""
        return self.eta_enc.get(level, 1.0) if isinstance(self.eta_enc, Mapping) else self.eta_enc


def _count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ParameterError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)
