"""CollapseMonitor: per-dimension KL, active units and a minibatch MI estimate while training, and a
warning (once, with hysteresis) that names collapsed dimensions, says why and what to change.

Cheap enough to leave on: per batch it adds a few elementwise ops and three per-dimension sums on the
device, with no host synchronisation; everything else happens once per epoch (bench/bench_monitor.py
measures the overhead). It never draws from the global random generator, so switching it on does not
change a run. Inputs of any floating dtype are welcome (an autocast loop's bfloat16 or float16): each
batch is cast to float32 on its device and every sum is kept in float32 (float64 inputs stay float64).

Plain PyTorch loop::

    from collapsekit.training.monitor import CollapseMonitor
    from collapsekit.theory import Moments

    monitor = CollapseMonitor(hyper={"beta": 4.0, "eta_dec": 1.0}, moments=Moments.from_data(x_train))
    for epoch in range(epochs):
        for xb in loader:
            mu, log_var = encoder(xb)
            z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
            loss = recon_loss(decoder(z), xb) + beta * kl(mu, log_var)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            monitor.update(mu, log_var)              # per batch: on-device sums only
        stats = monitor.end_epoch()                  # per epoch: stats, hysteresis, maybe a CollapseWarning
        print(stats["z"]["active_units"], stats["z"]["collapsed"])

With collapsekit's models, call ``monitor.update_output(output)`` (alias ``observe``) per batch instead:
every latent level is tracked, with the KL each level's objective term uses (analytic at the top,
the paired estimate −H[q] − log p(z|z_above) below it).

Hysteresis (per latent dimension, per level; ``threshold`` = 0.01 nats, :mod:`collapsekit.activity`)
------------------------------------------------------------------------------------------------
* A dimension is *collapsed in an epoch* when its epoch-mean KL is < ``threshold`` nats: the headline
  rule, applied to the epoch's batches (the weights change while they are seen). Each epoch record
  carries that count (``n_active``); warnings report it too.
* It is *confirmed collapsed* after ``patience`` consecutive such epochs.
* A :class:`CollapseWarning` is issued at the end of an epoch when some confirmed dimension has not
  been warned about, unless other dimensions are still on their way (below the threshold for fewer
  than ``patience`` epochs): then it waits, at most ``patience`` epochs, so that one warning names the
  whole set of a collapse in progress. It names every confirmed dimension (and which are new), and
  the warned dimensions are remembered: a dimension already warned about never triggers another
  warning, however its KL oscillates around the threshold. Only a collapse spreading to dimensions
  not yet warned about gives a further warning.
* A warned dimension is *recovered* (and can trigger a warning again) only after ``patience``
  consecutive epochs with KL ≥ ``recover_factor`` × ``threshold``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from collapsekit._validation import positive, zero_beta
from collapsekit.activity import KL_ACTIVE_THRESHOLD, active_mask
from collapsekit.diagnostics.explain import (
    Explanation,
    ScheduleInfo,
    collapse_summary,
    explain_collapse,
    format_explanations,
    read_hyper,
)
from collapsekit.diagnostics.gaussian import kl_to_prior, log_normal, neg_entropy
from collapsekit.diagnostics.theory_compare import zero_beta_explanation
from collapsekit.errors import CollapsekitError, ParameterError
from collapsekit.theory import Moments

if TYPE_CHECKING:
    from collapsekit.models.output import ModelOutput

#: Version of the layout written by :meth:`CollapseMonitor.state_dict`.
STATE_FORMAT = 1

# LightningCollapseMonitor is served by the module's __getattr__ (it imports Lightning on first use).
__all__ = ["CollapseEvent", "CollapseMonitor", "CollapseWarning", "lightning_callback"]


class CollapseWarning(UserWarning):
    """Latent dimensions collapsed. ``str(w)`` is the full text; the attributes hold the pieces.

    Attributes
    ----------
    level : str
        The latent level (``"z"``, ``"z1"``, ...).
    dims : list of int
        Every dimension confirmed collapsed in that level.
    new_dims : list of int
        Those not warned about before.
    epoch : int
        The epoch (1-based, counted by the monitor) that ended when it was issued.
    explanations : list of Explanation
        Likely causes and prescriptions (:func:`collapsekit.diagnostics.explain.explain_collapse`).
    """

    def __init__(self, message: str, *, level: str = "z", dims: Sequence[int] = (), new_dims: Sequence[int] = (),
                 epoch: int = 0, explanations: Sequence[Explanation] = ()) -> None:
        super().__init__(message)
        self.level = level
        self.dims = list(dims)
        self.new_dims = list(new_dims)
        self.epoch = epoch
        self.explanations = list(explanations)


@dataclass
class CollapseEvent:
    """A warning the monitor issued (kept in :attr:`CollapseMonitor.warnings_issued`, JSON-ready)."""

    epoch: int
    level: str
    dims: list[int]
    new_dims: list[int]
    message: str
    explanations: list[Explanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "level": self.level, "dims": self.dims, "new_dims": self.new_dims,
                "message": self.message, "explanations": [e.to_dict() for e in self.explanations]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CollapseEvent:
        return cls(epoch=int(values["epoch"]), level=str(values["level"]), dims=[int(d) for d in values["dims"]],
                   new_dims=[int(d) for d in values["new_dims"]], message=str(values["message"]),
                   explanations=[Explanation.from_dict(e) for e in values.get("explanations", [])])


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the monitor computes and sums in for inputs of ``dtype``: float64 stays float64,
    everything else (float16, bfloat16, float32) is float32. Summed in its own dtype, an epoch of
    float16 KL overflows (inf past 65,504) and bfloat16 keeps three digits."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _LevelSums:
    """One level's running sums over an epoch, on the device of its tensors, in float32 (float64 for
    float64 inputs) whatever the inputs' dtype: the callers cast each batch first.

    Posterior means are accumulated around a per-epoch shift (the first batch's mean), so that
    E[μ²] − E[μ]² does not cancel in float32 when |mean| ≫ std.
    """

    def __init__(self, mu: Tensor) -> None:
        d = mu.shape[-1]
        self.dim = int(d)
        self.shift = mu.mean(0)
        self.kl = torch.zeros(d, dtype=mu.dtype, device=mu.device)
        self.s1 = torch.zeros_like(self.kl)
        self.s2 = torch.zeros_like(self.kl)
        self.count = 0
        self.reservoir: tuple[Tensor, Tensor] | None = None    # (loc, scale) of up to mi_examples rows
        self.presummed: list[Tensor] | None = None               # Σ KL, Σ μ, Σ μ² added by add_presummed
        self.presummed_count = 0

    def add(self, kl_sum: Tensor, mu: Tensor, n: int) -> None:
        centred = mu - self.shift
        self.kl += kl_sum
        self.s1 += centred.sum(0)
        self.s2 += (centred * centred).sum(0)
        self.count += n

    def add_presummed(self, kl_sum: Tensor, mean_sum: Tensor, square_sum: Tensor, n: int) -> None:
        """Sums over ``n`` examples made elsewhere (unshifted, float64 preferred), added at packing time."""
        if self.presummed is None:
            self.presummed = [kl_sum.double(), mean_sum.double(), square_sum.double()]
        else:
            self.presummed = [a + b.double() for a, b in zip(self.presummed, (kl_sum, mean_sum, square_sum))]
        self.presummed_count += n

    def packed(self) -> Tensor:
        """float64 (3d + 1,): Σ KL, Σ μ, Σ μ² (unshifted: ranks have different shifts), count."""
        shift, s1, s2 = self.shift.double(), self.s1.double(), self.s2.double()
        n = float(self.count)
        kl, mean, square = self.kl.double(), s1 + n * shift, s2 + 2 * shift * s1 + n * shift * shift
        if self.presummed is not None:
            kl, mean, square = kl + self.presummed[0], mean + self.presummed[1], square + self.presummed[2]
        return torch.cat([kl, mean, square, s1.new_tensor([n + self.presummed_count])])


@dataclass
class _Hysteresis:
    """Per-dimension streak counters of one level (module docstring)."""

    dim: int
    below: list[int] = field(default_factory=list)      # consecutive epochs with KL < threshold
    above: list[int] = field(default_factory=list)      # consecutive epochs with KL ≥ recover_factor·threshold
    warned: list[int] = field(default_factory=list)     # dimensions warned about and not yet recovered
    pending: int = 0                                    # consecutive epochs with confirmed, unwarned dimensions

    def __post_init__(self) -> None:
        self.below = self.below or [0] * self.dim
        self.above = self.above or [0] * self.dim

    def step(self, kl: np.ndarray, threshold: float, recover: float, patience: int) -> tuple[list[int], list[int],
                                                                                                 list[int]]:
        """Advance one epoch; return (confirmed collapsed, newly to warn about, recovered)."""
        for j, value in enumerate(kl):
            self.below[j] = self.below[j] + 1 if value < threshold else 0
            self.above[j] = self.above[j] + 1 if value >= recover * threshold else 0
        confirmed = [j for j in range(self.dim) if self.below[j] >= patience]
        recovered = [j for j in self.warned if self.above[j] >= patience]
        self.warned = [j for j in self.warned if j not in recovered]
        unwarned = [j for j in confirmed if j not in self.warned]
        self.pending = self.pending + 1 if unwarned else 0
        # Wait while other dimensions are on their way to confirmation, so that one warning names the
        # whole set of a collapse in progress; but never more than `patience` epochs.
        on_the_way = any(0 < self.below[j] < patience for j in range(self.dim))
        if not unwarned or (on_the_way and self.pending < patience):
            return confirmed, [], recovered
        self.warned = sorted(self.warned + unwarned)
        self.pending = 0
        return confirmed, unwarned, recovered

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "below": list(self.below), "above": list(self.above), "warned": list(self.warned),
                "pending": self.pending}


class CollapseMonitor:
    """Watches latent levels for posterior collapse while a model trains.

    Parameters
    ----------
    eta_enc : float or dict of str to float
        Prior std η_enc used by :meth:`update` (a per-level dict is allowed); :meth:`update_output`
        reads each level's prior from the model instead.
    patience : int
        Consecutive epochs needed to confirm a collapse, and to confirm a recovery (2).
    recover_factor : float
        A warned dimension recovers only with KL ≥ ``recover_factor`` × 0.01 nats (2).
    au_threshold : float
        Burda et al.'s active-unit threshold on the variance over examples of the posterior mean (0.01).
    mi_examples : int
        The minibatch MI estimate (He et al. 2019) uses one batch of up to this many examples per epoch,
        the largest seen (the last of equal size); its value cannot exceed log B.
    model_kind : {"vae", "cvae", "hvae"}, optional
        For the explanations; inferred when omitted (``hvae`` if several levels are seen, ``cvae`` if
        the moments are paired, else ``vae``).
    moments : Moments, optional
        Raw second moments of the training data: the explanations then predict numbers.
    data : array-like or (x, y), optional
        Training data to compute ``moments`` from (once, here), when ``moments`` is not given.
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
        D, for that hint; :meth:`update_output` records it from the target.
    warn : bool
        Issue :class:`CollapseWarning` with :func:`warnings.warn`.
    log : callable, optional
        Called with the text of every warning and recovery (e.g. ``print`` or ``logger.warning``).
    seed : int
        Seed of the monitor's own generator (the MI estimate's samples).
    """

    def __init__(self, *, eta_enc: float | Mapping[str, float] = 1.0, patience: int = 2,
                 recover_factor: float = 2.0, au_threshold: float = 0.01, mi_examples: int = 256,
                 model_kind: str | None = None, moments: Moments | None = None, data: Any = None,
                 hyper: Mapping[str, Any] | None = None, schedule: Any = None, total_steps: int | None = None,
                 linear: bool = False, loss_reduction: str = "sum", n_features: int | None = None,
                 warn: bool = True, log: Callable[[str], Any] | None = None, seed: int = 0) -> None:
        if isinstance(eta_enc, Mapping):
            self.eta_enc: float | dict[str, float] = {str(k): positive(f"eta_enc[{k!r}]", v)
                                                      for k, v in eta_enc.items()}
        else:
            self.eta_enc = positive("eta_enc", eta_enc)
        self.kl_threshold = KL_ACTIVE_THRESHOLD      # the one rule (collapsekit.activity), not a setting
        self.patience = _count("patience", patience)
        self.recover_factor = positive("recover_factor", recover_factor)
        if self.recover_factor < 1:
            raise ParameterError(f"recover_factor must be ≥ 1 (recovery needs more KL than collapse), got "
                                 f"{recover_factor!r}")
        self.au_threshold = positive("au_threshold", au_threshold)
        self.mi_examples = _count("mi_examples", mi_examples, minimum=2)
        if moments is None and data is not None:
            x, y = data if isinstance(data, tuple) else (data, None)
            moments = Moments.from_data(_numpy(x), None if y is None else _numpy(y))
        if moments is not None and not isinstance(moments, Moments):
            raise ParameterError("moments must be a collapsekit.theory.Moments (Moments.from_data(x[, y]))")
        self.moments = moments
        self.model_kind = model_kind
        self.hyper = dict(hyper or {})
        if not zero_beta(self.hyper.get("beta")):             # β = 0: a plain autoencoder, outside the theory
            read_hyper(model_kind or "vae", self.hyper)      # bad settings fail now, not at the first warning
        if loss_reduction not in ("sum", "mean"):
            raise ParameterError(f"loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}")
        self.schedule = schedule
        self.total_steps = total_steps
        self.linear = bool(linear)
        self.loss_reduction = loss_reduction
        self.n_features = n_features
        self.warn = bool(warn)
        self.log = log
        self.seed = int(seed)
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.warnings_issued: list[CollapseEvent] = []
        self._sums: dict[str, _LevelSums] = {}
        self._states: dict[str, _Hysteresis] = {}
        self._primary: str | None = None     # the level whose update() calls count optimiser steps
        self._prior_var: dict[str, Tensor] = {}
        self._last: dict[str, Any] = {}

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
        if moments is None and data is not None and theory_applies:
            x, y = (data.x, data.y) if hasattr(data, "x") else (data if isinstance(data, tuple) else (data, None))
            width = int(x.shape[1]) + (0 if y is None else int(y.shape[1]))
            if width <= max_features:
                moments = Moments.from_data(_numpy(x), None if y is None else _numpy(y))
        schedule = build_schedule(config.schedule.name, **config.schedule.settings)
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
            eta = self.eta_enc.get(level, 1.0) if isinstance(self.eta_enc, dict) else self.eta_enc
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
        sums = self._sums.get(level)
        if sums is None:
            sums = self._sums[level] = _LevelSums(mu)
            state = self._states.setdefault(level, _Hysteresis(sums.dim))
            if state.dim != sums.dim:
                raise ParameterError(f"level {level!r} had {state.dim} dimensions, this batch has {sums.dim}")
        sums.add(kl_sum, mu, n)
        # Keep the largest batch seen (the newest of equal size): a view, no copy, no sync.
        if reservoir is not None and (sums.reservoir is None or n >= sums.reservoir[0].shape[0]):
            sums.reservoir = (reservoir[0][: self.mi_examples], reservoir[1][: self.mi_examples])

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
        sums = self._sums.get(level)
        if sums is None:
            sums = self._sums[level] = _LevelSums(torch.zeros_like(kl, dtype=dtype)[None])
            state = self._states.setdefault(level, _Hysteresis(sums.dim))
            if state.dim != sums.dim:
                raise ParameterError(f"level {level!r} had {state.dim} dimensions, these sums have {sums.dim}")
        sums.add_presummed(kl.detach(), mean.detach(), square.detach(), int(count))
        if reservoir is not None and (sums.reservoir is None or reservoir[0].shape[0] >= sums.reservoir[0].shape[0]):
            sums.reservoir = (reservoir[0][: self.mi_examples], reservoir[1][: self.mi_examples])

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
                events.append(self._event(name, d, confirmed, new, int(collapsed.size)))
        self._sums = {}
        self._last = stats
        self.history.append({"epoch": self.epoch, "step": self.step, "levels": stats,
                             "warnings": [e.message for e in events]})
        for event in events:
            self.warnings_issued.append(event)
            self._say(event.message)
            if self.warn:
                warnings.warn(CollapseWarning(event.message, level=event.level, dims=event.dims,
                                              new_dims=event.new_dims, epoch=event.epoch,
                                              explanations=event.explanations), stacklevel=2)
        return stats

    def epoch_metrics(self) -> dict[str, Any]:
        """The last epoch's numbers for a trainer's metrics record, one entry per level (bottom to top):
        ``n_active`` (the headline count on the epoch's batches, :mod:`collapsekit.activity`),
        ``active_units`` (Burda's), ``mutual_info_minibatch`` (nats; None where not estimated),
        ``mutual_info_ceiling`` (log B), ``collapsed_dims`` (indices with KL < 0.01 nats this epoch), and
        ``collapse_warnings`` (texts of the warnings issued at that epoch)."""
        levels = list(self._last.values())
        last = self.history[-1] if self.history else {"warnings": []}
        return {"n_active": [s["n_active"] for s in levels],
                "active_units": [s["active_units"] for s in levels],
                "mutual_info_minibatch": [s["mutual_info_minibatch"] for s in levels],
                "mutual_info_ceiling": [s["mutual_info_ceiling"] for s in levels],
                "collapsed_dims": [s["collapsed"] for s in levels],
                "collapse_warnings": list(last["warnings"])}

    def _mutual_info(self, sums: _LevelSums) -> tuple[float | None, float | None]:
        """He et al. (2019)'s minibatch estimate of I(x; z) on the kept batch: E[log q(z|x)] − E[log q(z)],
        q(z) ≈ (1/B) Σ_j q(z|x_j). It is at most log B and can be negative (docs/metrics.md §3b)."""
        if sums.reservoir is None or sums.reservoir[0].shape[0] < 2:
            return None, None
        mu, var = (t.double() for t in sums.reservoir)
        b = mu.shape[0]
        generator = torch.Generator(device=mu.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        z = mu + var.sqrt() * torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        log_q = log_normal(z[:, None, :], mu[None], var[None]).sum(-1)       # (B, B): log q(z_i | x_j)
        log_qz = torch.logsumexp(log_q, dim=1) - math.log(b)
        mi = neg_entropy(var).sum(-1).mean() - log_qz.mean()
        return float(mi), math.log(b)

    def _event(self, level: str, dim: int, confirmed: list[int], new: list[int],
               n_collapsed_now: int | None = None) -> CollapseEvent:
        explanations = self.explain(confirmed, level, dim)
        summary = collapse_summary(confirmed, dim, level=level, epochs=self.patience,
                                   n_collapsed_now=n_collapsed_now)
        if len(new) < len(confirmed):
            summary += f" (newly collapsed: {', '.join(map(str, new))})"
        headline = f"Posterior collapse at epoch {self.epoch}: {summary}"
        # A collapse in progress warns again for each new dimension; the causes are spelled out once.
        earlier = next((e for e in reversed(self.warnings_issued) if e.level == level), None)
        if earlier is not None and [e.cause for e in earlier.explanations] == [e.cause for e in explanations]:
            message = f"{headline}; same causes as at epoch {earlier.epoch}" if explanations else headline
        else:
            message = format_explanations(headline, explanations)
        return CollapseEvent(self.epoch, level, list(confirmed), list(new), message, explanations)

    def explain(self, collapsed: Sequence[int], level: str, latent_dim: int) -> list[Explanation]:
        """Causes and prescriptions for ``collapsed`` dimensions of ``level`` with this monitor's context."""
        if zero_beta(self.hyper.get("beta")):                # nothing to prescribe from the collapse theory
            return [zero_beta_explanation(level, self.hyper["beta"])]
        hyper = dict(self.hyper)
        hyper.setdefault("eta_enc", self.eta_enc.get(level, 1.0) if isinstance(self.eta_enc, dict) else self.eta_enc)
        if len(self._states) > 1:           # a hierarchy: its levels, bottom to top, as seen
            hyper.setdefault("latent_dims", [state.dim for state in self._states.values()])
        schedule = self._schedule_info()

        def run(moments: Moments | None) -> list[Explanation]:
            return explain_collapse(collapsed, latent_dim, model_kind=self._kind(), moments=moments, hyper=hyper,
                                    level=level, schedule=schedule, linear=self.linear,
                                    loss_reduction=self.loss_reduction, n_features=self.n_features)
        try:
            return run(self.moments)
        except CollapsekitError as exc:     # e.g. moments of other data: still name the dimensions
            self._say(f"collapse explanation without the theory: {exc}")
            return run(None)

    def _kind(self) -> str:
        if self.model_kind is not None:
            return self.model_kind
        if len(self._states) > 1:
            return "hvae"
        return "cvae" if self.moments is not None and self.moments.conditional else "vae"

    def _schedule_info(self) -> ScheduleInfo | None:
        if self.schedule is None:
            return None
        if isinstance(self.schedule, ScheduleInfo):
            return self.schedule
        if isinstance(self.schedule, Mapping):
            return ScheduleInfo(**{"step": self.step, **self.schedule})
        return ScheduleInfo.from_schedule(self.schedule, total_steps=self.total_steps, step=self.step)

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
        return [] if state is None else [j for j in range(state.dim) if state.below[j] >= self.patience]

    def reset_epoch(self) -> None:
        """Drop the current epoch's sums (e.g. after an interrupted epoch)."""
        self._sums = {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (hysteresis counters, history, warnings) so a resumed run keeps its memory.
        The partial sums of an unfinished epoch are not saved: save at epoch ends."""
        return {"format": STATE_FORMAT, "epoch": self.epoch, "step": self.step, "primary": self._primary,
                "levels": {name: state.to_dict() for name, state in self._states.items()},
                "history": self.history, "warnings_issued": [e.to_dict() for e in self.warnings_issued]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state.get("format") != STATE_FORMAT:
            raise ParameterError(f"monitor state format {state.get('format')!r} is not {STATE_FORMAT}")
        self.epoch, self.step, self._primary = int(state["epoch"]), int(state["step"]), state.get("primary")
        self._states = {name: _Hysteresis(int(s["dim"]), [int(v) for v in s["below"]], [int(v) for v in s["above"]],
                                          [int(v) for v in s["warned"]], int(s.get("pending", 0)))
                        for name, s in state["levels"].items()}
        self.history = list(state["history"])
        self.warnings_issued = [CollapseEvent.from_dict(e) for e in state["warnings_issued"]]
        self._last = self.history[-1]["levels"] if self.history else {}
        self._sums = {}


def _count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ParameterError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _numpy(values: Any) -> Any:
    """Rows for :meth:`Moments.from_data`: a tensor stays on its device (it copies one chunk at a time)."""
    if isinstance(values, Tensor):
        return values.detach()
    return np.asarray(values)


# -- Lightning ------------------------------------------------------------------------------------------
_LIGHTNING_CLASS: Any = None


def _lightning_class() -> Any:
    """Define the Lightning callback class on first use, so collapsekit imports without Lightning."""
    global _LIGHTNING_CLASS
    if _LIGHTNING_CLASS is not None:
        return _LIGHTNING_CLASS
    try:
        from lightning.pytorch import Callback
    except ImportError:
        raise ImportError("LightningCollapseMonitor needs PyTorch Lightning: pip install 'collapsekit[lightning]' "
                          "(or pip install lightning)") from None

    class LightningCollapseMonitor(Callback):  # type: ignore[misc,valid-type]
        """A :class:`CollapseMonitor` as a Lightning callback.

        Contract: the LightningModule's ``training_step`` returns a dict with ``"loss"``, ``"mu"`` and
        ``"log_var"`` (the encoder's outputs for the batch, shape (B, d); a collapsekit ``ModelOutput``
        under ``"output"`` works instead and tracks every level). Per batch the callback adds them to
        the monitor; at each training epoch end it closes the epoch (summing across processes under DDP)
        and logs ``collapse/<level>/active_units``, ``.../n_collapsed``, ``.../kl`` (nats) and
        ``.../mutual_info`` (nats) with ``pl_module.log``. Warnings are issued on global rank 0 only.

        Parameters
        ----------
        monitor : CollapseMonitor, optional
            The monitor to drive; built from ``**kwargs`` (:class:`CollapseMonitor`'s) when omitted.
        """

        def __init__(self, monitor: CollapseMonitor | None = None, **kwargs: Any) -> None:
            super().__init__()
            self.monitor = monitor if monitor is not None else CollapseMonitor(**kwargs)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if not isinstance(outputs, Mapping):
                raise ParameterError("LightningCollapseMonitor: training_step must return a dict with 'loss', "
                                     "'mu' and 'log_var' (or 'output', a ModelOutput)")
            if "output" in outputs:
                self.monitor.update_output(outputs["output"])
            elif "mu" in outputs and "log_var" in outputs:
                self.monitor.update(outputs["mu"], outputs["log_var"])
            else:
                raise ParameterError("LightningCollapseMonitor: training_step's dict has no 'mu' and 'log_var' "
                                     f"(keys: {sorted(outputs)})")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            world = getattr(trainer, "world_size", 1)
            reduce = None if world == 1 else (lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
            self.monitor.warn = self.monitor.warn and trainer.is_global_zero
            stats = self.monitor.end_epoch(reduce=reduce, step=trainer.global_step,
                                           epoch=trainer.current_epoch + 1)
            for name, values in stats.items():
                logged = {"active_units": values["active_units"], "n_collapsed": values["n_collapsed"],
                          "kl": values["kl"]}
                if values["mutual_info_minibatch"] is not None:
                    logged["mutual_info"] = values["mutual_info_minibatch"]
                for key, value in logged.items():
                    pl_module.log(f"collapse/{name}/{key}", float(value), on_epoch=True, sync_dist=False)

        def state_dict(self) -> dict[str, Any]:
            return self.monitor.state_dict()

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.monitor.load_state_dict(state_dict)

    _LIGHTNING_CLASS = LightningCollapseMonitor
    return _LIGHTNING_CLASS


def lightning_callback(monitor: CollapseMonitor | None = None, **kwargs: Any) -> Any:
    """A ``lightning.pytorch.Callback`` driving ``monitor`` (or a new one built from ``kwargs``).

    Raises
    ------
    ImportError
        With the install command, when PyTorch Lightning is not installed.
    """
    return _lightning_class()(monitor, **kwargs)


def __getattr__(name: str) -> Any:
    # ``from collapsekit.training.monitor import LightningCollapseMonitor`` imports Lightning only then.
    if name == "LightningCollapseMonitor":
        return _lightning_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
