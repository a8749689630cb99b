"""Progress bars on stderr (rich): for the CLI, and for the trainer and the sweep, which sit below it.

Nothing here prints results: a bar is transient and goes to stderr, so stdout stays what a verb
prints.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def progress(total: int, description: str, *, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr; yields a function that advances it by its argument (default one)."""
    if quiet or total <= 1:
        yield lambda steps=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda steps=1: bar.advance(task, steps)


class TrainingBar:
    """Advances a rich progress bar per step; shows the loss terms every ``every`` steps."""

    def __init__(self, bar: Progress | None, task: Any, every: int = 10) -> None:
        self._bar, self._task, self._every, self._count = bar, task, every, 0

    def advance(self, terms: Any) -> None:
        if self._bar is None:
            return
        self._count += 1
        if self._count % self._every == 0:
            self._bar.update(self._task, advance=self._every,
                             terms=f"loss {float(terms.loss.detach()):.4g}  "
                                   f"rec {float(terms.reconstruction.detach()):.4g}  "
                                   f"KL {float(terms.kl.detach().sum()):.4g} nats")


@contextlib.contextmanager
def training_progress(epochs: int, steps_per_epoch: int, *, enabled: bool,
                      start_epoch: int = 0) -> Iterator[TrainingBar]:
    """A progress bar over all training steps on stderr (nothing when ``enabled`` is false)."""
    if not enabled:
        yield TrainingBar(None, None)
        return
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[terms]}"))
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("training", total=epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
                            terms="")
        yield TrainingBar(bar, task)
