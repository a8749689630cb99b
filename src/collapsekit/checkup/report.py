"""What the doctor returns: one :class:`Check` per check (ok / warn / fail, one sentence of evidence, the fix)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: The statuses, best first.
STATUSES = ("ok", "warn", "fail")


@dataclass
class Check:
    """The outcome of one check.

    Attributes
    ----------
    name : str
        ``"effective_beta"``, ``"decoder_uses_z"``, ``"encoder_training"``, ``"schedule"``,
        ``"regularisation"`` or ``"theory"``.
    status : str
        ``"ok"``, ``"warn"`` or ``"fail"``.
    message : str
        One sentence of evidence (the numbers the verdict rests on).
    fix : str
        What to change; empty when the status is ok.
    evidence : dict
        The numbers themselves (JSON-ready).
    """

    name: str
    status: str
    message: str
    fix: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "status", "message", "fix", ...evidence}``; a non-finite number is None (strict JSON)."""
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix,
                **{key: _finite(value) for key, value in self.evidence.items()}}


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@dataclass
class Skipped:
    """A check that could not run, and why (e.g. no ``loss_fn`` given)."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reason": self.reason}


@dataclass
class DoctorReport:
    """Every check the doctor ran, in order, and those it skipped.

    Attributes
    ----------
    model : str
        The adapter's name for the model.
    checks : list of Check
    skipped : list of Skipped
    notes : list of str
        The adapter's stand-ins and the doctor's own remarks (examples used, device).
    """

    model: str
    checks: list[Check] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(check.name == name for check in self.checks)

    @property
    def status(self) -> str:
        """The worst status of all checks (``"ok"`` when none ran)."""
        return max((c.status for c in self.checks), key=STATUSES.index, default="ok")

    def to_dict(self) -> dict[str, Any]:
        """``{"model", "status", "checks": [{"name", "status", "message", "fix", ...}], "skipped", "notes"}``."""
        return {"model": self.model, "status": self.status, "checks": [c.to_dict() for c in self.checks],
                "skipped": [s.to_dict() for s in self.skipped], "notes": list(self.notes)}
