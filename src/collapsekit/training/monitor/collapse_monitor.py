"""The :class:`CollapseMonitor`: feeds each batch to the level sums (:mod:`.sums`), closes each epoch
into statistics and one step of each level's collapse state (:mod:`.hysteresis`), and issues the
warnings that :mod:`.explainer` words. The rules are in the package docstring
(:mod:`collapsekit.training.monitor`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from collapsekit._validation import zero_beta
from collapsekit.activity import KL_ACTIVE_THRESHOLD, active_mask
from collapsekit.diagnostics.explain import Explanation
from collapsekit.diagnostics.gaussian import kl_to_prior
from collapsekit.diagnostics.mutual_info import mutual_info_one_batch
from collapsekit.errors import ParameterError
from collapsekit.theory import Moments
from collapsekit.training.monitor.events import CollapseEvent, CollapseWarning
from collapsekit.training.monitor.explainer import CollapseExplainer
from collapsekit.training.monitor.forecaster import EndForecaster
from collapsekit.training.monitor.hysteresis import Hysteresis
from collapsekit.training.monitor.options import MonitorOptions
from collapsekit.training.monitor.sums import LevelSums, accumulation_dtype

if TYPE_CHECKING:
    from collapsekit.models.output import ModelOutput

#: Version of the layout written by :meth:`CollapseMonitor.state_dict`.
STATE_FORMAT = 1

_OPTION_NAMES = frozenset(f.name for f in fields(MonitorOptions))


class _Option:
    """An attribute of the monitor that is a field of its :class:`MonitorOptions` (read and written there)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, monitor: Any, owner: type | None = None) -> Any:
        return self if monitor is None else getattr(monitor.options, self.name)

    def __set__(self, monitor: Any, value: Any) -> None:
        setattr(monitor.options, self.name, value)


class CollapseMonitor:
    """Watches latent levels for posterior collapse while a model trains.

    Parameters
    ----------
    options : MonitorOptions, optional
        The settings as one object; keywords given too replace its fields.
    data : array-like or (x, y), optional
        Training data to compute ``moments`` from (once, here), when ``moments`` is not given.
    **keywords
        Any field of :class:`MonitorOptions`: ``eta_enc``, ``patience``, ``recover_factor``,
        ``au_threshold``, ``mi_examples``, ``model_kind``, ``moments``, ``hyper``, ``schedule``,
        ``total_steps``, ``linear``, ``loss_reduction``, ``n_features``, ``warn``, ``log``, ``seed``,
        ``total_epochs``, ``forecast_base``, ``min_active``, ``forecast_regime``, ``forecast_free_bits`` (each is
        also an attribute of the monitor).

    Raises
    ------
    ParameterError
        A setting is out of range (:class:`MonitorOptions`).
    TypeError
        A keyword that is no setting.
    """

    eta_enc = _Option()
    patience = _Option()
    recover_factor = _Option()
    au_threshold = _Option()
    mi_examples = _Option()
    model_kind = _Option()
    moments = _Option()
    hyper = _Option()
    schedule = _Option()
    total_steps = _Option()
    linear = _Option()
    loss_reduction = _Option()
    n_features = _Option()
    warn = _Option()
    log = _Option()
    seed = _Option()
    total_epochs = _Option()
    forecast_base = _Option()
    min_active = _Option()
    forecast_regime = _Option()
    forecast_free_bits = _Option()

    def __init__(self, options: MonitorOptions | None = None, *, data: Any = None, **keywords: Any) -> None:
        if options is not None and not isinstance(options, MonitorOptions):
            raise ParameterError(f"options must be a MonitorOptions, got {type(options).__name__}")
        unknown = sorted(set(keywords) - _OPTION_NAMES)
        if unknown:
            raise TypeError(f"CollapseMonitor() got an unexpected keyword argument {unknown[0]!r}")
        moments = keywords.get("moments", None if options is None else options.moments)
        if moments is None and data is not None:
            x, y = data if isinstance(data, tuple) else (data, None)
            keywords["moments"] = Moments.from_data(_rows(x), None if y is None else _rows(y))
        # a copy in every case: the monitor writes some fields (n_features, warn) while it runs
        self.options = MonitorOptions(**keywords) if options is None else replace(options, **keywords)
        self.kl_threshold = KL_ACTIVE_THRESHOLD      # the one rule (collapsekit.activity), not a setting
        self.explainer = CollapseExplainer(self.options, self._say)
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.warnings_issued: list[CollapseEvent] = []
        self._sums: dict[str, LevelSums] = {}
        self._states: dict[str, Hysteresis] = {}
        self._primary: str | None = None     # the level whose update() calls count optimiser steps
        self._prior_var: dict[str, Tensor] = {}
        self._last: dict[str, Any] = {}
        total = self.options.total_epochs
        self.forecaster = (None if total is None else
                           EndForecaster(total, self.options.forecast_base, self.options.forecast_regime,
                                         self.options.forecast_free_bits))

    @classmethod
    def from_config(cls, config: Any, data: Any = None, *, total_steps: int | None = None,
                    moments: Moments | None = None, max_features: int = 2048, **kwargs: Any) -> CollapseMonitor:
        """The monitor for a run described by a :class:`~collapsekit.training.config.RunConfig`.

        Parameters
        ----------
        config : RunConfig
            Model kind and architecture, β (per level), η_enc, η_dec, σ₁, σ₂, latent sizes, schedule.
        data : TrainingData, array or (x, y), optional
            The training data: its raw second moments are computed once (O(n·d²)) so that warnings
            predict numbers — only where the closed forms apply (β-ELBO, Gaussian likelihood with a
            fixed η_dec) and the feature count is at most ``max_features``.
        total_steps : int, optional
            Optimiser steps of the run (for the warm-up explanation).
        moments : Moments, optional
            Precomputed moments (skips ``data``).
        **kwargs
            Any other :class:`CollapseMonitor` argument (``patience``, ``log``, ...).
        """
        from collapsekit.diagnostics.forecast_intervals import regime_of
        from collapsekit.objectives import build_schedule

        model, objective = config.model, config.objective
        encoder_std = model.encoder_std
        if encoder_std == "auto":
            encoder_std = "learnable" if model.arch == "linear" else "data"
        hyper = {"eta_enc": model.eta_enc, "eta_dec": model.eta_dec, "latent_dims": list(model.latent_dims),
                 "encoder_std": encoder_std, "sigma1": model.sigma1, "sigma2": model.sigma2}
        if objective.name == "elbo":
            hyper["beta"] = objective.beta
        theory_applies = objective.name == "elbo" and model.likelihood == "gaussian" and not model.learn_eta_dec \
            and not zero_beta(objective.beta)
        closed_form_applies = not zero_beta(objective.beta) and objective.name == "elbo"
        if moments is None and data is not None and (theory_applies or closed_form_applies):
            x, y = (data.x, data.y) if hasattr(data, "x") else (data if isinstance(data, tuple) else (data, None))
            width = int(x.shape[1]) + (0 if y is None else int(y.shape[1]))
            if width <= max_features:
                moments = Moments.from_data(_rows(x), None if y is None else _rows(y))
        schedule = build_schedule(config.schedule.name, **config.schedule.settings)
        kwargs.setdefault("total_epochs", config.train.epochs)
        kwargs.setdefault("min_active", config.train.min_active)
        kwargs.setdefault("forecast_regime", regime_of(config))
        kwargs.setdefault("forecast_free_bits", objective.free_bits)
        if "forecast_base" not in kwargs and moments is not None and closed_form_applies:
            kwargs["forecast_base"] = _closed_form_base(config, moments)
        return cls(model_kind=model.kind, moments=moments if theory_applies else None, hyper=hyper,
                   schedule=schedule, total_steps=total_steps, linear=model.arch == "linear",
                   eta_enc=model.eta_enc, **kwargs)

    # -- per batch ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, mu: Tensor, log_var: Tensor, level: str = "z") -> None:
        """Add one batch of a level's posterior N(mu, exp(log_var)) against the prior N(0, η_enc²).

        Parameters
        ----------
        mu, log_var : Tensor
            Shape (B, d) (extra leading dimensions are flattened into examples); gradients are ignored.
        level : str
            The level's name; call once per level per batch.
        """
        if mu.shape != log_var.shape or mu.dim() < 1:
            raise ParameterError(f"update: mu {tuple(mu.shape)} and log_var {tuple(log_var.shape)} must have the "
                                 "same shape (batch, latent dim)")
        dtype = accumulation_dtype(mu.dtype)          # a cast on the device: no host sync
        mu = mu.detach().reshape(-1, mu.shape[-1]).to(dtype)
        var = log_var.detach().reshape(-1, mu.shape[-1]).to(dtype).exp()
        prior_var = self._prior_var.get(level)
        if prior_var is None or prior_var.device != mu.device or prior_var.dtype != mu.dtype:
            # made once: a tensor built from a Python float on every batch would copy host → device
            eta = self.options.eta_enc_of(level)
            prior_var = self._prior_var[level] = torch.full((), eta * eta, dtype=mu.dtype, device=mu.device)
        kl = kl_to_prior(mu, var, 0.0, prior_var).sum(0)
        self._add(level, kl, mu, mu.shape[0], (mu, var))
        if self._primary is None:
            self._primary = level
        if level == self._primary:
            self.step += 1

    @torch.no_grad()
    def update_output(self, output: ModelOutput, kl_per_dim: Sequence[Tensor] | None = None) -> None:
        """Add one batch of a collapsekit model's forward pass: every latent level.

        Parameters
        ----------
        output : ModelOutput
            The forward pass.
        kl_per_dim : sequence of Tensor, optional
            The objective's batch-averaged KL per dimension of each level (``LossTerms.kl_per_dim``),
            to avoid computing it twice; otherwise it is computed with the objectives' own rule
            (:func:`collapsekit.objectives.terms.level_kl_per_dimension`: analytic at the top level,
            the paired estimate −H[q] − log p(z|z_above) below it, averaged over samples).
        """
        from collapsekit.objectives.terms import batch_mean_per_dimension, level_kl_per_dimension

        levels = list(output.levels)
        if kl_per_dim is None:
            kl_per_dim = [batch_mean_per_dimension(k) for k in level_kl_per_dimension(output)]
        if len(kl_per_dim) != len(levels):
            raise ParameterError(f"kl_per_dim has {len(kl_per_dim)} levels, the output {len(levels)}")
        self.n_features = int(output.target.shape[-1])
        for level, kl in zip(levels, kl_per_dim):
            self.update_level(level.name, level.posterior.loc, level.posterior.scale, kl)
        self.step += 1

    @torch.no_grad()
    def update_level(self, level: str, loc: Tensor, scale: Tensor, kl_per_dim: Tensor) -> None:
        """Add one batch of one level from its posterior's ``loc`` and ``scale`` and the objective's
        batch-averaged KL per dimension; :meth:`update_output` calls it for every level. It does not
        count an optimiser step: pass ``step`` to :meth:`end_epoch`.

        Parameters
        ----------
        level : str
            The level's name.
        loc : Tensor
            (B, d), or (S, B, d) for S samples of the level below.
        scale : Tensor
            Broadcastable to ``loc``.
        kl_per_dim : Tensor
            (d,), nats, averaged over the batch.
        """
        dtype = accumulation_dtype(loc.dtype)         # half-precision inputs are summed in float32
        loc = loc.detach().to(dtype)
        batch = loc.shape[-2] if loc.dim() >= 2 else 1
        # An upper level's posterior depends on the sampled level below: E_q[z|x] averages over samples,
        # and its q(z|x) is not Gaussian, so it gets no minibatch MI estimate.
        mean = loc.reshape(-1, batch, loc.shape[-1]).mean(0) if loc.dim() > 2 else loc.reshape(batch, -1)
        reservoir = None
        if loc.dim() <= 2:
            scale = scale.detach().to(dtype).expand_as(loc).reshape(batch, -1)
            reservoir = (mean, scale * scale)
        self._add(level, kl_per_dim.detach().to(dtype) * batch, mean, batch, reservoir)

    #: The trainer's name for :meth:`update_output`.
    observe = update_output

    def _add(self, level: str, kl_sum: Tensor, mu: Tensor, n: int, reservoir: tuple[Tensor, Tensor] | None) -> None:
        sums = self._level_sums(level, mu, "this batch")
        sums.add(kl_sum, mu, n)
        if reservoir is not None:           # the largest batch seen (the newest of equal size)
            sums.keep(reservoir, self.mi_examples)

    def _level_sums(self, level: str, first: Tensor, what: str) -> LevelSums:
        """The epoch's sums of ``level``, started from ``first`` (rows of posterior means) when new."""
        sums = self._sums.get(level)
        if sums is None:
            sums = self._sums[level] = LevelSums(first)
            state = self._states.setdefault(level, Hysteresis(sums.dim))
            if state.dim != sums.dim:
                raise ParameterError(f"level {level!r} had {state.dim} dimensions, {what} has {sums.dim}")
        return sums

    @torch.no_grad()
    def add_sums(self, level: str, *, kl: Tensor, mean: Tensor, square: Tensor, count: int,
                 reservoir: tuple[Tensor, Tensor] | None = None) -> None:
        """Add a level's sums over examples computed elsewhere, for a program that accumulates many
        monitors' sums at once (:mod:`collapsekit.training.batched`'s fast mode): what :meth:`update_level`
        adds for ``count`` examples, summed already. It does not count an optimiser step.

        Parameters
        ----------
        level : str
            The level's name.
        kl, mean, square : Tensor
            (d,): Σ KL per dimension (nats), Σ μ and Σ μ² over the examples (the posterior means),
            unshifted; keep them in float64 where Σ μ² − (Σ μ)²/n would cancel.
        count : int
            The examples summed.
        reservoir : (Tensor, Tensor), optional
            (loc, var), (B, d): the batch kept for the minibatch MI estimate (the largest of the epoch).
        """
        dtype = accumulation_dtype(kl.dtype)
        sums = self._level_sums(level, torch.zeros_like(kl, dtype=dtype)[None], "these sums")
        sums.add_presummed(kl.detach(), mean.detach(), square.detach(), int(count))
        if reservoir is not None:
            sums.keep(reservoir, self.mi_examples)

    # -- per epoch ---------------------------------------------------------------------------------------
    def raw_sums(self) -> dict[str, Tensor]:
        """Each level's packed float64 sums (Σ KL, Σ μ, Σ μ², count; see :meth:`end_epoch`'s ``reduce``)."""
        return {name: sums.packed() for name, sums in self._sums.items()}

    def end_epoch(self, *, reduce: Callable[[Tensor], Tensor] | None = None, step: int | None = None,
                  epoch: int | None = None) -> dict[str, dict[str, Any]]:
        """Close an epoch: per-level statistics, the hysteresis step, maybe a warning; then reset the sums.

        Parameters
        ----------
        reduce : callable, optional
            Sums a tensor across processes (DDP), e.g. ``lambda t: fabric.all_reduce(t, reduce_op="sum")``;
            applied to each level's packed sums (one call per level). The MI estimate stays local.
        step : int, optional
            Optimiser steps done so far (for the schedule); default: the monitor's own count.
        epoch : int, optional
            The epoch number (1-based); default: one more than the last.

        Returns
        -------
        dict
            Level name → ``kl_per_dim`` (nats), ``kl`` (their sum), ``active_units`` (Burda: variance over
            the epoch's examples of the posterior mean > ``au_threshold``), ``mean_variance`` (that
            variance per dimension), ``collapsed`` (indices with KL < 0.01 nats this epoch: the headline
            rule on the epoch's batches), ``n_active`` and ``n_collapsed`` (their counts), ``inactive`` (not collapsed, but posterior mean constant: a fixed encoder
            std ≠ η_enc), ``confirmed_collapsed`` (after ``patience`` epochs), ``mutual_info_minibatch``
            (nats, or None), ``mutual_info_ceiling`` (log B of that estimate), ``examples``.
        """
        self.epoch = self.epoch + 1 if epoch is None else int(epoch)
        if step is not None:
            self.step = int(step)
        stats: dict[str, dict[str, Any]] = {}
        events: list[CollapseEvent] = []
        for name, sums in self._sums.items():
            with torch.no_grad():      # a context, not a decorator: warnings must point at the caller
                packed = sums.packed()
                if reduce is not None:
                    packed = reduce(packed)
                values = packed.cpu().numpy()              # the epoch's one host sync per level
                mi, ceiling = self._mutual_info(sums)
            d = sums.dim
            n = max(values[-1], 1.0)
            kl = values[:d] / n
            mean = values[d:2 * d] / n
            variance = np.maximum(values[2 * d:3 * d] / n - mean * mean, 0.0)
            collapsed = np.flatnonzero(~active_mask(kl))
            inactive = np.flatnonzero((variance <= self.au_threshold) & (kl >= self.kl_threshold))
            state = self._states[name]
            confirmed, new, recovered = state.step(kl, self.kl_threshold, self.recover_factor, self.patience)
            stats[name] = {"kl_per_dim": kl.tolist(), "kl": float(kl.sum()),
                           "active_units": int(np.count_nonzero(variance > self.au_threshold)),
                           "mean_variance": variance.tolist(), "collapsed": collapsed.tolist(),
                           "n_active": int(d - collapsed.size), "n_collapsed": int(collapsed.size),
                           "inactive": inactive.tolist(),
                           "confirmed_collapsed": confirmed, "mutual_info_minibatch": mi,
                           "mutual_info_ceiling": ceiling, "examples": int(values[-1])}
            if recovered:
                self._say(f"epoch {self.epoch}, {name}: dimension(s) {', '.join(map(str, recovered))} recovered "
                          f"(KL ≥ {self.recover_factor * self.kl_threshold:g} nats for {self.patience} epochs); "
                          "a new collapse of them will be reported again")
            if new:
                earlier = next((e for e in reversed(self.warnings_issued) if e.level == name), None)
                events.append(self.explainer.event(name, d, confirmed, new, epoch=self.epoch,
                                                   explanations=self.explain(confirmed, name, d), earlier=earlier,
                                                   n_collapsed_now=int(collapsed.size)))
        self._sums = {}
        self._last = stats
        forecast, short = self._forecast(stats)
        self.history.append({"epoch": self.epoch, "step": self.step, "levels": stats,
                             "warnings": [e.message for e in events] + ([short] if short else []),
                             "forecast": forecast})
        for event in events:
            self.warnings_issued.append(event)
            self._say(event.message)
            if self.warn:
                warnings.warn(event.warning(), stacklevel=2)
        if short:
            self._say(short)
            if self.warn:
                warnings.warn(CollapseWarning(short, level=self.levels[-1], epoch=self.epoch), stacklevel=2)
        return stats

    def _forecast(self, stats: dict[str, dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
        """The epoch's forecast of the run's end for the summary level, and the ``min_active`` warning's text."""
        top = self.levels[-1] if self._states else None
        if self.forecaster is None or top not in stats:
            return None, None
        record = self.forecaster.step(stats[top]["kl_per_dim"], epoch=self.epoch, step=self.step,
                                      schedule=self.schedule)
        return record, self.forecaster.warning(record, self.min_active, top)

    def epoch_metrics(self) -> dict[str, Any]:
        """The last epoch's numbers for a trainer's metrics record, one entry per level (bottom to top):
        ``n_active`` (the headline count on the epoch's batches, :mod:`collapsekit.activity`),
        ``active_units`` (Burda's), ``mutual_info_minibatch`` (nats; None where not estimated),
        ``mutual_info_ceiling`` (log B), ``collapsed_dims`` (indices with KL < 0.01 nats this epoch),
        ``collapse_warnings`` (texts of the warnings issued at that epoch) and ``forecast`` (the end-of-run
        forecast of the summary level, :meth:`.forecaster.EndForecaster.step`'s record; None without
        ``total_epochs`` or a method that applies)."""
        levels = list(self._last.values())
        last = self.history[-1] if self.history else {"warnings": []}
        return {"n_active": [s["n_active"] for s in levels],
                "active_units": [s["active_units"] for s in levels],
                "mutual_info_minibatch": [s["mutual_info_minibatch"] for s in levels],
                "mutual_info_ceiling": [s["mutual_info_ceiling"] for s in levels],
                "collapsed_dims": [s["collapsed"] for s in levels],
                "collapse_warnings": list(last["warnings"]), "forecast": last.get("forecast")}

    def _mutual_info(self, sums: LevelSums) -> tuple[float | None, float | None]:
        """He et al.'s minibatch estimate on the kept batch (:func:`~collapsekit.diagnostics.mutual_info.
        mutual_info_one_batch`), drawn from the monitor's own generator for this epoch."""
        if sums.reservoir is None:
            return None, None
        generator = torch.Generator(device=sums.reservoir[0].device).manual_seed(self.seed * 1_000_003 + self.epoch)
        return mutual_info_one_batch(sums.reservoir[0], sums.reservoir[1], generator)

    def explain(self, collapsed: Sequence[int], level: str, latent_dim: int) -> list[Explanation]:
        """Causes and prescriptions for ``collapsed`` dimensions of ``level`` with this monitor's context."""
        return self.explainer.explain(collapsed, level, latent_dim,
                                      level_dims=[state.dim for state in self._states.values()], step=self.step)

    def _kind(self) -> str:
        return self.explainer.kind(len(self._states))

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    # -- queries and state -------------------------------------------------------------------------------
    @property
    def levels(self) -> list[str]:
        """Level names seen so far, in the order first seen (bottom to top for collapsekit models)."""
        return list(self._states)

    def collapsed_dims(self, level: str = "z") -> list[int]:
        """Dimensions of ``level`` confirmed collapsed at the last epoch."""
        state = self._states.get(level)
        return [] if state is None else state.confirmed(self.patience)

    def reset_epoch(self) -> None:
        """Drop the current epoch's sums (e.g. after an interrupted epoch)."""
        self._sums = {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (hysteresis counters, history, warnings, the forecast's memory) so a resumed run keeps
        its memory.
        The partial sums of an unfinished epoch are not saved: save at epoch ends."""
        state = {"format": STATE_FORMAT, "epoch": self.epoch, "step": self.step, "primary": self._primary,
                 "levels": {name: state.to_dict() for name, state in self._states.items()},
                 "history": self.history, "warnings_issued": [e.to_dict() for e in self.warnings_issued]}
        # the forecast's memory (last epochs' KL, its warning) where the monitor forecasts: an optional key, so
        # the format stays 1 and a state written before it loads as it was
        return state if self.forecaster is None else state | {"forecast": self.forecaster.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state.get("format") != STATE_FORMAT:
            raise ParameterError(f"monitor state format {state.get('format')!r} is not {STATE_FORMAT}")
        self.epoch, self.step, self._primary = int(state["epoch"]), int(state["step"]), state.get("primary")
        self._states = {name: Hysteresis.from_dict(s) for name, s in state["levels"].items()}
        self.history = list(state["history"])
        self.warnings_issued = [CollapseEvent.from_dict(e) for e in state["warnings_issued"]]
        self._last = self.history[-1]["levels"] if self.history else {}
        self._sums = {}
        if self.forecaster is not None:       # a state saved before the monitor forecast has no "forecast"
            self.forecaster.load_state_dict(state.get("forecast"), self.history, self.levels[-1] if self._states
                                            else None)


def _closed_form_base(config: Any, moments: Moments) -> dict[str, Any] | None:
    """The closed form from the configuration (configured β and η_dec, raw moments, any likelihood read as a
    Gaussian), as :func:`collapsekit.forecast.closed_form` computes it, with the free-bits floor of the run's
    objective (as :func:`collapsekit.forecast.adjusted` applies it): the monitor's forecast where the KL trajectory
    cannot be extrapolated. None where the closed form does not apply (e.g. an MHVAE with a learned σ₁)."""
    from collapsekit.activity import count_active
    from collapsekit.diagnostics.forecast_intervals import CONFORMAL, conformal_interval, half_width, regime_of
    from collapsekit.diagnostics.forecast_kernel import closed_form_kl, compact, free_bits_floor

    try:
        kl = free_bits_floor(closed_form_kl(config, compact(config, moments)), config.objective.free_bits)
    except (ParameterError, ValueError, np.linalg.LinAlgError):
        return None
    n = count_active(kl)
    q = 0.0 if config.model.arch == "linear" else half_width(CONFORMAL["closed_form"], regime_of(config))
    return {"n_active": n, "interval": list(conformal_interval(n, len(kl), q)), "kl_per_rank": [float(v) for v in kl]}


def _rows(values: Any) -> Any:
    """Rows for :meth:`Moments.from_data`: a tensor stays on its device (it copies one chunk at a time)."""
    if isinstance(values, Tensor):
        return values.detach()
    return np.asarray(values)
