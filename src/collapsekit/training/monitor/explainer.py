"""The adapter between the collapse monitor and the explanation engine: from the monitor's options and
what it has seen (levels, steps, epochs) to :func:`~collapsekit.diagnostics.explain.explain_collapse`'s
arguments, and from its explanations to the text of a warning."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from collapsekit._validation import zero_beta
from collapsekit.diagnostics.explain import (Explanation, ScheduleInfo, collapse_summary, explain_collapse,
                                             format_explanations)
from collapsekit.diagnostics.theory_compare import zero_beta_explanation
from collapsekit.errors import CollapsekitError
from collapsekit.theory import Moments
from collapsekit.training.monitor.events import CollapseEvent
from collapsekit.training.monitor.options import MonitorOptions


class CollapseExplainer:
    """Causes, prescriptions and warning texts for a monitor with these ``options``.

    It reads the options when asked (the monitor may learn ``n_features`` while training) and tells
    ``say`` when the theory could not be used.
    """

    def __init__(self, options: MonitorOptions, say: Callable[[str], Any]) -> None:
        self.options = options
        self.say = say

    def explain(self, collapsed: Sequence[int], level: str, latent_dim: int, *, level_dims: Sequence[int],
                step: int) -> list[Explanation]:
        """Causes and prescriptions for ``collapsed`` dimensions of ``level``; ``level_dims`` are the sizes
        of the levels seen, bottom to top, and ``step`` the optimiser steps so far (for the schedule)."""
        options = self.options
        if zero_beta(options.hyper.get("beta")):             # nothing to prescribe from the collapse theory
            return [zero_beta_explanation(level, options.hyper["beta"])]
        hyper = dict(options.hyper)
        hyper.setdefault("eta_enc", options.eta_enc_of(level))
        if len(level_dims) > 1:             # a hierarchy: its levels, bottom to top, as seen
            hyper.setdefault("latent_dims", list(level_dims))
        schedule = self.schedule_info(step)
        kind = self.kind(len(level_dims))

        def run(moments: Moments | None) -> list[Explanation]:
            return explain_collapse(collapsed, latent_dim, model_kind=kind, moments=moments, hyper=hyper,
                                    level=level, schedule=schedule, linear=options.linear,
                                    loss_reduction=options.loss_reduction, n_features=options.n_features)
        try:
            return run(options.moments)
        except CollapsekitError as exc:     # e.g. moments of other data: still name the dimensions
            self.say(f"collapse explanation without the theory: {exc}")
            return run(None)

    def kind(self, n_levels: int) -> str:
        """The model kind the explanations assume: the option, else inferred from the levels and moments."""
        options = self.options
        if options.model_kind is not None:
            return options.model_kind
        if n_levels > 1:
            return "hvae"
        return "cvae" if options.moments is not None and options.moments.conditional else "vae"

    def schedule_info(self, step: int) -> ScheduleInfo | None:
        """The KL schedule as the explanations read it, at optimiser step ``step``."""
        schedule = self.options.schedule
        if schedule is None:
            return None
        if isinstance(schedule, ScheduleInfo):
            return schedule
        if isinstance(schedule, Mapping):
            return ScheduleInfo(**{"step": step, **schedule})
        return ScheduleInfo.from_schedule(schedule, total_steps=self.options.total_steps, step=step)

    def event(self, level: str, dim: int, confirmed: list[int], new: list[int], *, epoch: int,
              explanations: list[Explanation], earlier: CollapseEvent | None,
              n_collapsed_now: int | None = None) -> CollapseEvent:
        """The warning for ``confirmed`` dimensions of ``level`` (``new`` of them not warned about before) at
        the end of ``epoch``; ``earlier`` is the last warning about that level, whose causes are not
        spelled out again when they are the same."""
        summary = collapse_summary(confirmed, dim, level=level, epochs=self.options.patience,
                                   n_collapsed_now=n_collapsed_now)
        if len(new) < len(confirmed):
            summary += f" (newly collapsed: {', '.join(map(str, new))})"
        headline = f"Posterior collapse at epoch {epoch}: {summary}"
        # A collapse in progress warns again for each new dimension; the causes are spelled out once.
        if earlier is not None and [e.cause for e in earlier.explanations] == [e.cause for e in explanations]:
            message = f"{headline}; same causes as at epoch {earlier.epoch}" if explanations else headline
        else:
            message = format_explanations(headline, explanations)
        return CollapseEvent(epoch, level, list(confirmed), list(new), message, explanations)
