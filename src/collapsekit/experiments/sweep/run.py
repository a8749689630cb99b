"""Run a sweep: every point of a grid × seeds, in parallel, resumable (see :mod:`collapsekit.experiments.sweep`)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from collapsekit.errors import CollapsekitError, ParameterError
from collapsekit.experiments.executors import TaskFailure, available_cores, make_executor, point_accelerator
from collapsekit.experiments.sweep.directory import claim_directory, refuse_foreign, sweep_spec
from collapsekit.experiments.sweep.grid import Grid, seed_list
from collapsekit.experiments.sweep.layout import POINTS_DIR, STATUS_FILE, SUMMARY_FILE
from collapsekit.experiments.sweep.lock import exclusive
from collapsekit.experiments.sweep.plot import plot_axis, plot_sweep
from collapsekit.experiments.sweep.points import expand_grid, point_config
from collapsekit.experiments.sweep.summary import SweepResult, summary_rows, what_ran, write_summary
from collapsekit.experiments.sweep.worker import (PointTask, batch_groups, read_status, record_lost, run_points,
                                                  warning_class, warning_line)

if TYPE_CHECKING:
    from collapsekit.training import RunConfig


def run_sweep(base_config: RunConfig, grid: Grid, seeds: int | Sequence[int], out_dir: str | os.PathLike[str], *,
              executor: str = "local", workers: int | None = None, address: str | None = None,
              progress: bool = True, batched: bool = True, plot: bool = True, gpus_per_point: float | None = None,
              batch_mode: str = "exact", on_point: Callable[[int, int], None] | None = None) -> SweepResult:
    """Train every point of ``grid`` × ``seeds`` into ``out_dir``; finish what an earlier call left.

    Parameters
    ----------
    base_config : RunConfig
        The configuration every point starts from.
    grid : mapping of str to sequence
        Grid key → values (keys as :func:`resolve_key` accepts them).
    seeds : int or sequence of int
        A count (seeds 0..n-1) or the seeds themselves.
    out_dir : path
        The sweep directory (see the module docstring); created if missing.
    executor : {"local", "ray"}
        Worker processes on this machine, or tasks on the Ray cluster at ``address``.
    workers : int, optional
        Points at once (local default: the cores available; Ray default: as many as it schedules).
    address : str, optional
        Ray only: ``HOST:PORT`` of the cluster's head.
    progress : bool
        Show the plan and one progress bar over points on stderr.
    batched : bool
        Train new points of small one-level VAEs as batched programs, one per worker, when
        :func:`~collapsekit.experiments.can_batch` accepts them (their results are those of separate runs).
    plot : bool
        Draw ``active_vs_<key>.png`` (measured active dimensions and the theory's curve).
    gpus_per_point : float, optional
        GPUs each point gets: Ray's ``num_gpus``; local workers pinned round-robin with
        ``CUDA_VISIBLE_DEVICES`` (default then: one worker per GPU). Default: 1 when the base
        configuration's ``train.accelerator`` asks for a GPU (``auto`` where this machine has one), else
        0. A point's accelerator follows (:func:`~collapsekit.experiments.executors.point_accelerator`).
    batch_mode : {"exact", "fast"}
        How batched programs train (:func:`~collapsekit.training.batched.train_batched`).
    on_point : callable, optional
        ``on_point(done, total)`` once before any point runs and whenever points finish (``total``: the
        points this call runs): for a caller that shows its own progress (``reproduce``), with ``progress``
        off so that the sweep draws no bar of its own.

    Returns
    -------
    SweepResult
        The summary rows; ``result.ok`` is False when a point failed (each failure is in its row).

    Raises
    ------
    ParameterError
        Bad input, found before anything runs: an unknown grid key, a value the configuration
        rejects (naming the point), a directory that holds another sweep, a missing Ray.
    """
    out = Path(out_dir).resolve()
    seeds = seed_list(seeds)
    points = expand_grid(grid, seeds)
    configs: dict[str, RunConfig] = {}
    for point in points:
        try:
            configs[point.id] = point_config(base_config, point.settings, point.seed)
        except CollapsekitError as exc:
            raise ParameterError(f"grid point {point.id}: {exc}") from None
    from collapsekit.training.batched import check_batch_mode

    batch_mode = check_batch_mode(batch_mode)
    runner = make_executor(executor, workers=workers, address=address,   # a missing Ray fails here, early
                           gpus_per_point=gpus_per_point, accelerator=base_config.train.accelerator)
    accelerator = point_accelerator(base_config.train.accelerator, getattr(runner, "gpus_per_point", 0.0))
    if accelerator != base_config.train.accelerator:
        configs = {key: config.with_overrides({"train.accelerator": accelerator}) for key, config in configs.items()}
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file, not a directory")
    refuse_foreign(out)                          # before the lock file is created in it
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        claim_directory(out, sweep_spec(base_config, grid, seeds))
        point_dir = lambda point: out / POINTS_DIR / point.id  # noqa: E731
        statuses = {point.id: read_status(point_dir(point)) for point in points}
        todo = [point for point in points if statuses[point.id].get("status") != "done"]
        was = lambda status: [p.id for p in points if statuses[p.id].get("status") == status]  # noqa: E731
        result = SweepResult(out_dir=out, rows=[], skipped=was("done"), retried=was("failed"),
                             interrupted=was("running"), ran=[p.id for p in todo])
        if progress:
            _print_plan(result, len(points), executor, workers)
        summary = out / SUMMARY_FILE
        write_summary(summary, summary_rows(points, statuses), list(grid))
        tasks = [PointTask(point.id, str(point_dir(point)), configs[point.id].model_dump(by_alias=True, mode="json"),
                           settings=dict(point.settings), seed=point.seed, batch_mode=batch_mode) for point in todo]
        groups, how = batch_groups(tasks, configs, workers or getattr(runner, "workers", None) or available_cores(),
                                   batched)
        result.batching = how
        if progress and how:
            _print_line(f"sweep {out}: {how}")
        from collapsekit._progress import progress as progress_bar

        done = 0
        if on_point is not None:
            on_point(done, len(tasks))
        with progress_bar(len(tasks), "sweep points", quiet=not progress) as advance:
            for index, outcome in runner.run(run_points, groups):
                group = groups[index]
                records = ([record_lost(task, outcome) for task in group] if isinstance(outcome, TaskFailure)
                           else outcome)
                for task, record in zip(group, records):
                    statuses[task.point_id] = record
                    _reissue_warnings(task.point_id, record)
                write_summary(summary, summary_rows(points, statuses), list(grid))
                advance(len(group))
                done += len(group)
                if on_point is not None:
                    on_point(done, len(tasks))
        result.rows = summary_rows(points, statuses)
        with contextlib.suppress(ParameterError):    # a grid of words only has no x axis to plot against
            axis = plot_axis(grid)
            if plot and axis is not None and any(row["status"] == "done" for row in result.rows):
                result.plot_path = plot_sweep(out, x=axis)
    return result


def _reissue_warnings(point_id: str, record: dict) -> None:
    """A point's collapse and checkpoint warnings, issued again here as one line each naming the point.

    The worker collected them instead of printing them (:func:`~collapsekit.experiments.sweep.worker.point_warnings`):
    a worker cannot print above the sweep's progress bar, and its warnings would not say which point
    they come from. The full texts (with the likely causes) stay in the point's ``status.json``.
    """
    where = f"{POINTS_DIR}/{point_id}/{STATUS_FILE}"
    for item in record.get("warnings", []):
        category = warning_class(item["category"])
        warnings.warn(category(warning_line(point_id, item["message"], where)), stacklevel=2)


def _print_plan(result: SweepResult, total: int, executor: str, workers: int | None) -> None:
    where = f"{executor} executor" + (f", {workers} workers" if workers else "")
    _print_line(f"sweep {result.out_dir}: {total} points; {what_ran(result, before=True)} ({where})")


def _print_line(text: str) -> None:
    from rich.console import Console

    Console(file=sys.stderr, highlight=False).print(text, soft_wrap=True, markup=False)
