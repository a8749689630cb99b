"""The paper's qualitative claims judged from measured numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from collapsekit.formatting import cell


@dataclass(frozen=True)
class Verdict:
    """The paper's qualitative claim judged from the measured numbers.

    Attributes
    ----------
    holds : bool or None
        True: the measurements show the claimed effect; False: they do not (or show the
        opposite); None: inconclusive (the settings span no change, even in the prediction).
    evidence : str
        The numbers behind it, in a sentence.
    """

    holds: bool | None
    evidence: str

    @property
    def word(self) -> str:
        """``holds``, ``does not hold`` or ``inconclusive``."""
        return {True: "holds", False: "does not hold", None: "inconclusive"}[self.holds]


def trend(xs: Sequence[float], ys: Sequence[float], direction: str) -> str:
    """How ``ys`` move as ``xs`` grow: ``"as claimed"`` (never against ``direction``, "down" or "up",
    and a net change), ``"flat"`` (no change at all) or ``"against"``."""
    ordered = [y for _, y in sorted(zip(xs, ys), key=lambda pair: pair[0])]
    steps = np.diff(np.asarray(ordered, dtype=float))
    if not np.any(steps):
        return "flat"
    sign = -1.0 if direction == "down" else 1.0
    return "against" if np.any(sign * steps < 0) else "as claimed"


def arrow(values: Sequence[Any]) -> str:
    """``16→14→6``."""
    return "→".join(cell(v) for v in values)


def combine(parts: Sequence[tuple[bool | None, str]]) -> Verdict:
    """One verdict from several sub-claims: does not hold when one fails; holds when at least one
    holds and the others are uninformative (None: neither the theory nor the measurement changes
    along them); inconclusive when none is informative."""
    holds = [h for h, _ in parts]
    overall: bool | None = False if any(h is False for h in holds) else (True if any(holds) else None)
    return Verdict(overall, "; ".join(text for _, text in parts))


def trend_claim(name: str, xs: Sequence[float], measured: Sequence[int], predicted: Sequence[Any],
                direction: str, *, what: str = "active dims") -> tuple[bool | None, str]:
    """A sub-claim "``what`` go ``direction`` as ``name`` grows", judged on measured values.

    Returns True (as claimed), False (against it, or no change where the theory's ``predicted``
    counts change) or None (no change, and none predicted: the settings cannot tell).
    """
    seen = trend(xs, measured, direction)
    order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
    shown = f"{name} {arrow([xs[i] for i in order])}: {what} {arrow([measured[i] for i in order])}"
    known = [p for p in predicted if p is not None]
    if len(known) == len(predicted):
        shown += f" (theory {arrow([predicted[i] for i in order])})"
    if seen == "as claimed":
        return True, shown
    if seen == "flat":
        if len(known) == len(predicted) and trend(xs, known, direction) == "flat":
            return None, shown + " — no change measured or predicted"
        return False, shown + " — no change measured"
    return False, shown + " — moves against the claim"

