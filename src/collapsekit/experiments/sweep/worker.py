"""One point (or a batched group of points) trained in a worker: its status record, its directory, its numbers.

Everything here runs in a worker process (or a Ray task) and takes plain data, so that it crosses
process and machine boundaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapsekit._io import atomic_path
from collapsekit.activity import summary_level
from collapsekit.experiments.executors import TaskFailure, one_line
from collapsekit.experiments.sweep.layout import STATUS_FILE, TRACEBACK_FILE
from collapsekit.experiments.sweep.theory import predicted_active, predicted_interval

if TYPE_CHECKING:
    from collapsekit.training import RunConfig, RunResult, TrainingData


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to run one point (plain data: it crosses process and machine boundaries)."""

    point_id: str
    point_dir: str
    config: dict[str, Any]
    settings: dict[str, Any] = field(hash=False)
    seed: int = 0
    #: How a batched group trains (:func:`~collapsekit.training.batched.train_batched`'s ``mode``).
    batch_mode: str = "exact"


def read_status(point_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A point's ``status.json`` ({} when it never started)."""
    try:
        status = json.loads((Path(point_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):   # atomic writes leave no half file; a hand edit might
        return {}
    return status if isinstance(status, dict) else {}


def _write_status(point_dir: Path, record: dict[str, Any]) -> None:
    with atomic_path(point_dir / STATUS_FILE) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _write_traceback(point_dir: Path, text: str) -> None:
    with atomic_path(point_dir / TRACEBACK_FILE) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


#: The warnings a worker hands to the sweep instead of printing them (see :func:`point_warnings`), by class name.
MESSAGE_WARNINGS = ("CollapseWarning", "CheckpointWarning")


@contextlib.contextmanager
def point_warnings() -> Iterator[list[dict[str, str]]]:
    """Collect a point's collapse and checkpoint warnings instead of printing them from the worker.

    Yields a list that fills with ``{"category": class name, "message": full text}``, in the order
    issued. The sweep prints each as one line naming its point (:func:`warning_line`), from its own
    process, above its progress bar; the full texts stay in the point's ``status.json``
    (``warnings``). Every other warning is shown as Python would have shown it.
    """
    collected: list[dict[str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        for name in MESSAGE_WARNINGS:        # every epoch's warning, even where a point repeats another's text
            warnings.filterwarnings("always", category=warning_class(name))
        try:
            yield collected
        finally:
            others = []
            for item in caught:
                if item.category.__name__ in MESSAGE_WARNINGS:
                    collected.append({"category": item.category.__name__, "message": str(item.message)})
                else:
                    others.append(item)
    for item in others:
        warnings.showwarning(item.message, item.category, item.filename, item.lineno, item.file, item.line)


def warning_class(name: str) -> type[Warning]:
    """The warning class of one of :data:`MESSAGE_WARNINGS` (a record carries the name: it crosses processes)."""
    from collapsekit.training.checkpoint import CheckpointWarning
    from collapsekit.training.monitor import CollapseWarning

    return {"CollapseWarning": CollapseWarning, "CheckpointWarning": CheckpointWarning}[name]


def warning_line(point_id: str, message: str, status_path: str | os.PathLike[str] | None = None) -> str:
    """One line for a point's warning: ``beta=2,seed=1: posterior collapse at epoch 4: z: 2 of 3 ...``.

    The first line of the text, its first letter lowered, after the point's id; a warning with more
    lines (the likely causes) says how many and where they are.
    """
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    text = f"{point_id}: {first[:1].lower()}{first[1:]}"
    if len(lines) > 1:
        where = f" in {status_path}" if status_path is not None else ""
        text += f" ({len(lines) - 1} likely cause{'s' if len(lines) > 2 else ''}{where})"
    return text


def run_point(task: PointTask) -> dict[str, Any]:
    """Train one point into its directory and return its status record (also in ``status.json``).

    Runs in a worker. Any exception is the point's own failure: it is recorded and returned, so
    that the sweep goes on with the others.
    """
    point_dir = Path(task.point_dir)
    attempt = int(read_status(point_dir).get("attempt", 0)) + 1
    record: dict[str, Any] = {"point": task.point_id, "settings": task.settings, "seed": task.seed,
                              "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(),
                              "started": _now(), "started_unix": time.time()}
    _write_status(point_dir, {**record, "status": "running"})
    with point_warnings() as issued:
        try:
            result, resumed_from = _train_point(task, point_dir)
            record |= {"status": "done", "resumed_from": resumed_from, "result": result}
        except Exception as exc:                          # noqa: BLE001 — one point's failure, recorded
            _write_traceback(point_dir, traceback.format_exc())
            record |= {"status": "failed", "error": one_line(exc), "traceback": TRACEBACK_FILE}
    if issued:
        record["warnings"] = issued
    record["finished"] = _now()
    _write_status(point_dir, record)
    return record


def run_points(tasks: Sequence[PointTask]) -> list[dict[str, Any]]:
    """Train a group of points and return their status records, in order; runs in a worker.

    One point is :func:`run_point`. Several are fresh points that :func:`~collapsekit.experiments.can_batch`
    accepts: they train as one batched program (:func:`~collapsekit.experiments.train_batched`, whose
    runs end exactly as separate runs do). A point whose loss diverges fails alone, as it would in
    its own run; if the program itself fails, every point of the group is run on its own, so that one
    point's error is recorded as that point's.
    """
    if len(tasks) == 1:
        return [run_point(tasks[0])]
    from collapsekit.training.batched import train_batched
    from collapsekit.training import RunConfig, load_training_data

    dirs = [Path(task.point_dir) for task in tasks]
    records = []
    for task, point_dir in zip(tasks, dirs):
        attempt = int(read_status(point_dir).get("attempt", 0)) + 1
        records.append({"point": task.point_id, "settings": task.settings, "seed": task.seed, "attempt": attempt,
                        "host": socket.gethostname(), "pid": os.getpid(), "started": _now(),
                        "started_unix": time.time(), "batched": len(tasks)})
        _resumable(point_dir)                             # clears what a failed attempt left
        _write_status(point_dir, {**records[-1], "status": "running"})
    configs = [RunConfig.parse(task.config) for task in tasks]
    try:
        # The program's warnings cannot say which of its runs issued them; each run's metrics records do.
        with point_warnings() as issued:
            runs = train_batched(configs, dirs, mode=tasks[0].batch_mode)
    except Exception:                                     # noqa: BLE001 — fall back to one run per point
        return [run_point(task) for task in tasks]
    for other in (w for w in issued if w["category"] != "CollapseWarning"):   # none expected: fresh points
        warnings.warn(other["message"], warning_class(other["category"]), stacklevel=1)
    loaded: dict[Any, TrainingData] = {}
    for record, config, run, point_dir in zip(records, configs, runs, dirs):
        if "diverged" in run.extras:
            error = f"TrainingDiverged: {run.extras['diverged']}"
            _write_traceback(point_dir, error + "\n(raised in a batched program: no traceback)\n")
            record |= {"status": "failed", "error": error, "traceback": TRACEBACK_FILE}
        else:
            key = config.train.seed if config.data.part is not None else None
            data = loaded[key] if key in loaded else loaded.setdefault(key, load_training_data(config))
            record |= {"status": "done", "resumed_from": None, "result": point_result(config, run, data)}
        own = [{"category": "CollapseWarning", "message": text}
               for metrics in run.metrics for text in metrics.get("collapse_warnings", [])]
        if own:
            record["warnings"] = own
        record["finished"] = _now()
        _write_status(point_dir, record)
    return records


def batch_groups(tasks: Sequence[PointTask], configs: Mapping[str, RunConfig], parallel: int,
                 batched: bool = True) -> tuple[list[list[PointTask]], str]:
    """Split the points to run into groups for :func:`run_points`, and say how.

    Points with no checkpoint whose configurations :func:`~collapsekit.experiments.can_batch` accepts
    together are dealt round-robin into ``parallel`` batched groups (one per worker); the rest run one
    per group (a point with a checkpoint resumes with the trainer).
    """
    from collapsekit.training.checkpoint import latest_checkpoint
    from collapsekit.training.trainer import CHECKPOINT_DIR

    fresh = [t for t in tasks if latest_checkpoint(Path(t.point_dir) / CHECKPOINT_DIR) is None]
    singles = [[t] for t in tasks if t not in fresh]
    if not batched or len(fresh) < 2:
        return [[t] for t in tasks], "" if not batched else "not batched: fewer than 2 new points"
    from collapsekit.training.batched import can_batch

    verdict = can_batch([configs[t.point_id] for t in fresh])
    if verdict is not True:
        return [[t] for t in tasks], f"not batched: {verdict}"
    width = max(1, min(parallel, len(fresh)))
    groups = [fresh[i::width] for i in range(width)]
    return groups + singles, f"batched: {len(fresh)} points as {width} program(s)"


def _train_point(task: PointTask, point_dir: Path) -> tuple[dict[str, Any], int | None]:
    from collapsekit.training import RunConfig, Trainer, load_training_data

    config = RunConfig.parse(task.config)
    resume = _resumable(point_dir)
    data = load_training_data(config)
    run = Trainer(config, point_dir, resume=resume, data=data).fit()
    return point_result(config, run, data), run.resumed_from


def _resumable(point_dir: Path) -> bool:
    """True when the point has a checkpoint to resume from; otherwise clear what a killed or failed
    attempt left (a metrics line may precede its checkpoint) so the point starts afresh."""
    import shutil

    from collapsekit.training.checkpoint import latest_checkpoint
    from collapsekit.training.trainer import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE

    (point_dir / TRACEBACK_FILE).unlink(missing_ok=True)
    if latest_checkpoint(point_dir / CHECKPOINT_DIR) is not None:
        return True
    for name in (METRICS_FILE, CONFIG_FILE):
        (point_dir / name).unlink(missing_ok=True)
    for name in (CHECKPOINT_DIR, "logs", "tensorboard"):
        shutil.rmtree(point_dir / name, ignore_errors=True)
    return False


def point_result(config: RunConfig, run: RunResult, data: TrainingData) -> dict[str, Any]:
    """A finished point's summary numbers (the ``RESULT_COLUMNS``): its final evaluation's headline count
    and its final metrics record."""
    from collapsekit.training.evaluation import levels_of, record_final_evaluation

    last = run.metrics[-1]
    evaluation = run.evaluation if run.evaluation is not None else record_final_evaluation(run, data)
    top_level = summary_level(levels_of(evaluation))
    top = list(top_level.kl_per_dim)
    from collapsekit.models.likelihoods import decoder_eta

    learned = decoder_eta(run.model) if config.model.learn_eta_dec else None
    predicted, theory = predicted_active(config, data, eta_dec=learned,
                                         beta_scale=float(last.get("beta_scale", 1.0)))
    interval = predicted_interval(config, predicted, theory, len(top))
    return {"n_active_predicted": predicted, "n_active_predicted_lo": None if interval is None else interval[0],
            "n_active_predicted_hi": None if interval is None else interval[1], "n_active_measured": top_level.n_active,
            "latent_size": len(top), "loss_nats": float(last["loss"]),
            "reconstruction_nats": float(last["reconstruction"]), "kl_nats": float(last["kl"]),
            "epochs_trained": int(last["epoch"]), "theory": theory, "kl_per_dim_top": top}


def record_lost(task: PointTask, failure: TaskFailure) -> dict[str, Any]:
    """Status of a point whose worker died (it could not write its own): failed, with the reason."""
    point_dir = Path(task.point_dir)
    record = read_status(point_dir)
    record |= {"point": task.point_id, "settings": task.settings, "seed": task.seed, "status": "failed",
               "error": failure.message, "finished": _now()}
    record.setdefault("attempt", 1)
    if failure.traceback:
        _write_traceback(point_dir, failure.traceback)
        record["traceback"] = TRACEBACK_FILE
    _write_status(point_dir, record)
    return record
