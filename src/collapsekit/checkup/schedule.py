"""Schedule vs run: a KL warm-up or capacity increase longer than the planned run.

The schedule is read as the collapse monitor reads it (:class:`~collapsekit.diagnostics.explain.ScheduleInfo`,
and the warm-up explanation of :func:`~collapsekit.diagnostics.explain.explain_warmup`), so the doctor
and the monitor say the same thing; a :class:`~collapsekit.training.monitor.CollapseMonitor` can be
passed as the schedule and its own schedule and run length are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collapsekit.diagnostics.explain import ScheduleInfo, explain_warmup
from collapsekit.checkup.report import Check
from collapsekit.errors import ParameterError

NAME = "schedule"
#: A warm-up that takes more than this share of the run leaves little training at the final objective.
LATE = 0.5


def schedule_info(schedule: Any, total_steps: int | None) -> ScheduleInfo:
    """A schedule object, a collapse monitor, a ``ScheduleInfo`` or a dict (``{"warmup_steps", "total_steps"}``)."""
    if hasattr(schedule, "schedule") and hasattr(schedule, "total_steps"):        # a CollapseMonitor
        total_steps = total_steps if total_steps is not None else schedule.total_steps
        schedule = schedule.schedule
    if isinstance(schedule, ScheduleInfo):
        return schedule if total_steps is None else ScheduleInfo(**{**schedule.to_dict(), "total_steps": total_steps})
    if isinstance(schedule, Mapping):
        fields = {k: schedule[k] for k in ("name", "warmup_steps", "total_steps") if k in schedule}
        if total_steps is not None:
            fields["total_steps"] = total_steps
        return ScheduleInfo(**fields)
    if schedule is None:
        raise ParameterError("schedule: none given")
    return ScheduleInfo.from_schedule(schedule, total_steps=total_steps)


def check_schedule(schedule: Any, total_steps: int | None) -> Check:
    """Fail when the warm-up (or capacity increase, or cyclical schedule) outlasts the run; warn past half of it."""
    info = schedule_info(schedule, total_steps)
    evidence = {"schedule": info.name, "warmup_steps": info.warmup_steps, "total_steps": info.total_steps}
    if info.total_steps is None:
        raise ParameterError("schedule: the planned run's length is unknown; pass total_steps (optimiser steps)")
    late = explain_warmup("z", info)
    if late is not None and late.cause == "warmup" and info.warmup_steps is not None \
            and info.warmup_steps >= info.total_steps:
        return Check(NAME, "fail", late.message, late.prescription, evidence)
    validate = getattr(getattr(schedule, "schedule", schedule), "validate", None)
    if callable(validate):
        try:
            validate(info.total_steps)
        except ParameterError as exc:
            return Check(NAME, "fail", str(exc), "shorten the schedule to the run, or train longer", evidence)
    if info.warmup_steps and info.warmup_steps > LATE * info.total_steps:
        return Check(NAME, "warn", f"the warm-up takes {info.warmup_steps} of the run's {info.total_steps} steps "
                     f"({100 * info.warmup_steps / info.total_steps:.0f}%): little training is left at the final "
                     "KL weight", "shorten the warm-up or train longer; judge collapse after it ends", evidence)
    what = "no warm-up" if not info.warmup_steps else f"a warm-up of {info.warmup_steps} steps"
    return Check(NAME, "ok", f"{what} in a run of {info.total_steps} steps", "", evidence)
