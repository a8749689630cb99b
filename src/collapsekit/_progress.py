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
    """Training progress on stderr, from host values only (nothing here reads a device tensor).

    On a terminal: a bar over all steps, advanced every ``every`` steps, showing the epoch and the
    last finished epoch's loss terms. Elsewhere (a log file, a pipe): one line per epoch, so a log shows life.
    The active count is the monitor's record of the epoch (the headline rule on the epoch's batches).
    """

    def __init__(self, bar: Progress | None, task: Any, epochs: int, *, every: int = 10, lines: bool = False) -> None:
        self._bar, self._task, self._epochs, self._every, self._lines = bar, task, epochs, every, lines
        self._count = 0

    def start_epoch(self, epoch: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, epoch=f"epoch {epoch}/{self._epochs}")

    def advance(self) -> None:
        """One optimiser step done."""
        if self._bar is None:
            return
        self._count += 1
        if self._count == self._every:
            self._bar.update(self._task, advance=self._count)
            self._count = 0

    def end_epoch(self, record: dict[str, Any]) -> None:
        """An epoch's metrics record (host values, already read once for the whole epoch)."""
        counts = record.get("n_active")
        size = len(record["kl_per_dim"][-1]) if record.get("kl_per_dim") else 0
        active = counts[-1] if counts and size else None
        if self._bar is not None:
            short = f"loss {record['loss']:.4g}  KL {record['kl']:.4g} nats"
            self._bar.update(self._task, advance=self._count,
                             terms=short + ("" if active is None else f"  {active}/{size} active"))
            self._count = 0
        elif self._lines:
            line = (f"epoch {record['epoch']}/{self._epochs}: loss {record['loss']:.4g}, reconstruction "
                    f"{record['reconstruction']:.4g}, KL {record['kl']:.4g} nats")
            print(line + ("" if active is None else f"; {active} of {size} dimensions active on the epoch's batches"),
                  file=sys.stderr, flush=True)


@contextlib.contextmanager
def training_progress(epochs: int, steps_per_epoch: int, *, enabled: bool,
                      start_epoch: int = 0) -> Iterator[TrainingBar]:
    """Training progress on stderr (nothing when ``enabled`` is false): a bar on a terminal, one line
    per epoch otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield TrainingBar(None, None, epochs, lines=enabled)
        return
    columns = (TextColumn("training"), TextColumn("{task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[terms]}"))
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("training", total=epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
                            epoch=f"epoch {start_epoch + 1}/{epochs}", terms="")
        yield TrainingBar(bar, task, epochs)
