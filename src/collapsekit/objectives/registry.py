"""Objectives and schedules by name, for configs and the command line; and how a schedule drives an objective.

Dispatch is a dict from name to class; settings are checked against the class's signature, so an
unknown or missing key fails with one line that lists what is accepted.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.objectives.elbo import BetaELBO, CapacityELBO
from collapsekit.objectives.infovae import InfoVAEMMD
from collapsekit.objectives.iwae import IWAE
from collapsekit.objectives.schedules import Capacity, Constant, Cyclical, LinearWarmup, Schedule, SigmoidWarmup

#: Objective name → class. "capacity" is usually reached through :func:`bind_schedule`.
OBJECTIVES: dict[str, type] = {"elbo": BetaELBO, "iwae": IWAE, "infovae": InfoVAEMMD, "capacity": CapacityELBO}

#: Schedule name → class.
SCHEDULES: dict[str, type[Schedule]] = {"constant": Constant, "linear": LinearWarmup, "sigmoid": SigmoidWarmup,
                                        "cyclical": Cyclical, "capacity": Capacity}


def _build(kind: str, table: Mapping[str, type], name: str, settings: dict[str, Any]) -> Any:
    if name not in table:
        raise ParameterError(f"{kind} {name!r} is unknown; choose one of {', '.join(table)}")
    cls = table[name]
    parameters = inspect.signature(cls).parameters
    accepted = ", ".join(parameters) or "none"
    unknown = sorted(set(settings) - set(parameters))
    if unknown:
        raise ParameterError(f"{kind} {name!r} has no setting {', '.join(unknown)}; accepted: {accepted}")
    missing = [p for p, spec in parameters.items() if spec.default is inspect.Parameter.empty and p not in settings]
    if missing:
        raise ParameterError(f"{kind} {name!r} needs {', '.join(missing)} (accepted: {accepted})")
    return cls(**settings)


def build_objective(name: str, **settings: Any) -> Any:
    """An objective by name: ``"elbo"`` (β, free_bits), ``"iwae"`` (k), ``"infovae"`` (alpha, lambda_,
    kernel, scale) or ``"capacity"`` (gamma).

    >>> build_objective("elbo", beta=[1.0, 0.5], free_bits=0.1)
    BetaELBO(beta=(1.0, 0.5), free_bits=0.1)
    """
    return _build("objective", OBJECTIVES, name, settings)


def build_schedule(name: str, **settings: Any) -> Schedule:
    """A schedule by name: ``"constant"`` (value), ``"linear"`` / ``"sigmoid"`` (warmup_steps, start, end
    [, steepness]), ``"cyclical"`` (total_steps, n_cycles, ratio, start, end), ``"capacity"`` (c_max,
    steps, gamma).

    >>> build_schedule("linear", warmup_steps=1000).value(500)
    0.5
    """
    return _build("schedule", SCHEDULES, name, settings)


def _from_dict(kind: str, spec: Mapping[str, Any], build: Any) -> Any:
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ParameterError(f"a {kind} spec must be a mapping with a 'name', got {spec!r}")
    settings = dict(spec)
    return build(settings.pop("name"), **settings)


def objective_from_dict(spec: Mapping[str, Any]) -> Any:
    """Undo ``objective.to_dict()``."""
    return _from_dict("objective", spec, build_objective)


def schedule_from_dict(spec: Mapping[str, Any]) -> Schedule:
    """Undo ``schedule.to_dict()``."""
    return _from_dict("schedule", spec, build_schedule)  # type: ignore[no-any-return]


def bind_schedule(objective: Any, schedule: Schedule) -> Any:
    """The objective that ``schedule`` drives, checked once before training.

    Call the result as ``objective(output, **{schedule.controls: schedule.value(step)})``.

    * A :class:`Capacity` schedule turns a plain β-ELBO (β = 1 on every level, no free bits) into
      :class:`CapacityELBO` with the schedule's γ: capacity replaces β, and silently dropping a
      β ≠ 1 or free bits would train something other than what was asked.
    * IWAE has no KL weight: only a constant schedule at 1 is accepted.
    * Any other pairing returns ``objective`` unchanged.
    """
    if schedule.controls == "capacity":
        if isinstance(objective, CapacityELBO):
            return CapacityELBO(gamma=schedule.gamma)  # type: ignore[attr-defined]
        if not isinstance(objective, BetaELBO):
            raise ParameterError(f"the capacity schedule drives the elbo objective, not {objective.name!r}")
        betas = (objective.beta,) if isinstance(objective.beta, float) else objective.beta
        if objective.free_bits is not None or any(b != 1.0 for b in betas):
            raise ParameterError(f"the capacity schedule replaces β and free bits by γ·|KL − C|; got beta="
                                 f"{objective.to_dict()['beta']!r}, free_bits={objective.free_bits!r} (set beta: 1, "
                                 "free_bits: null)")
        return CapacityELBO(gamma=schedule.gamma)  # type: ignore[attr-defined]
    if isinstance(objective, CapacityELBO):
        raise ParameterError(f"the capacity objective needs the capacity schedule, got {schedule.name!r}")
    if isinstance(objective, IWAE) and not (isinstance(schedule, Constant) and schedule.value_ == 1.0):
        raise ParameterError(f"the IWAE objective has no KL weight to schedule; use the constant schedule at 1, "
                             f"got {schedule.to_dict()}")
    return objective
