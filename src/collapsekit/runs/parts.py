"""A run directory's parts as the doctor takes them: the trained model, its data, its loss, its optimiser and its
schedule (what ``collapsekit doctor RUN_DIR`` examines)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from collapsekit._validation import resolve_device
from collapsekit.runs.diagnose import load_run_checkpoint, resolve_run


@dataclass
class RunParts:
    """What :func:`collapsekit.checkup.doctor` takes, read from a run directory.

    Attributes
    ----------
    model : nn.Module
        The checkpoint's model, on ``device``.
    data : Tensor
        The encoder inputs the run trained on (x; ``[x | y]`` for a CVAE), on the CPU.
    loss_fn : callable
        ``loss_fn(model, batch)``: the run's objective at the schedule's final value.
    optimizer : torch.optim.Optimizer
        The run's optimiser with the checkpoint's state.
    beta : float or None
        The configured β (one level), the β the run meant.
    schedule : Schedule
    total_steps : int
        Optimiser steps of the whole run.
    batch_size : int
        The run's batch size.
    """

    model: Any
    data: Tensor
    loss_fn: Any
    optimizer: torch.optim.Optimizer
    beta: float | None
    schedule: Any
    total_steps: int
    batch_size: int


def run_parts(path: str | Path, *, device: str | torch.device | None = None) -> RunParts:
    """Load a run directory (its newest intact checkpoint, as :func:`load_run_checkpoint` chooses) or one
    checkpoint of it for the doctor."""
    from collapsekit.training import RunConfig, load_training_data
    from collapsekit.training.builders import build_objective_from_config, build_optimizer
    from collapsekit.training.trainer import CONFIG_FILE, batch_bounds, build_model_from_config

    run_dir, _ = resolve_run(path)
    config = RunConfig.load(run_dir / CONFIG_FILE)
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    checkpoint = load_run_checkpoint(path)
    checkpoint.restore_model(model)
    model.to(resolve_device(device))
    optimizer = build_optimizer(config, list(model.parameters()))
    checkpoint.restore_optimizer(optimizer)
    objective, schedule = build_objective_from_config(config)
    per_epoch = len(batch_bounds(data.x.shape[0], config.train.batch_size))
    total = per_epoch * config.train.epochs
    final = {schedule.controls: schedule.value(total)}
    conditional = data.y is not None
    x = torch.cat([data.x, data.y.to(data.x.dtype)], dim=1) if conditional else data.x
    x_dim = data.x.shape[1]

    def loss_fn(model: Any, batch: Tensor) -> Tensor:
        batch = batch.to(next(model.parameters()).device)
        output = model(batch[:, :x_dim], batch[:, x_dim:]) if conditional else model(batch)
        return objective(output, **final).loss

    beta = config.objective.beta
    if isinstance(beta, list):
        beta = beta[0] if len(beta) == 1 else None
    return RunParts(model=model, data=x, loss_fn=loss_fn, optimizer=optimizer,
                    beta=None if beta is None else float(beta), schedule=schedule, total_steps=total,
                    batch_size=config.train.batch_size)
