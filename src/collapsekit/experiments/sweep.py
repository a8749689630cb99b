"""Hyper-parameter sweeps: a grid of configurations × seeds, trained in parallel, resumable.

::

    collapsekit sweep base.yaml --grid beta=0.1,0.5,1,2 --grid eta_dec=0.5,1 --seeds 3 --out sweep-beta

Each *point* is the base configuration with one value per grid key and one seed. Points run in
worker processes on this machine (``--executor local``, the default) or as tasks on a Ray cluster
(``--executor ray --address HOST:PORT``); both run the same function, so the results agree.

Sweep directory
---------------
::

    sweep.yaml            the base configuration, the grid and the seeds (a rerun must match them)
    summary.csv           one row per point; rewritten atomically after every finished point
    active_vs_beta.png    measured active dimensions against β, with the theory's curve
    points/beta=0.5,eta_dec=1,seed=0/
        status.json       running | done | failed, attempt, host, times, the result or the error
        traceback.txt     failed points only
        config.yaml, metrics.jsonl, checkpoints/    the point's run directory (collapsekit.training)

Rerunning the same command finishes the sweep and loses nothing: points that are ``done`` are
skipped (their files are not touched); a point killed mid-training resumes from its last
checkpoint (the trainer's resume is exact, so it ends as an uninterrupted run would); a point
killed before its first checkpoint starts again; failed points are retried (the rerun says which).
A failed point never stops the others: its one-line error goes to ``status.json`` and the
summary, its traceback to ``traceback.txt``, and the sweep exits with status 1.

summary.csv columns
-------------------
point
    The point's directory name under ``points/``.
*grid keys*, seed
    The point's values, as named in the grid; ``seed`` is ``train.seed``.
status
    ``done``, ``failed``, ``running`` (a sweep killed while it ran) or ``pending``.
n_active_predicted
    The headline rule (:mod:`collapsekit.activity`: mean KL ≥ 0.01 nats) applied to the closed form's
    KL per top-level dimension, as in the diagnose report, at the run's final β (after its schedule)
    and η_dec (the learned one when η_dec is learned). Empty where the theory does not apply;
    ``theory`` says why.
n_active_measured
    The headline count of the top level on the **final weights**, on the point's data: the point's
    ``evaluation.json``, the same number its training printed and ``collapsekit diagnose`` reports. For
    a hierarchy, the top level (``z₂``), the level the theory's collapse condition is about.
latent_size
    Top-level latent size.
loss_nats, reconstruction_nats, kl_nats
    The last epoch's means, nats per example (``kl_nats``: all levels, without β).
epochs_trained
    Epochs in the final metrics record.
theory
    ``exact`` (a linear model), ``linear-theory estimate`` (MLP/conv), or why there is no prediction.
error
    Failed points: the one-line error.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import itertools
import json
import os
import re
import socket
import sys
import time
import traceback
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapsekit._io import LOCK_FILE, atomic_path, exclusive_directory
from collapsekit.activity import KL_ACTIVE_THRESHOLD, count_active, summary_level
from collapsekit.errors import CollapsekitError, ParameterError
from collapsekit.experiments.executors import (TaskFailure, available_cores, make_executor, one_line,
                                               point_accelerator)

if TYPE_CHECKING:
    from collapsekit.theory import Moments
    from collapsekit.training import RunConfig, RunResult, TrainingData

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"
POINTS_DIR = "points"
STATUS_FILE = "status.json"
TRACEBACK_FILE = "traceback.txt"
SWEEP_FORMAT = 1

#: x values of the plot's theory curve: each is one closed-form prediction (an eigendecomposition of
#: the data's residual moments: about 0.4 s for an MNIST CVAE on one core).
CURVE_POINTS = 80

#: Columns of summary.csv after the grid keys and the seed.
RESULT_COLUMNS = ("n_active_predicted", "n_active_measured", "latent_size", "loss_nats", "reconstruction_nats",
                  "kl_nats", "epochs_trained", "theory")

#: A grid: configuration key → values, in the order the points should vary.
Grid = Mapping[str, Sequence[Any]]


# -- grid keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigKey:
    """Where a grid key lands in a :class:`~collapsekit.training.RunConfig`.

    Attributes
    ----------
    dotted : str
        ``section.field`` (field by its YAML name, e.g. ``objective.lambda``).
    sub : str or None
        A key inside a mapping field: ``schedule.settings.warmup_steps`` → ``"warmup_steps"``.
    level : int or None
        One level's entry of a per-level list: ``beta2`` → 1 (β of the second level).
    as_list : bool
        The value is wrapped in a list: ``latent_dim`` → ``model.latent_dims: [value]``.
    """

    dotted: str
    sub: str | None = None
    level: int | None = None
    as_list: bool = False

    def overlaps(self, other: ConfigKey) -> bool:
        """Whether two keys would set the same value (``beta`` and ``beta2`` do; ``beta1`` and ``beta2`` not)."""
        if self.dotted != other.dotted:
            return False
        distinct = lambda a, b: a is not None and b is not None and a != b  # noqa: E731
        return not (distinct(self.level, other.level) or distinct(self.sub, other.sub))


# Short names beyond the unique field names; they mirror the flags of `collapsekit train`.
_ALIASES = {"model": ConfigKey("model.kind"), "objective": ConfigKey("objective.name"),
            "schedule": ConfigKey("schedule.name"), "optimizer": ConfigKey("optim.name"),
            "latent_dim": ConfigKey("model.latent_dims", as_list=True)}
_LEVEL_BETA = re.compile(r"beta([1-9][0-9]*)")


@functools.cache
def _config_fields() -> dict[str, dict[str, Any]]:
    """{section: {field's YAML name: annotation}} read from RunConfig itself, so new fields need no table."""
    from collapsekit.training.config import RunConfig

    fields: dict[str, dict[str, Any]] = {}
    for section, info in RunConfig.model_fields.items():
        model: Any = info.annotation              # every section is a pydantic model of its own
        fields[section] = {(f.alias or name): f.annotation for name, f in model.model_fields.items()}
    return fields


@functools.cache
def _short_names() -> dict[str, str]:
    """Field names that occur in one section only (``beta``, ``eta_dec``, ``lr``, ...) → dotted key."""
    owners: dict[str, list[str]] = {}
    for section, names in _config_fields().items():
        for name in names:
            owners.setdefault(name, []).append(f"{section}.{name}")
    return {name: dotted[0] for name, dotted in owners.items() if len(dotted) == 1}


def resolve_key(key: str) -> ConfigKey:
    """The configuration value a grid key sets.

    Accepted: a dotted key (``objective.beta``, ``schedule.settings.warmup_steps``); a field name
    that is unique across sections (``beta``, ``eta_dec``, ``lr``, ``epochs``; ``-`` may stand for
    ``_``); ``model``, ``objective``, ``schedule``, ``optimizer`` (the kind/name, as the train flags);
    ``latent_dim`` (one level's size); ``beta1``, ``beta2``, ... (one level's β of a hierarchy).
    """
    text = key.strip()
    fields = _config_fields()
    if "." in text:
        section, _, rest = text.partition(".")
        name, _, sub = rest.partition(".")
        if section not in fields or name not in fields[section]:
            raise ParameterError(f"unknown grid key {key!r}: no configuration key {section}.{name}")
        if sub and typing.get_origin(fields[section][name]) is not dict:
            raise ParameterError(f"grid key {key!r}: {section}.{name} is not a mapping")
        target = ConfigKey(f"{section}.{name}", sub=sub or None)
    else:
        short = text.replace("-", "_")
        level = _LEVEL_BETA.fullmatch(short)
        if short in _ALIASES:
            target = _ALIASES[short]
        elif level:
            target = ConfigKey("objective.beta", level=int(level.group(1)) - 1)
        elif short in _short_names():
            target = ConfigKey(_short_names()[short])
        else:
            where = [f"{s}.{short}" for s, names in fields.items() if short in names]
            hint = f"say which: {', '.join(where)}" if where else "use a configuration key such as objective.beta"
            raise ParameterError(f"unknown grid key {key!r}: {hint} (short names: beta, eta_dec, lr, latent_dim, ...)")
    if target.dotted == "train.seed":
        raise ParameterError(f"grid key {key!r}: the seed is an axis of its own; use --seeds")
    return target


# -- values ---------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A grid value from the command line: int, float, true/false, none, ``a:b`` lists of numbers, or a word."""
    value = text.strip()
    if ":" in value:
        parts = [parse_value(part) for part in value.split(":")]
        if all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
            return parts
        return value
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for number in (int, float):
        try:
            return number(value)
        except ValueError:
            pass
    return value


def format_value(value: Any) -> str:
    """The shortest text that reads back as ``value`` (the float ``1.0`` and the int ``1`` both give ``1``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    if isinstance(value, (list, tuple)):
        return ":".join(format_value(v) for v in value)
    return str(value).replace(os.sep, "_")      # never a nested directory


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``"beta=0.1,0.5,1"`` → ``("beta", [0.1, 0.5, 1])``."""
    key, eq, values = text.partition("=")
    if not eq or not key.strip():
        raise ParameterError(f"--grid {text!r}: expected KEY=V1,V2,... (e.g. beta=0.1,0.5,1)")
    parsed = [parse_value(v) for v in values.split(",") if v.strip()]
    if not parsed:
        raise ParameterError(f"--grid {text!r}: no values after '='")
    return key.strip(), parsed


def parse_grid(options: Sequence[str]) -> dict[str, list[Any]]:
    """Repeated ``--grid KEY=V1,V2`` options → a grid (keys in the order given)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, values = parse_grid_option(option)
        if key in grid:
            raise ParameterError(f"--grid {key} is given twice; put all its values in one --grid")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> int | list[int]:
    """``"3"`` → 3 seeds (0, 1, 2); ``"0,5,7"`` (or ``"7,"`` for one) → those seeds."""
    try:
        if "," not in text:
            return int(text)
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ParameterError(f"--seeds must be a count (3) or a comma-separated list of seeds (0,5,7), "
                             f"got {text!r}") from None


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """Seeds as a list: a count ``n`` gives ``0..n-1``."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ParameterError(f"--seeds must be ≥ 1, got {seeds}")
        return list(range(seeds))
    values = [int(s) for s in seeds]
    if not values or any(s < 0 for s in values) or len(set(values)) != len(values):
        raise ParameterError(f"--seeds must be distinct seeds ≥ 0, got {values}")
    return values


# -- points ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One run of a sweep: one value per grid key, and a seed."""

    settings: dict[str, Any] = field(hash=False)
    seed: int = 0

    @property
    def id(self) -> str:
        """Its directory name: ``beta=0.5,eta_dec=1,seed=0`` (deterministic, so a rerun finds it)."""
        parts = [f"{key}={format_value(value)}" for key, value in self.settings.items()]
        return ",".join([*parts, f"seed={self.seed}"])


def expand_grid(grid: Grid, seeds: int | Sequence[int]) -> list[Point]:
    """Every combination of the grid's values × every seed (the seed varies fastest).

    Raises
    ------
    ParameterError
        An unknown or repeated key, an axis without values, or two values that name the same point.
    """
    targets: list[tuple[str, ConfigKey]] = []
    for key, values in grid.items():
        target = resolve_key(key)
        for other, other_target in targets:
            if target.overlaps(other_target):
                raise ParameterError(f"grid keys {other!r} and {key!r} set the same configuration value")
        targets.append((key, target))
        tokens = [format_value(v) for v in values]
        if not tokens:
            raise ParameterError(f"grid key {key!r} has no values")
        if len(set(tokens)) != len(tokens):
            raise ParameterError(f"grid key {key!r} repeats a value: {', '.join(tokens)}")
    keys = list(grid)
    return [Point(dict(zip(keys, combination)), seed)
            for combination in itertools.product(*(list(grid[k]) for k in keys)) for seed in seed_list(seeds)]


def point_config(base: RunConfig, settings: Mapping[str, Any], seed: int) -> RunConfig:
    """The base configuration with one point's values and seed; validated (one-line ParameterError).

    Progress bars are turned off: points run in workers, and the sweep shows one bar of its own.
    """
    overrides: dict[str, Any] = {"train.seed": seed, "train.progress": False}
    levels: dict[int, Any] = {}
    current = base.model_dump(by_alias=True)
    for key, value in settings.items():
        target = resolve_key(key)
        if target.level is not None:
            levels[target.level] = value
        elif target.sub is not None:
            section, name = target.dotted.split(".")
            overrides.setdefault(target.dotted, dict(current[section][name] or {}))[target.sub] = value
        else:
            overrides[target.dotted] = [value] if target.as_list else value
    config = base.with_overrides(overrides)
    if levels:
        # A per-level β: expand the configured β to one per level first (a single β serves all levels).
        beta = config.objective.beta
        betas = list(beta) if isinstance(beta, list) else [beta]
        n_levels = len(config.model.latent_dims)
        betas = betas * n_levels if len(betas) == 1 else betas
        for level, value in sorted(levels.items()):
            if level >= len(betas):
                raise ParameterError(f"beta{level + 1}: the model has {len(betas)} latent level(s)")
            betas[level] = value
        config = config.with_overrides({"objective.beta": betas})
    return config


# -- one point, in a worker -----------------------------------------------------------------------
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
    try:
        result, resumed_from = _train_point(task, point_dir)
        record |= {"status": "done", "resumed_from": resumed_from, "result": result}
    except Exception as exc:                              # noqa: BLE001 — one point's failure, recorded
        _write_traceback(point_dir, traceback.format_exc())
        record |= {"status": "failed", "error": one_line(exc), "traceback": TRACEBACK_FILE}
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
        runs = train_batched(configs, dirs, mode=tasks[0].batch_mode)
    except Exception:                                     # noqa: BLE001 — fall back to one run per point
        return [run_point(task) for task in tasks]
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
    return {"n_active_predicted": predicted, "n_active_measured": top_level.n_active,
            "latent_size": len(top), "loss_nats": float(last["loss"]),
            "reconstruction_nats": float(last["reconstruction"]), "kl_nats": float(last["kl"]),
            "epochs_trained": int(last["epoch"]), "theory": theory, "kl_per_dim_top": top}


# -- theory ---------------------------------------------------------------------------------------
def predicted_active(config: RunConfig, data: TrainingData | Moments, *, eta_dec: float | None = None,
                     beta_scale: float = 1.0) -> tuple[int | None, str]:
    """Top-level dimensions the closed form keeps from collapse, and the label of that number.

    The setting, the moments and the prediction come from :mod:`collapsekit.diagnostics.theory_compare`
    (what ``collapsekit diagnose`` sets beside its measurement), so the two always agree.

    Parameters
    ----------
    config : RunConfig
    data : TrainingData or Moments
        The data the point trains on, or its moments already computed (a curve over many β).
    eta_dec : float, optional
        The learned η_dec, when it was learned.
    beta_scale : float
        The schedule's factor on β at the end of training.

    Returns
    -------
    (int or None, str)
        The count (None where the theory does not apply) and ``"exact"``,
        ``"linear-theory estimate"`` or ``"no prediction: <why>"``.
    """
    from collapsekit.diagnostics.theory_compare import (ESTIMATE, EXACT, TheorySetting, moments_for, predict_for,
                                                        unsupported_reason)
    from collapsekit.theory import Moments

    setting = TheorySetting.from_config(config, eta_dec=eta_dec, beta_scale=beta_scale)
    reason = unsupported_reason(setting)
    if reason is not None:
        return None, f"no prediction: {reason}"
    moments = data if isinstance(data, Moments) else moments_for(setting, data.x, data.y)
    try:
        _, top_kl = list(predict_for(setting, moments).values())[-1]
    except CollapsekitError as exc:                       # e.g. more latent dimensions than data dimensions
        return None, f"no prediction: {exc}"
    return count_active(top_kl), EXACT if setting.linear and not setting.notes else ESTIMATE


# -- the sweep directory --------------------------------------------------------------------------
def _spec(base: RunConfig, grid: Grid, seeds: Sequence[int]) -> dict[str, Any]:
    return {"format": SWEEP_FORMAT, "config": base.model_dump(by_alias=True, mode="json"),
            "grid": {key: list(values) for key, values in grid.items()}, "seeds": list(seeds)}


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """What must match for a rerun to be the same sweep (the base seed and output-only settings do not count)."""
    from collapsekit.training import RunConfig

    # Parsed, so that keys added to the configuration since the sweep began compare at their defaults.
    config = RunConfig.parse(spec["config"]).model_dump(by_alias=True, mode="json")
    for key in ("seed", "progress", "checkpoint_every", "keep_checkpoints"):
        config.get("train", {}).pop(key, None)
    return {"config": config, "grid": {k: [format_value(v) for v in vs] for k, vs in spec["grid"].items()},
            "seeds": list(spec["seeds"])}


def _first_difference(mine: Any, theirs: Any, where: str = "") -> str:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in dict.fromkeys([*mine, *theirs]):
            if mine.get(key) != theirs.get(key):
                return _first_difference(mine.get(key), theirs.get(key), f"{where}.{key}" if where else str(key))
    return f"{where}: {theirs!r} there, {mine!r} now"


def _claim_directory(out: Path, spec: dict[str, Any]) -> None:
    """Write ``sweep.yaml`` into a new sweep directory, or check that it describes this same sweep."""
    import yaml  # type: ignore[import-untyped]

    path = out / SWEEP_FILE
    if path.is_file():
        stored = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            theirs = _comparable(stored)
        except (KeyError, TypeError, AttributeError, CollapsekitError):
            raise ParameterError(f"{path}: not a sweep description; choose another --out") from None
        mine = _comparable(spec)
        if mine != theirs:
            raise ParameterError(f"{out} holds a different sweep ({_first_difference(mine, theirs)}); rerun it "
                                 "with the same configuration, grid and seeds, or choose another --out "
                                 "(nothing was changed)")
        return
    _refuse_foreign(out)
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _refuse_foreign(out: Path) -> None:
    """Refuse a directory that holds files but no sweep: a sweep never writes among someone's files."""
    if out.is_dir() and not (out / SWEEP_FILE).is_file() and any(e.name != LOCK_FILE for e in out.iterdir()):
        raise ParameterError(f"{out} is not empty and holds no {SWEEP_FILE}; choose another --out "
                             "(nothing was changed)")


def load_sweep(out_dir: str | os.PathLike[str]) -> tuple[RunConfig, dict[str, list[Any]], list[int]]:
    """The base configuration, grid and seeds of the sweep in ``out_dir`` (from its ``sweep.yaml``)."""
    import yaml  # type: ignore[import-untyped]

    from collapsekit.training import RunConfig

    path = Path(out_dir) / SWEEP_FILE
    if not path.is_file():
        raise ParameterError(f"{out_dir} is not a sweep directory (no {SWEEP_FILE})")
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return RunConfig.parse(spec["config"]), {k: list(v) for k, v in spec["grid"].items()}, list(spec["seeds"])
    except (KeyError, TypeError, AttributeError):
        raise ParameterError(f"{path}: not a sweep description") from None


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold the sweep directory's lock: two invocations must not run the same points at once.

    The kernel drops an ``flock`` when its holder dies, so a killed sweep never leaves a stale lock.
    """
    with exclusive_directory(out, f"another sweep is running in {out}; wait for it to finish"):
        yield


# -- summary --------------------------------------------------------------------------------------
def summary_rows(points: Sequence[Point], statuses: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per point, in grid order, from the points' status records."""
    rows = []
    for point in points:
        status = statuses.get(point.id, {})
        result = status.get("result") or {}
        rows.append({"point": point.id, **point.settings, "seed": point.seed,
                     "status": status.get("status", "pending"), **{c: result.get(c) for c in RESULT_COLUMNS},
                     "error": status.get("error")})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)                        # every digit: summaries compare across executors
    if isinstance(value, (bool, list, tuple)):
        return format_value(value)
    return str(value)


def write_summary(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Path:
    """Write ``summary.csv`` atomically: a kill while writing leaves the previous complete file."""
    columns = ["point", *keys, "seed", "status", *RESULT_COLUMNS, "error"]
    target = Path(path)
    with atomic_path(target) as temporary, open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows([_cell(row.get(column)) for column in columns] for row in rows)
    return target


def read_summary(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``summary.csv``: numbers as numbers, empty cells as None."""
    text_columns = {"point", "status", "theory", "error"}
    with open(path, newline="", encoding="utf-8") as stream:
        return [{key: (value if key in text_columns else parse_value(value)) if value != "" else None
                 for key, value in row.items()} for row in csv.DictReader(stream)]


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes
    ----------
    out_dir : Path
        The sweep directory.
    rows : list of dict
        The summary, one row per point (also in ``summary.csv``).
    skipped : list of str
        Points already done before this call (not run again).
    retried : list of str
        Points that had failed before and were run again.
    interrupted : list of str
        Points an earlier call left running (it was killed); run again, from their last checkpoint.
    ran : list of str
        Every point this call ran (``retried`` and ``interrupted`` included).
    plot_path : Path or None
        The plot, when one was drawn.
    batching : str
        How the points ran: ``"batched: ..."``, or why they were not batched.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    plot_path: Path | None = None
    batching: str = ""

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Rows of the points that failed."""
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def ok(self) -> bool:
        """Every point is done."""
        return all(row["status"] == "done" for row in self.rows)


# -- the sweep ------------------------------------------------------------------------------------
def run_sweep(base_config: RunConfig, grid: Grid, seeds: int | Sequence[int], out_dir: str | os.PathLike[str], *,
              executor: str = "local", workers: int | None = None, address: str | None = None,
              progress: bool = True, batched: bool = True, plot: bool = True, gpus_per_point: float | None = None,
              batch_mode: str = "exact") -> SweepResult:
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
    _refuse_foreign(out)                          # before the lock file is created in it
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        _claim_directory(out, _spec(base_config, grid, seeds))
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

        with progress_bar(len(tasks), "sweep points", quiet=not progress) as advance:
            for index, outcome in runner.run(run_points, groups):
                group = groups[index]
                records = ([_record_lost(task, outcome) for task in group] if isinstance(outcome, TaskFailure)
                           else outcome)
                for task, record in zip(group, records):
                    statuses[task.point_id] = record
                write_summary(summary, summary_rows(points, statuses), list(grid))
                advance(len(group))
        result.rows = summary_rows(points, statuses)
        with contextlib.suppress(ParameterError):    # a grid of words only has no x axis to plot against
            axis = _plot_axis(grid)
            if plot and axis is not None and any(row["status"] == "done" for row in result.rows):
                result.plot_path = plot_sweep(out, x=axis)
    return result


def _record_lost(task: PointTask, failure: TaskFailure) -> dict[str, Any]:
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


def what_ran(result: SweepResult, *, before: bool = False) -> str:
    """``ran 4 (1 failed before, retried: ...; 2 interrupted, resumed), skipped 2 already done``;
    in the future tense (``running ...``) for the plan ``before`` the points run."""
    retry, resume, run, skip = (("retrying", "resuming", "running", "skipping") if before
                                else ("retried", "resumed", "ran", "skipped"))
    details = []
    if result.retried:
        shown = ", ".join(result.retried[:5]) + (", ..." if len(result.retried) > 5 else "")
        details.append(f"{len(result.retried)} failed before, {retry}: {shown}")
    if result.interrupted:
        details.append(f"{len(result.interrupted)} interrupted, {resume} from their checkpoints")
    text = f"{run} {len(result.ran)}" + (f" ({'; '.join(details)})" if details else "")
    return text + (f", {skip} {len(result.skipped)} already done" if result.skipped else "")


def _print_plan(result: SweepResult, total: int, executor: str, workers: int | None) -> None:
    where = f"{executor} executor" + (f", {workers} workers" if workers else "")
    _print_line(f"sweep {result.out_dir}: {total} points; {what_ran(result, before=True)} ({where})")


def _print_line(text: str) -> None:
    from rich.console import Console

    Console(file=sys.stderr, highlight=False).print(text, soft_wrap=True, markup=False)


# -- plot -----------------------------------------------------------------------------------------
def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _plot_axis(grid: Grid, x: str | None = None) -> str | None:
    """The grid key to plot against: the one that sets the same value as ``x`` (default ``beta``),
    else the first numeric key; None when the grid has no numeric key."""
    wanted = resolve_key(x or "beta")
    for key, values in grid.items():
        if resolve_key(key) == wanted:
            if not _numeric(values):
                raise ParameterError(f"cannot plot against {key}: its values are not numbers")
            return key
    if x is not None:
        raise ParameterError(f"cannot plot against {x}: the grid does not vary it (grid: {', '.join(grid)})")
    return next((key for key, values in grid.items() if _numeric(values)), None)


def plot_sweep(sweep: SweepResult | str | os.PathLike[str], *, x: str | None = None,
               path: str | os.PathLike[str] | None = None) -> Path:
    """Measured active dimensions against one grid key (β by default), with the theory's curve.

    Per group of the other grid values (one colour each): every seed's point, their mean, and the
    closed form's number of non-collapsed dimensions over a fine grid of the x values (a step
    curve; η_dec as configured). Failed and unfinished points are left out. Written atomically to
    ``path`` (default ``active_vs_<x>.png`` in the sweep directory).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator, NullFormatter

    from collapsekit.theory.prediction import symbol

    out = sweep.out_dir if isinstance(sweep, SweepResult) else Path(sweep)
    base, grid, seeds = load_sweep(out)
    axis = _plot_axis(grid, x)
    if axis is None:
        raise ParameterError("nothing to plot against: the grid has no numeric key")
    rows = [row for row in read_summary(out / SUMMARY_FILE) if row["status"] == "done"]
    others = [key for key in grid if key != axis]
    values = np.asarray(grid[axis], dtype=float)
    log = bool(values.min() > 0 and values.max() / values.min() >= 10)
    fine = _fine_grid(grid[axis], log)
    x_name = symbol(axis.rsplit(".", 1)[-1].replace("-", "_"))

    fig, ax = plt.subplots(figsize=(7.5, 4.6), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    moments_cache: dict[str, Any] = {}
    top = 0
    for number, combination in enumerate(itertools.product(*(grid[k] for k in others))):
        group = dict(zip(others, combination))
        colour = colours[number % len(colours)]
        name = ", ".join(f"{symbol(k)}={format_value(v)}" for k, v in group.items())
        label = f"{name}: " if name else ""
        mine = [row for row in rows if all(format_value(row[k]) == format_value(v) for k, v in group.items())]
        if mine:
            xs = np.array([float(row[axis]) for row in mine])
            ys = np.array([float(row["n_active_measured"]) for row in mine])
            seed_rank = np.array([seeds.index(row["seed"]) for row in mine], dtype=float)
            # Seeds often agree exactly: spread them a little sideways so each stays visible.
            spread = 0.03 * (seed_rank - (len(seeds) - 1) / 2)
            ax.scatter(xs * np.exp(spread) if log else xs + spread * np.ptp(values), ys, s=18, alpha=0.5,
                       color=colour, linewidths=0, label="each seed" if number == 0 and len(seeds) > 1 else None)
            centres = sorted(set(xs))
            ax.plot(centres, [ys[xs == c].mean() for c in centres], "o-", color=colour, ms=6, lw=1,
                    label=f"{label}measured" + (f", mean of {len(seeds)} seeds" if len(seeds) > 1 else ""))
            top = max(top, int(ys.max()))
        curve, theory = _theory_curve(base, group, axis, fine, seeds[0], moments_cache)
        if curve is not None:
            ax.step(fine, curve, where="post", ls="--", lw=1.4, color=colour, label=f"{label}theory ({theory})")
            top = max(top, int(np.nanmax(curve)))
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    # Ticks at the grid's own values: those are the settings that were trained.
    ax.set_xticks(sorted(set(values.tolist())), [format_value(v) for v in sorted(set(grid[axis]))])
    ax.set_xlabel(x_name)
    ax.set_ylabel(f"active latent dimensions (KL ≥ {KL_ACTIVE_THRESHOLD:g} nats)")
    ax.set_ylim(-0.3, top + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Measured active dimensions against {x_name}, with the closed-form prediction", fontsize=10,
                 loc="left")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    target = Path(path) if path is not None else out / f"active_vs_{axis.replace('.', '_')}.png"
    with atomic_path(target) as temporary:
        fig.savefig(temporary, format="png", dpi=130)
    plt.close(fig)
    return target


def _fine_grid(values: Sequence[Any], log: bool) -> list[Any]:
    """Many x values spanning the grid's (a little beyond, so the steps at the ends show)."""
    import numpy as np

    low, high = min(values), max(values)
    if all(isinstance(v, int) for v in values):   # integer keys (latent sizes, epochs): every integer
        return list(range(int(low), int(high) + 1))
    if log:
        return [float(v) for v in np.geomspace(low / 1.5, high * 1.5, CURVE_POINTS)]
    pad = 0.05 * (high - low or 1.0)
    return [float(v) for v in np.linspace(low - pad, high + pad, CURVE_POINTS)]


def _theory_curve(base: RunConfig, group: Mapping[str, Any], axis: str, fine: Sequence[Any], seed: int,
                  cache: dict[str, Any]) -> tuple[Any, str]:
    """Predicted non-collapsed dimensions at each x of ``fine`` (NaN where a value is invalid), and its label."""
    import numpy as np

    from collapsekit.diagnostics.theory_compare import TheorySetting, moments_for
    from collapsekit.training import load_training_data

    counts, label = [], ""
    for value in fine:
        try:
            config = point_config(base, {**group, axis: value}, seed)
        except CollapsekitError:
            counts.append(np.nan)
            continue
        key = json.dumps([config.data.model_dump(mode="json"), config.train.seed, config.model.kind == "cvae"])
        if key not in cache:                      # one pass over the data per data setting, not per x
            data = load_training_data(config)
            cache[key] = moments_for(TheorySetting.from_config(config), data.x, data.y)
        count, label = predicted_active(config, cache[key])
        counts.append(np.nan if count is None else count)
    curve = np.asarray(counts, dtype=float)
    return (None, label) if np.isnan(curve).all() else (curve, label)
