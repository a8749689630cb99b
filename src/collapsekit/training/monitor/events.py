"""What the collapse monitor reports: the warning it issues and the record it keeps of each one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collapsekit.diagnostics.explain import Explanation


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

    def warning(self) -> CollapseWarning:
        """The :class:`CollapseWarning` that announces this event."""
        return CollapseWarning(self.message, level=self.level, dims=self.dims, new_dims=self.new_dims,
                               epoch=self.epoch, explanations=self.explanations)
