"""Progress bars on stderr (rich): for the CLI, and for the trainer and the sweep, which sit below it.

Nothing here prints results: a bar is transient and goes to stderr, so stdout stays what a verb
prints.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
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


#: ``stage(name, done, total)``: how far one stage of a long job has come (``done`` of ``total`` units).
Stage = Callable[[str, int, int], None]

#: Off a terminal, a job prints nothing until it has run this long (seconds): quick work stays quiet, long
#: work shows life in a log file.
QUIET_SECONDS = 2.0
#: Off a terminal, each stage prints a line when it passes each of these fractions (once the job is long).
LINE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


class _StageLines:
    """Off a terminal: a few plain lines per stage of a long job (a quarter, half, three quarters, done)."""

    def __init__(self, title: str, stream: TextIO) -> None:
        self.title, self.stream = title, stream
        self.started = time.perf_counter()
        self.passed: dict[str, int] = {}       # stage → how many of LINE_FRACTIONS it has passed
        self.stage_started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        self.stage_started.setdefault(stage, now)
        fraction = 1.0 if total <= 0 else min(done / total, 1.0)
        passed = sum(fraction >= f for f in LINE_FRACTIONS)
        if passed <= self.passed.get(stage, 0):
            return
        self.passed[stage] = passed
        if now - self.started < QUIET_SECONDS:
            return                             # quick so far: nobody is waiting yet
        print(f"{self.title}: {stage}: {done}/{total} ({fraction:.0%}, {now - self.stage_started[stage]:.0f} s)",
              file=self.stream, flush=True)


@contextlib.contextmanager
def stages(title: str, *, quiet: bool = False) -> Iterator[Stage]:
    """Progress through the named stages of one long job, on stderr; yields ``stage(name, done, total)``.

    On a terminal: a transient rich bar per stage. Elsewhere (a log file, a pipe): a few plain lines per stage,
    when it passes a quarter, half, three quarters and the end, once the job has run :data:`QUIET_SECONDS`;
    never one per batch. ``quiet``: nothing at all.
    """
    if quiet:
        yield lambda stage, done, total: None
        return
    if not sys.stderr.isatty():
        yield _StageLines(title, sys.stderr)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(escape(f"{title}: {stage}"), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


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
        validation = record.get("val_n_active")
        if self._bar is not None:
            short = f"loss {record['loss']:.4g}  KL {record['kl']:.4g} nats"
            short += "" if active is None else f"  {active}/{size} active"
            short += "" if validation is None else f"  validation {record['val_loss']:.4g}, {validation[-1]}/{size}"
            self._bar.update(self._task, advance=self._count, terms=short)
            self._count = 0
        elif self._lines:
            line = (f"epoch {record['epoch']}/{self._epochs}: loss {record['loss']:.4g}, reconstruction "
                    f"{record['reconstruction']:.4g}, KL {record['kl']:.4g} nats")
            line += "" if active is None else f"; {active} of {size} dimensions active on the epoch's batches"
            if validation is not None:
                line += f"; validation loss {record['val_loss']:.4g}, {validation[-1]} of {size} active"
            print(line, file=sys.stderr, flush=True)
        if record.get("stopped") and (self._bar is not None or self._lines):
            print(f"early stop at epoch {record['epoch']}: {record['stopped']['message']}", file=sys.stderr,
                  flush=True)


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
