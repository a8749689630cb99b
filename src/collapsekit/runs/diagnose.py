"""Diagnose a training run: the model from its checkpoint, the data from its config, the theory
on the same data and hyper-parameters, the epoch history, and the explanations.

A *run* is what ``collapsekit train`` writes (``config.yaml``, ``metrics.jsonl``,
``checkpoints/epoch-NNNNNN/``); a path to one checkpoint of a run selects that epoch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from collapsekit._validation import resolve_device
from collapsekit.diagnostics.report import CollapseReport
from collapsekit.errors import DataFileNotFoundError, ParameterError

if TYPE_CHECKING:
    from collapsekit.training.checkpoint import Checkpoint


@dataclass
class RunDiagnosis:
    """A diagnosed run: the report, and what the renderers need to draw reconstructions."""

    report: CollapseReport
    model: nn.Module
    data: Any                     # collapsekit.training.TrainingData
    image_shape: tuple[int, ...] | None
    merge: Callable[..., Any] | None
    run_dir: Path
    checkpoint: Path


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """(run directory, checkpoint directory) for a run directory or one of its checkpoints.

    For a run directory the checkpoint is its newest, not yet verified: :func:`load_run_checkpoint` reads it
    and passes over it to an earlier intact one when it is corrupt."""
    from collapsekit.training.checkpoint import latest_checkpoint
    from collapsekit.training.trainer import CHECKPOINT_DIR, CONFIG_FILE
    from collapsekit.training.validation import BEST_DIR

    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"no run directory or checkpoint at {path}")
    if (path / CONFIG_FILE).is_file():
        checkpoint = latest_checkpoint(path / CHECKPOINT_DIR)
        if checkpoint is None:
            raise ParameterError(f"{path} holds no checkpoint yet: train it first (collapsekit train ... --out {path})")
        return path, checkpoint
    if path.parent.name in (CHECKPOINT_DIR, BEST_DIR) and (path.parent.parent / CONFIG_FILE).is_file():
        return path.parent.parent, path
    raise ParameterError(f"{path} is neither a run directory (with {CONFIG_FILE}) nor one of its checkpoints")


def load_run_checkpoint(path: str | Path) -> Checkpoint:
    """The verified checkpoint that ``path`` names (a run directory, or one checkpoint of it).

    A run directory gives its newest intact checkpoint: a corrupt newest one is passed over to the previous
    intact one, as ``train --resume`` does, with a :class:`~collapsekit.training.CheckpointWarning` (one line
    naming the corrupt checkpoint and the one used). A checkpoint named explicitly is that one.

    Raises
    ------
    CorruptCheckpointError
        The named checkpoint, or every checkpoint of the run, is corrupt (one line naming the newest).
    """
    from collapsekit.training.checkpoint import (CheckpointWarning, load_checkpoint, load_latest_checkpoint,
                                                 passed_over_message)
    from collapsekit.training.trainer import CHECKPOINT_DIR

    run_dir, checkpoint_dir = resolve_run(path)
    if Path(path) != run_dir:                             # one checkpoint, named: that one or nothing
        return load_checkpoint(checkpoint_dir)            # verified: a corrupt one raises, naming it
    checkpoint, passed = load_latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if checkpoint is None:                                # resolve_run found one: it vanished since
        return load_checkpoint(checkpoint_dir)
    if passed:
        warnings.warn(passed_over_message(passed, checkpoint, "diagnosing"), CheckpointWarning, stacklevel=2)
    return checkpoint


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (empty when absent)."""
    from collapsekit.training.trainer import METRICS_FILE

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def diagnose_run(path: str | Path, *, part: str | None = None, n_samples: int = 1000, batch_size: int = 1024,
                 seed: int = 0, theory: bool = True,
                 progress: Callable[[str, int, int], None] | None = None,
                 device: str | torch.device | None = None) -> RunDiagnosis:
    """Diagnose a run directory (its newest intact checkpoint, :func:`load_run_checkpoint`) or one checkpoint of it.

    Parameters
    ----------
    path : str or Path
        A run directory written by ``collapsekit train``, or ``RUN/checkpoints/epoch-NNNNNN``, or the best
        validation epoch's ``RUN/best/epoch-NNNNNN``.
    part : {"train", "test"} or None
        Evaluate on that part of the run's train/test split (same seed and fraction as training);
        ``None`` uses the data the run trained on.
    n_samples : int
        S, importance samples per example for the log-likelihood.
    theory : bool
        Set the linear theory's prediction beside the measurement where it applies.
    progress : callable, optional
        ``progress(stage, done, total)`` through the long stages (posterior pass, metrics, likelihood).
    device : str or torch.device, optional
        Where the model is loaded and measured: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; ``None`` or
        ``"auto"``: CUDA when available, else the CPU. The data stay in CPU memory and go to the
        device batch by batch.

    Returns
    -------
    RunDiagnosis
        The :class:`CollapseReport` (with ``history`` and ``explanations``) and the loaded model (on
        ``device``).
    """
    from collapsekit.data import load, quadrant_merge
    from collapsekit.diagnostics.diagnose import diagnose_model
    from collapsekit.diagnostics.theory_compare import TheorySetting, compare_with_theory, moments_for
    from collapsekit.models.likelihoods import decoder_eta
    from collapsekit.training import RunConfig, load_training_data
    from collapsekit.training.trainer import CONFIG_FILE, build_model_from_config

    device = resolve_device(device)
    run_dir, newest = resolve_run(path)
    checkpoint = load_run_checkpoint(path)                # verified; a corrupt newest one is passed over, saying so
    checkpoint_dir = checkpoint.path
    config = RunConfig.load(run_dir / CONFIG_FILE)
    trained_on = config.data.part
    if part is not None:
        config = config.with_overrides({"data.part": part})
    data = load_training_data(config)
    model = build_model_from_config(config, data)
    checkpoint.restore_model(model)
    model.to(device).eval()

    report = diagnose_model(model, data.x, data.y, n_samples=n_samples, batch_size=batch_size, seed=seed,
                            progress=progress)
    history = read_history(run_dir)
    epoch = int(checkpoint.state.get("epoch", len(history)))
    report.history = [h for h in history if h.get("epoch", 0) <= epoch]
    eta_dec = decoder_eta(model)
    report.model = {"kind": config.model.kind, "arch": config.model.arch, "latent_dims": config.model.latent_dims,
                    "likelihood": config.model.likelihood, "eta_enc": config.model.eta_enc, "eta_dec": eta_dec,
                    "beta": config.objective.beta, "objective": config.objective.name,
                    "schedule": config.schedule.name, "data": config.data.spec, "part": config.data.part,
                    "run_dir": str(run_dir), "checkpoint": str(checkpoint_dir), "epoch": epoch}
    if checkpoint_dir != newest:
        report.notes.append(f"the newest checkpoint, {newest}, is corrupt: diagnosed the previous intact one, "
                            f"{checkpoint_dir} (epoch {epoch})")
    if part is None or part == trained_on:
        report.notes.append("evaluated on the data the model was trained on"
                            + ("" if config.data.part is None else f" (the {config.data.part} part)"))

    last = report.history[-1] if report.history else {}
    setting = TheorySetting.from_config(config, eta_dec=eta_dec, beta_scale=float(last.get("beta_scale", 1.0)))
    moments = moments_for(setting, data.x, data.y) if theory else None
    if moments is not None:
        compare_with_theory(report, setting, moments)
    report.explanations = _explanations(report, setting, moments, config, last)

    base = load(config.data.spec)
    image_shape = base.image_shape
    merge = None
    if config.data.split == "quadrants" and image_shape is not None:
        merge = quadrant_merge
    elif data.x.shape[1] != (image_shape[0] * image_shape[1] if image_shape else -1):
        image_shape = None
    return RunDiagnosis(report=report, model=model, data=data, image_shape=image_shape, merge=merge,
                        run_dir=run_dir, checkpoint=checkpoint_dir)


def _explanations(report: CollapseReport, setting: Any, moments: Any, config: Any,
                  last: dict[str, Any]) -> list[dict[str, Any]]:
    """Causes and prescriptions for every level with collapsed dimensions."""
    from collapsekit.diagnostics.explain import explain_collapse

    from collapsekit.diagnostics.explain import ScheduleInfo
    from collapsekit.objectives import build_schedule

    steps = last.get("step")
    total = None if steps is None else int(steps) * config.train.epochs // max(int(last.get("epoch", 1)), 1)
    schedule = ScheduleInfo.from_schedule(build_schedule(config.schedule.name, **config.schedule.settings),
                                          total_steps=total, step=None if steps is None else int(steps))
    from collapsekit._validation import zero_beta
    from collapsekit.diagnostics.theory_compare import zero_beta_explanation

    out: list[dict[str, Any]] = []
    plain = config.objective.name == "elbo" and zero_beta(config.objective.beta)
    for level in report.levels:
        collapsed = [i for i, c in enumerate(level.collapsed) if c]
        if not collapsed:
            continue
        if plain:                     # β = 0: the collapse theory does not apply; nothing to prescribe from it
            out.append(zero_beta_explanation(level.name, config.objective.beta).to_dict())
            continue
        explanations = explain_collapse(collapsed, level.latent_dim, model_kind=setting.kind, moments=moments,
                                        hyper=setting.hyper, level=level.name, schedule=schedule,
                                        linear=setting.linear)
        out.extend(e.to_dict() for e in explanations)
    return out
