"""What a preset is: one experiment of the paper, by name, with the runner that performs it.

The registry (:data:`collapsekit.experiments.presets.PRESETS`) lists them; the runners in this
package take a :class:`~.context.Context`. Importing this module imports neither torch nor the runners.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    """One experiment of the paper.

    Attributes
    ----------
    name : str
        The CLI name (``cvae-beta-eta``).
    paper_id : str
        Its number in docs/experiments.md §1.3 (``E1``).
    title : str
        The paper's (README's) name of the experiment.
    description : str
        One line: what the preset trains and measures.
    claim : str
        The paper's qualitative claim, which the verdict judges.
    quick_seconds : int
        About how long the quick scale takes on a 2-core laptop CPU.
    runner : str or callable
        ``module:function`` of the runner (imported when the preset runs: it imports torch), or the runner
        itself (a preset registered from another module, :func:`~collapsekit.experiments.presets.register_preset`).
    exact : bool
        A linear model: measured collapse must equal the closed form's prediction.
    """

    name: str
    paper_id: str
    title: str
    description: str
    claim: str
    quick_seconds: int
    runner: str | Callable[[Any], Any]
    exact: bool = False

    def load_runner(self) -> Callable[[Any], Any]:
        """The function that runs this preset: it takes a
        :class:`~collapsekit.experiments.reproduction.context.Context` and returns a
        :class:`~collapsekit.experiments.reproduction.outputs.PresetResult`."""
        if callable(self.runner):
            return self.runner
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)
