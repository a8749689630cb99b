"""The monitor's forecast of the run's end: after each epoch, the headline count of active dimensions of the
summary level (the top level of a hierarchy) at the configured last epoch, with its interval.

The method is the early-training forecast of :mod:`collapsekit.forecast` applied to the KL trajectory so far
(:func:`~collapsekit.diagnostics.forecast_kernel.extrapolate` with the benchmark's tuned constants, one home
for both): a falling dimension's log KL is extrapolated at its recent slope, a rising or flat one keeps its
value; its interval is the same split-conformal one (the count ± the half-width calibrated on the benchmark's tuning
split for the configuration's regime, :func:`~collapsekit.diagnostics.forecast_kernel.early_interval`). Where a trajectory says nothing about the end — the β warm-up has not ended, a cyclical schedule, a
capacity schedule — the record carries the closed form from the configuration instead (the cost-0 method,
computed once when the monitor is made) and says why. :class:`EndForecaster` keeps what it needs (the last
epochs' KL, whether it warned) and saves it with the monitor's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from collapsekit.activity import count_active
from collapsekit.diagnostics.forecast_accuracy import comparable
from collapsekit.diagnostics.forecast_kernel import EARLY_DEFAULTS, blend, early_interval, extrapolate, free_bits_floor
from collapsekit.errors import ParameterError

__all__ = ["EndForecaster", "check_base", "trajectory_problem"]

#: Epochs of KL the extrapolation reads (its slope spans the last two epochs).
TAIL = 3


def check_base(base: Any) -> dict[str, Any] | None:
    """A closed-form forecast as the monitor keeps it (``n_active``, ``interval``, ``kl_per_rank``), validated."""
    if base is None:
        return None
    if not isinstance(base, Mapping) or not {"n_active", "interval", "kl_per_rank"} <= set(base):
        raise ParameterError("forecast_base must be a mapping with n_active, interval [lo, hi] and kl_per_rank")
    lo, hi = (int(v) for v in base["interval"])
    return {"n_active": int(base["n_active"]), "interval": [lo, hi],
            "kl_per_rank": [float(v) for v in base["kl_per_rank"]]}


def trajectory_problem(schedule: Any, step: int) -> str | None:
    """Why the KL trajectory at optimiser step ``step`` does not extrapolate to the run's end (None: it does)."""
    from collapsekit.objectives.schedules import Capacity, Cyclical, LinearWarmup

    if isinstance(schedule, Cyclical):
        return "a cyclical schedule changes β through the whole run"
    if isinstance(schedule, Capacity):
        return "a capacity schedule targets a KL, not a β"
    if isinstance(schedule, LinearWarmup) and step < schedule.warmup_steps:
        return f"the β warm-up has not ended (step {step} of {schedule.warmup_steps})"
    return None


class EndForecaster:
    """The forecast of the end-of-run count after each epoch, and the one ``min_active`` warning.

    Parameters
    ----------
    total_epochs : int
        Epochs of the configured run.
    base : mapping, optional
        The closed form from the configuration (:func:`check_base`): the fallback where the trajectory cannot
        be extrapolated.
    regime : mapping, optional
        The configuration's regime labels (:func:`~collapsekit.diagnostics.forecast_intervals.regime_of`): which
        conformal half-width the interval uses and which benchmark row the warning quotes (None: the pooled
        half-width, the whole reporting split).
    free_bits : float, optional
        The run's free bits λ (nats): the extrapolated KL per dimension is floored at λ
        (:func:`~collapsekit.diagnostics.forecast_kernel.free_bits_floor`, as the early forecast does).
    """

    def __init__(self, total_epochs: int, base: Mapping[str, Any] | None = None,
                 regime: Mapping[str, str] | None = None, free_bits: float | None = None) -> None:
        self.total_epochs = int(total_epochs)
        self.base = check_base(base)
        self.regime = None if regime is None else {str(k): str(v) for k, v in regime.items()}
        self.free_bits = free_bits
        self.tail: list[list[float]] = []
        self.warned_at: int | None = None

    def step(self, kl: Any, *, epoch: int, step: int, schedule: Any) -> dict[str, Any] | None:
        """Add an epoch's KL per dimension of the summary level; the forecast record (None: no method applies).

        The record: ``n_active``, ``interval`` [lo, hi], ``latent_size``, ``method`` (``early`` or
        ``closed_form``), ``epoch`` (the epochs seen), ``total_epochs`` and ``note`` (why the closed form
        stands in, or None).
        """
        kl = [float(v) for v in kl]
        self.tail = (self.tail + [kl])[-TAIL:]
        problem = trajectory_problem(schedule, step)
        if problem is None:
            ending = np.sort(extrapolate(self.tail, self.total_epochs, gamma=EARLY_DEFAULTS["gamma"],
                                         done=epoch))[::-1]
            weight = EARLY_DEFAULTS["weight"]
            if weight < 1 and self.base is not None:
                ending = blend(ending, self.base["kl_per_rank"], weight)
            ending = free_bits_floor(ending, self.free_bits)
            n = count_active(ending)
            found = {"n_active": n, "interval": list(early_interval(n, len(kl), self.regime)), "method": "early",
                     "note": None}
        elif self.base is not None:
            found = {"n_active": self.base["n_active"], "interval": list(self.base["interval"]),
                     "method": "closed_form", "note": f"no early-training forecast: {problem}"}
        else:
            return None
        return found | {"latent_size": len(kl), "epoch": int(epoch), "total_epochs": self.total_epochs}

    def warning(self, record: Mapping[str, Any] | None, min_active: int | None, level: str) -> str | None:
        """The text of the one warning, the first time ``record`` forecasts fewer than ``min_active`` dimensions."""
        if record is None or min_active is None or self.warned_at is not None or record["n_active"] >= min_active:
            return None
        self.warned_at = int(record["epoch"])
        lo, hi = record["interval"]
        how = ("extrapolated from the KL trajectory so far" if record["method"] == "early"
               else "the closed form from the configuration")
        said = self.accuracy(record["method"])
        how += "" if said is None else f"; {said}"
        return (f"epoch {record['epoch']} of {record['total_epochs']}, {level}: the forecast says the run ends with "
                f"{record['n_active']} of {record['latent_size']} latent dimensions active (interval {lo}–{hi}; {how}), "
                f"fewer than min_active = {min_active}: stop it and lower β (or lengthen its warm-up) to keep more")

    def accuracy(self, method: str) -> str | None:
        """The method's measured accuracy on the benchmark's reporting split, as a clause ("within ±1 on 61 % of
        comparable benchmark runs"): the row of the configuration's likelihood where it has enough runs (None for a
        linear model: the benchmark measured nonlinear ones)."""
        regime = self.regime or {}
        return comparable(method, regime.get("arch", "mlp"), self.regime)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: the last epochs' KL and the epoch of the warning (None: not warned)."""
        return {"tail": self.tail, "warned_at": self.warned_at}

    def load_state_dict(self, state: Mapping[str, Any] | None, history: list[dict[str, Any]], level: str | None) -> None:
        """Restore :meth:`state_dict`; a state saved before the monitor forecast (None) starts the tail from the
        last epoch ``history`` holds."""
        if state is None:
            last = history[-1]["levels"].get(level) if history and level is not None else None
            self.tail = [] if last is None else [list(last["kl_per_dim"])]
            self.warned_at = None
            return
        self.tail = [[float(v) for v in row] for row in state["tail"]][-TAIL:]
        self.warned_at = None if state.get("warned_at") is None else int(state["warned_at"])
