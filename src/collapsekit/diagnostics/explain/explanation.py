"""What an explanation is (:class:`Explanation`, one of :data:`CAUSES`), and where the KL schedule stands
(:class:`ScheduleInfo`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from collapsekit._io import jsonable

#: Every cause :func:`explain_collapse` can name, in the order explanations are returned.
CAUSES = ("loss_reduction", "warmup", "cvae_correlation", "learnable_sigma2", "rank", "beta", "not_predicted",
          "generic")
#: The label of a predicted number: exact for the linear models, an estimate otherwise.
EXACT, ESTIMATE = "exact", "linear-theory estimate"


@dataclass(frozen=True)
class Explanation:
    """One likely cause of a collapse and what to change.

    Attributes
    ----------
    level : str
        The latent level it is about (``"z"``, ``"z1"``, ``"z2"``, ...).
    cause : str
        One of :data:`CAUSES`.
    message : str
        What is wrong, with numbers and units.
    prescription : str
        What to change; predicted effects say "(predicted)".
    predicted : dict
        The numbers behind the text, JSON-ready (empty when nothing was computed). For ``beta``:
        ``beta`` (the suggested KL weight; ``beta2`` for a hierarchy's top level is under the same
        key), ``parameter`` (``"beta"`` or ``"beta2"``), ``n_active`` and ``n_collapsed`` predicted at
        that β, ``beta_bound`` (any β below it keeps ``target_active``), ``eta_dec`` (the η_dec that
        does the same at the current β), ``current`` (the prediction at the current settings),
        ``label`` (``"exact"`` or ``"linear-theory estimate"``).
    """

    level: str
    cause: str
    message: str
    prescription: str
    predicted: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the same field names)."""
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Explanation:
        """Undo :meth:`to_dict`."""
        return cls(level=str(values["level"]), cause=str(values["cause"]), message=str(values["message"]),
                   prescription=str(values["prescription"]), predicted=dict(values.get("predicted") or {}))

    def __str__(self) -> str:
        return f"{self.message}. → {self.prescription}"


@dataclass(frozen=True)
class ScheduleInfo:
    """Where the KL schedule stands, as far as an explanation needs it.

    Attributes
    ----------
    name : str, optional
        The schedule's name (``"linear"``, ``"sigmoid"``, ``"cyclical"``, ``"capacity"``, ...).
    warmup_steps : int, optional
        Optimiser steps until the KL weight (or capacity) reaches its final value.
    total_steps : int, optional
        Optimiser steps of the whole run.
    step : int, optional
        Optimiser steps done so far.
    scale : float, optional
        The factor on β now, relative to its final value (1: β is at its final value).
    """

    name: str | None = None
    warmup_steps: int | None = None
    total_steps: int | None = None
    step: int | None = None
    scale: float | None = None

    @classmethod
    def from_schedule(cls, schedule: Any, *, total_steps: int | None = None, step: int | None = None) -> ScheduleInfo:
        """Read a :mod:`collapsekit.objectives.schedules` object at ``step`` (steps done so far).

        The scale is ``value(step − 1) / end`` for the β schedules; a capacity schedule controls C,
        not β, so its scale is left unknown.
        """
        name = getattr(schedule, "name", None)
        warmup = getattr(schedule, "warmup_steps", None)
        if warmup is None and getattr(schedule, "controls", "beta_scale") == "capacity":
            warmup = getattr(schedule, "steps", None)
        scale = None
        if step is not None and step > 0 and getattr(schedule, "controls", "beta_scale") == "beta_scale":
            end = float(getattr(schedule, "end", getattr(schedule, "value_", 1.0)) or 1.0)
            scale = float(schedule.value(step - 1)) / end if end > 0 else None
        return cls(name=name, warmup_steps=None if warmup is None else int(warmup),
                   total_steps=None if total_steps is None else int(total_steps), step=step, scale=scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
