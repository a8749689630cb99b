"""The early-training forecast: train the first few percent of the run, extrapolate each dimension's KL.

The trajectory is the per-epoch mean KL of each dimension of the summary level (``kl_per_dim`` of the run's
``metrics.jsonl``). A dimension whose KL is falling is on its way to collapse: its log KL is extrapolated
linearly to the end of the run at ``gamma`` times its recent slope (``gamma`` < 1: collapse slows down as the
KL nears zero); a rising or flat one keeps its last value. Where the closed form applies, the forecast KL of
each rank is the geometric blend ``KL_early^w · KL_closed^(1−w)`` with the base closed form's (``closed_form`` or
``adjusted``, whichever the tuning split chose: :func:`base`). The interval is split-conformal: the count ± the
half-width calibrated on the benchmark's tuning configurations where a prefix existed
(:func:`~collapsekit.diagnostics.forecast_kernel.early_interval`); an explicit ``width`` c gives the older interval,
the dimensions whose forecast KL clears the threshold divided / multiplied by c. The constants are tuned on the
benchmark's tuning split (docs/forecast.md).

A prefix is the run's own beginning only when nothing in the run depends on its length: a constant learning
rate, and a schedule whose warm-up ends inside the prefix (a cyclical schedule never does). Otherwise
:func:`early` falls back to the base closed form at cost 0 and says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from collapsekit.activity import count_active
from collapsekit.diagnostics.forecast_accuracy import TUNED
from collapsekit.diagnostics.forecast_intervals import regime_of
from collapsekit.diagnostics.forecast_kernel import (EARLY_DEFAULTS, blend, early_interval, extrapolate,
                                                      free_bits_floor, interval_counts)
from collapsekit.errors import ParameterError
from collapsekit.forecast.closed_form import adjusted, closed_form, total_steps
from collapsekit.forecast.result import Forecast

__all__ = ["BASE", "DEFAULTS", "Prefixes", "base", "early", "extrapolate", "prefix_epochs", "prefix_problem",
           "train_prefix", "train_prefixes"]

#: Constants tuned on the benchmark's tuning split: :data:`collapsekit.diagnostics.forecast_kernel.EARLY_DEFAULTS`
#: (their home, shared with the collapse monitor's forecast during training).
DEFAULTS = EARLY_DEFAULTS
#: The cost-0 method the early forecast blends with and falls back to (tuned likewise): ``closed_form`` or
#: ``adjusted``.
BASE: str = TUNED["early_only"]["base"]


def prefix_epochs(config: Any, budget: float) -> int:
    """Whole epochs a budget (fraction of the run's optimiser steps) buys: ⌊budget · epochs⌋."""
    if not 0 <= budget <= 1:
        raise ParameterError(f"--budget must be a fraction of the run between 0 and 1, got {budget:g}")
    return int(math.floor(budget * config.train.epochs + 1e-9))


def prefix_problem(config: Any, epochs: int, n: int) -> str | None:
    """Why a prefix of ``epochs`` epochs is not the run's own beginning (None when it is)."""
    if epochs < 1:
        return (f"the budget buys no whole epoch of the {config.train.epochs}-epoch run")
    if epochs >= config.train.epochs:
        return None
    if config.optim.lr_schedule != "constant":
        return "a cosine learning rate depends on the run's length: a shorter run is not its prefix"
    name, settings = config.schedule.name, config.schedule.settings
    per_epoch = total_steps(config, n) // config.train.epochs
    if name == "cyclical":
        return "a cyclical schedule spans the whole run: a prefix cannot be trained on its own"
    if name in ("linear", "sigmoid") and int(settings.get("warmup_steps", 0)) >= per_epoch * epochs:
        return (f"the β warm-up ({settings.get('warmup_steps')} steps) does not end within the prefix "
                f"({per_epoch * epochs} steps)")
    if name == "capacity":
        return "a capacity schedule targets a KL, not a β"
    return None


def base(config: Any, data: Any) -> Forecast:
    """The cost-0 forecast :func:`early` builds on: the closed form :data:`BASE` names, with its tuned constants."""
    return adjusted(config, data) if BASE == "adjusted" else closed_form(config, data)


def early(config: Any, data: Any, *, trajectory: Any = None, budget: float = 0.1, run_dir: str | Path | None = None,
          gamma: float | None = None, weight: float | None = None, width: float | None = None,
          closed: Forecast | None = None) -> Forecast:
    """The early-training forecast at a budget (fraction of the run's optimiser steps).

    Parameters
    ----------
    config : RunConfig
    data : TrainingData
        The rows the run trains on.
    trajectory : array-like, optional
        Per-epoch KL per dimension of the summary level, at least the prefix's epochs (the benchmark passes the
        full run's; only the first :func:`prefix_epochs` are read). Without it the prefix is trained into
        ``run_dir`` (:func:`train_prefix`).
    budget : float
        Largest fraction of the run's steps to spend.
    run_dir : path, optional
        Where to train the prefix (``collapsekit train --out RUN --resume`` continues it).
    gamma, weight : float, optional
        The constants (default :data:`DEFAULTS`).
    width : float, optional
        Interval factor c ≥ 1: the interval is the dimensions whose KL clears 0.01·c and 0.01/c nats. Default: the
        split-conformal interval (calibrated for the default constants).
    closed : Forecast, optional
        The base closed form (:func:`base`), when already computed.
    """
    gamma = DEFAULTS["gamma"] if gamma is None else gamma
    weight = DEFAULTS["weight"] if weight is None else weight
    closed = base(config, data) if closed is None else closed
    k = prefix_epochs(config, budget)
    problem = prefix_problem(config, k, int(data.x.shape[0]) if hasattr(data, "x") else len(data[0]))
    if problem is not None:
        closed.notes.append(f"no early-training forecast: {problem}; the {closed.method.replace('_', ' ')} stands")
        return closed
    if trajectory is None:
        if run_dir is None:
            raise ParameterError("the early-training forecast trains a prefix of the run: give a run directory")
        trajectory = train_prefix(config, k, run_dir)
    prefix = np.asarray(trajectory, float)[:k]
    if prefix.shape[0] < k:
        raise ParameterError(f"the trajectory has {prefix.shape[0]} epochs; the prefix needs {k}")
    ending = np.sort(extrapolate(prefix, config.train.epochs, gamma=gamma))[::-1]
    blended = free_bits_floor(blend(ending, closed.kl_per_rank, weight), config.objective.free_bits)
    n = count_active(blended)
    if width is None:
        lo, hi = early_interval(n, blended.size, regime_of(config))
    else:
        if not width >= 1:
            raise ParameterError(f"the interval factor must be ≥ 1, got {width:g}")
        lo, hi = interval_counts(blended, width)
    return Forecast.from_kl(blended, interval=(min(lo, n), max(hi, n)), method="early",
                            cost_fraction=k / config.train.epochs,
                            notes=[f"trained {k} of {config.train.epochs} epochs"])


def train_prefix(config: Any, epochs: int, run_dir: str | Path) -> list[list[float]]:
    """Train the first ``epochs`` epochs of the run into ``run_dir`` (same seed and configuration, fewer epochs:
    ``collapsekit train --out RUN --resume --epochs N`` continues it) and return its KL trajectory. A run
    directory that already holds at least that prefix of the same configuration is read, not retrained."""
    return train_prefixes([config], epochs, [run_dir]).trajectories[0]


@dataclass
class Prefixes:
    """What :func:`train_prefixes` returns: each run's KL trajectory and what this call spent on them."""

    #: Per run: the prefix's per-epoch KL per dimension of the summary level.
    trajectories: list[list[list[float]]]
    #: Runs this call trained or extended (the others were read from their directories).
    trained: int
    #: Training programs this call ran: 1 for the new runs trained as one batched program, plus one per run
    #: trained on its own (a run extended with ``--resume``, or every new run where they cannot be batched).
    programs: int
    #: Why the new runs were trained one after another (:func:`~collapsekit.training.batched.can_batch`'s reason);
    #: None when they were batched, or when there were fewer than two.
    unbatched: str | None = None


def train_prefixes(configs: Sequence[Any], epochs: int, run_dirs: Sequence[str | Path], *,
                   data: Any = None) -> Prefixes:
    """Train the first ``epochs`` epochs of several runs, each into its run directory, and read their trajectories.

    Parameters
    ----------
    configs : sequence of RunConfig
        The full runs (each prefix is its configuration with ``train.epochs = epochs``, so ``collapsekit train
        --out DIR --resume --epochs N`` continues it).
    epochs : int
        The prefix's epochs.
    run_dirs : sequence of path
        One directory per run. One that holds a prefix of the same configuration is read (and extended with
        ``--resume`` where it is shorter); a new one is trained.
    data : TrainingData, optional
        The runs' rows, when already loaded (for the batched program).

    Returns
    -------
    Prefixes
        The new runs are trained as one batched program (:func:`~collapsekit.training.batched.train_batched`,
        bit for bit the separate runs) where there are at least two and
        :func:`~collapsekit.training.batched.can_batch` accepts them; otherwise one after another.

    Raises
    ------
    ParameterError
        A directory holds another run (a one-line list of the settings that differ).
    """
    from collapsekit.training.batched import can_batch, train_batched
    from collapsekit.training.trainer import train

    prefixes = [config.with_overrides({"train.epochs": epochs}) for config in configs]
    dirs = [Path(d) for d in run_dirs]
    done = [_recorded_epochs(prefix, run_dir) for prefix, run_dir in zip(prefixes, dirs)]
    new = [i for i, n in enumerate(done) if n is None]
    short = [i for i, n in enumerate(done) if n is not None and n < epochs]
    for i in short:
        train(prefixes[i], dirs[i], resume=True)
    verdict = can_batch([prefixes[i] for i in new]) if len(new) > 1 else None
    if verdict is True:
        train_batched([prefixes[i] for i in new], [dirs[i] for i in new], data=data)
    else:
        for i in new:
            train(prefixes[i], dirs[i])
    batched = verdict is True
    return Prefixes(trajectories=[_trajectory(run_dir)[:epochs] for run_dir in dirs], trained=len(new) + len(short),
                    programs=len(short) + (1 if batched else len(new)),
                    unbatched=None if verdict is None or batched else str(verdict))


def _trajectory(run_dir: Path) -> list[list[float]]:
    """Per-epoch KL per dimension of the summary level, from the run's ``metrics.jsonl``."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["kl_per_dim"][-1] for line in lines if line.strip()]


def _recorded_epochs(prefix: Any, run_dir: Path) -> int | None:
    """Epochs ``run_dir`` holds of the run ``prefix`` describes (None: no run there yet); a one-line
    :class:`ParameterError` where it holds another run."""
    from collapsekit.training.config import RunConfig
    from collapsekit.training.resume import config_differences

    if not ((run_dir / "metrics.jsonl").is_file() and (run_dir / "config.yaml").is_file()):
        return None
    saved = RunConfig.load(run_dir / "config.yaml")
    differences = config_differences(saved, prefix, ignore=("train.epochs", "train.progress", "train.loggers"))
    if differences:
        raise ParameterError(f"{run_dir} holds another run: {'; '.join(differences)}")
    return len(_trajectory(run_dir))
