"""Schedules over optimiser steps: the factor on β (KL annealing) or the capacity C (Burgess et al.).

Every schedule is a small frozen dataclass with

* ``value(step) -> float`` for step = 0, 1, 2, … (the trainer's 0-based optimiser step);
* ``validate(total_steps)``, which raises :class:`ParameterError` when the schedule does not fit a
  run of ``total_steps`` steps — above all a warm-up that is not over before training ends, one of
  the causes of collapse that collapsekit diagnoses (the model is then never trained at its final
  objective, and a model evaluated mid-ramp looks collapsed or not depending on the step);
* ``to_dict()`` (``{"name": ..., settings...}``), undone by
  :func:`collapsekit.objectives.schedule_from_dict`;
* ``controls``: the keyword of the objective call the value feeds, ``"beta_scale"`` for the β
  schedules and ``"capacity"`` for :class:`Capacity` (``objective(output, **{s.controls: s.value(t)})``).

Settings are checked when the schedule is built, so a bad value fails before any training.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from collapsekit.errors import ParameterError
from collapsekit.objectives._checks import integer, non_negative, positive, real


def _check_step(step: int) -> int:
    return integer("step", step, 0)


def _check_run(total_steps: int) -> int:
    return integer("total_steps", total_steps, 1)


def _ramp_fits(what: str, field: str, steps: int, total_steps: int, reaches: str) -> None:
    """A ramp of ``steps`` steps must end before the run does.

    The last step of a run of T steps is T − 1, and a ramp of T steps reaches its end value at step
    T: equality is rejected too, since the final objective would never be trained at.
    """
    total = _check_run(total_steps)
    if steps > total:
        raise ParameterError(f"{field}: {what} of {steps} steps is longer than the run ({total} steps), so "
                             f"{reaches}; shorten it or train longer")
    if steps == total:
        raise ParameterError(f"{field}: {what} of {steps} steps is as long as the run ({total} steps), so "
                             f"{reaches} before training ends; shorten it or train longer")


@dataclass(frozen=True)
class Schedule(ABC):
    """Base class: a function of the optimiser step."""

    name: ClassVar[str]
    controls: ClassVar[str] = "beta_scale"

    @abstractmethod
    def value(self, step: int) -> float:
        """The schedule at optimiser step ``step`` (0-based)."""

    def validate(self, total_steps: int) -> None:
        """Raise :class:`ParameterError` if the schedule does not fit a run of ``total_steps`` steps."""
        _check_run(total_steps)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., **settings}``: plain values, ready for JSON/YAML."""
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class Constant(Schedule):
    """The same factor at every step (1: no annealing)."""

    name: ClassVar[str] = "constant"
    value_: float = 1.0

    def __init__(self, value: float = 1.0) -> None:
        # ``value`` is the natural setting name but also the method's; store it under ``value_``.
        object.__setattr__(self, "value_", non_negative("value", value))

    def value(self, step: int) -> float:
        _check_step(step)
        return self.value_

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value_}


@dataclass(frozen=True)
class LinearWarmup(Schedule):
    """Linear KL warm-up (Bowman et al. 2016; He et al. 2019's ``kl_start`` → 1):

        value(t) = start + (end − start) · min(1, t / warmup_steps),

    ``start`` at step 0, ``end`` from step ``warmup_steps`` on. ``warmup_steps = 0`` is no warm-up.
    """

    name: ClassVar[str] = "linear"
    warmup_steps: int
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "warmup_steps", integer("warmup_steps", self.warmup_steps, 0))
        object.__setattr__(self, "start", non_negative("start", self.start))
        object.__setattr__(self, "end", non_negative("end", self.end))

    def fraction(self, step: int) -> float:
        """How far through the warm-up ``step`` is, in [0, 1]."""
        step = _check_step(step)
        return 1.0 if step >= self.warmup_steps else step / self.warmup_steps

    def value(self, step: int) -> float:
        return self.start + (self.end - self.start) * self.fraction(step)

    def validate(self, total_steps: int) -> None:
        _ramp_fits("a warm-up", "warmup_steps", self.warmup_steps, total_steps,
                   f"the KL weight never reaches {self.end:g}")


@dataclass(frozen=True)
class SigmoidWarmup(LinearWarmup):
    """Logistic KL warm-up (Bowman et al. 2016), rescaled to hit its ends exactly:

        u = min(1, t / warmup_steps),   g(u) = σ(κ·(u − ½)),
        value(t) = start + (end − start) · (g(u) − g(0)) / (g(1) − g(0)).

    ``value(0) = start``, ``value(warmup_steps / 2) = (start + end) / 2`` (the logistic's midpoint),
    ``value(t) = end`` for t ≥ warmup_steps. ``steepness`` κ > 0 is the slope in units of the warm-up:
    the common reimplementation 1/(1 + exp(−k(t − x₀))) with k = 0.0025, x₀ = 2500 (docs/metrics.md §9.2)
    is, up to the rescaling (< 0.5 % there), ``warmup_steps = 2·x₀ = 5000`` and ``steepness = k·2x₀ = 12.5``.
    Without the rescaling the logistic never reaches 0 or 1, and "a warm-up longer than the run"
    would have no meaning.
    """

    name: ClassVar[str] = "sigmoid"
    steepness: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "steepness", positive("steepness", self.steepness))

    def value(self, step: int) -> float:
        u = self.fraction(step)
        # σ(κ(u − ½)) = ½ + ½·tanh(κ(u − ½)/2); dividing by tanh(κ/4) rescales [g(0), g(1)] to [0, 1]
        # and keeps the midpoint exactly ½ (no cancellation between nearly equal logistics).
        share = 0.5 + 0.5 * math.tanh(0.5 * self.steepness * (u - 0.5)) / math.tanh(0.25 * self.steepness)
        return self.start + (self.end - self.start) * share


@dataclass(frozen=True)
class Cyclical(Schedule):
    """Cyclical annealing (Fu et al. 2019, ``frange_cycle_linear``; docs/metrics.md §9.3).

    The run of T = ``total_steps`` steps is cut into M = ``n_cycles`` cycles of period T/M (a real
    number, as in the reference code); cycle c starts at step s_c = ⌊c·T/M⌋. At step t of cycle c,
    with τ = (t − s_c)/(T/M) the fraction of the period elapsed,

        value = start + (end − start) · min(1, τ / ratio):

    a linear ramp over the first ``ratio`` of the cycle, then a plateau at ``end``. At a cycle
    boundary the value drops back to ``start``. After ``total_steps`` it stays at ``end``.
    Evaluate a model at the end of a plateau, not mid-ramp.
    """

    name: ClassVar[str] = "cyclical"
    total_steps: int
    n_cycles: int = 4
    ratio: float = 0.5
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_steps", integer("total_steps", self.total_steps, 1))
        object.__setattr__(self, "n_cycles", integer("n_cycles", self.n_cycles, 1))
        ratio = real("ratio", self.ratio)
        if not 0 < ratio <= 1:
            raise ParameterError(f"ratio must be in (0, 1] (the ramp's share of a cycle), got {self.ratio!r}")
        object.__setattr__(self, "ratio", ratio)
        object.__setattr__(self, "start", non_negative("start", self.start))
        object.__setattr__(self, "end", non_negative("end", self.end))
        if self.n_cycles > self.total_steps:
            raise ParameterError(f"n_cycles = {self.n_cycles} is more cycles than total_steps = {self.total_steps}")

    def cycle(self, step: int) -> tuple[int, float]:
        """(cycle index c, fraction τ of the period elapsed) at ``step``; τ ≥ 1 only after the run."""
        step = _check_step(step)
        t, m = self.total_steps, self.n_cycles
        # Integer arithmetic keeps the boundaries exact: c is the last cycle with ⌊c·T/M⌋ ≤ step,
        # i.e. c·T < (step + 1)·M.
        index = min(((step + 1) * m - 1) // t, m - 1)
        return index, (step - index * t // m) * m / t

    def value(self, step: int) -> float:
        _, tau = self.cycle(step)
        return self.start + (self.end - self.start) * min(1.0, tau / self.ratio)

    def validate(self, total_steps: int) -> None:
        run = _check_run(total_steps)
        if self.total_steps > run:
            raise ParameterError(f"total_steps: a cyclical schedule of {self.total_steps} steps is longer than the "
                                 f"run ({run} steps), so its last cycles never happen; set total_steps={run}")


@dataclass(frozen=True)
class Capacity(Schedule):
    """The capacity C(t) of Burgess et al. (2018), in nats, for :class:`~collapsekit.objectives.CapacityELBO`:

        C(t) = c_max · min(1, t / steps),

    and the objective recon + γ·|KL − C(t)|. γ belongs to that objective but is set here, with the
    rest of the capacity recipe; :func:`collapsekit.objectives.bind_schedule` builds the objective
    with it. Burgess et al. used γ = 1000 and C up to 25 nats.
    """

    name: ClassVar[str] = "capacity"
    controls: ClassVar[str] = "capacity"
    c_max: float
    steps: int
    gamma: float = 1000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "c_max", non_negative("c_max", self.c_max))
        object.__setattr__(self, "steps", integer("steps", self.steps, 1))
        object.__setattr__(self, "gamma", positive("gamma", self.gamma))

    def value(self, step: int) -> float:
        step = _check_step(step)
        return self.c_max * min(1.0, step / self.steps)

    def validate(self, total_steps: int) -> None:
        _ramp_fits("a capacity increase", "steps", self.steps, total_steps,
                   f"the capacity never reaches {self.c_max:g} nats")
