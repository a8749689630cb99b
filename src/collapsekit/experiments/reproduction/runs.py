"""Training a preset's grid (through the sweep machinery) and measuring each trained run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from collapsekit.errors import CollapsekitError
from collapsekit.experiments.reproduction.context import Context
from collapsekit.experiments.sweep.layout import POINTS_DIR, TRACEBACK_FILE

if TYPE_CHECKING:
    from torch import nn

    from collapsekit.training import RunConfig, TrainingData


@dataclass
class TrainedRun:
    """One trained configuration of a grid (a sweep point with its run directory and summary row).

    Attributes
    ----------
    label : str
        The grid it belongs to (its directory under ``out_dir/runs``).
    settings : dict
        Its grid values.
    config : RunConfig
        Its resolved configuration.
    run_dir : Path
        Its run directory (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``).
    row : dict
        Its row of the sweep's ``summary.csv`` (``n_active_predicted``, ``n_active_predicted_lo``/``_hi``,
        ``theory``, ``loss_nats``, ...).
    """

    label: str
    settings: dict[str, Any]
    config: RunConfig
    run_dir: Path
    row: dict[str, Any]


def train_grid(ctx: Context, label: str, base: RunConfig, grid: Mapping[str, Sequence[Any]],
               seed: int) -> list[TrainedRun]:
    """Train ``grid`` (one seed) into ``out_dir/runs/label``; a rerun skips what is done.

    Several points train through :func:`~collapsekit.experiments.sweep.run_sweep` (worker
    processes, batched where it can). A grid of one point trains here, in this process, with
    :class:`~collapsekit.training.Trainer` (see :func:`train_one`).

    Raises
    ------
    CollapsekitError
        When a run failed (the sweep's one-line error; rerunning retries it).
    """
    from collapsekit.experiments.sweep import expand_grid, point_config, run_sweep
    from collapsekit.training import RunConfig
    from collapsekit.training.trainer import CONFIG_FILE

    out = ctx.out_dir / "runs" / label
    single = expand_grid(grid, [seed])
    if len(single) == 1:
        return [train_one(ctx, label, point_config(base, single[0].settings, seed), settings=single[0].settings)]
    ctx.runs_planned(len(single))
    counted = {"n": 0}

    def on_point(done: int, total: int) -> None:
        finished = len(single) - total + done             # skipped by a rerun (done before) and done now
        ctx.runs_trained(finished - counted["n"])
        counted["n"] = finished

    # The presets draw their own figure from one spectrum (closed_form_curve), not the sweep's. A bar of the
    # sweep's own would clash with the preset's (one live display at a time).
    result = run_sweep(base, grid, [seed], out, workers=ctx.workers, progress=ctx.progress and ctx.stage is None,
                       plot=False, on_point=on_point)
    if result.failed:
        first = result.failed[0]
        raise CollapsekitError(f"{ctx.preset.name}: {len(result.failed)} training run(s) failed, first "
                               f"{label}/{first['point']}: {first['error']} (traceback: "
                               f"{out / POINTS_DIR / first['point'] / TRACEBACK_FILE}; rerun to retry)")
    points = []
    for row in result.rows:
        run_dir = out / POINTS_DIR / row["point"]
        points.append(TrainedRun(label=label, settings={key: row[key] for key in grid},
                            config=RunConfig.load(run_dir / CONFIG_FILE), run_dir=run_dir, row=row))
    return points


def train_one(ctx: Context, label: str, config: RunConfig, *, settings: Mapping[str, Any] | None = None) -> TrainedRun:
    """Train one configuration into ``out_dir/runs/label`` in this process; a rerun resumes it
    (from its last checkpoint, or not at all when it finished).

    A sweep would run a lone point in a worker process that takes every core, and a tiny model's
    steps on several threads of a busy machine are many times slower than on one.
    """
    from collapsekit.experiments.sweep import predicted_active, predicted_interval
    from collapsekit.training import Trainer

    run_dir = ctx.out_dir / "runs" / label
    config = config.with_overrides({"train.progress": False})
    data = ctx.training_data(config)
    ctx.runs_planned(1)
    result = Trainer(config, run_dir, resume=True, data=data).fit()
    ctx.runs_trained(1)
    predicted, theory = predicted_active(config, data)
    # the sweep summary's row (its worker's point_result), so that measure() reads both paths alike
    interval = predicted_interval(config, predicted, theory, int(config.model.latent_dims[-1]))
    row = {"n_active_predicted": predicted, "n_active_predicted_lo": None if interval is None else interval[0],
           "n_active_predicted_hi": None if interval is None else interval[1], "theory": theory,
           "loss_nats": float(result.metrics[-1]["loss"])}
    return TrainedRun(label=label, settings=dict(settings or {}), config=config, run_dir=run_dir, row=row)


def load_model(config: RunConfig, run_dir: Path, data: TrainingData) -> nn.Module:
    """The trained model of a run directory (its latest checkpoint), in eval mode, on the CPU."""
    from collapsekit.training.checkpoint import latest_checkpoint, load_checkpoint
    from collapsekit.training.trainer import CHECKPOINT_DIR, build_model_from_config

    checkpoint = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if checkpoint is None:
        raise CollapsekitError(f"{run_dir} holds no checkpoint: its training did not finish; rerun the preset")
    model = build_model_from_config(config, data)
    load_checkpoint(checkpoint).restore_model(model)
    return model.eval()


def measure(ctx: Context, point: TrainedRun, *, max_examples: int | None = None) -> dict[str, Any]:
    """The diagnostics of one trained run, at its top latent level (z, or z₂ of a hierarchy).

    Returns
    -------
    dict
        ``n_active_measured`` (the headline count, :mod:`collapsekit.activity`: dimensions with mean KL
        ≥ 0.01 nats on the final weights and ``evaluated_on``), ``kl_nats`` (their summed KL),
        ``kl_per_dim`` (descending), ``nll_nats`` (importance-sampled −log p, S =
        ``ctx.importance_samples``), ``active_units`` (Burda et al., Var_x E[z_j] > 0.01),
        ``latent_size``, ``kl_levels_nats`` (KL of every level, bottom to top), ``evaluated_on``,
        and from the sweep: ``n_active_predicted`` with ``n_active_predicted_lo``/``_hi`` (its interval where
        it is an estimate), ``theory``, ``loss_nats`` (last epoch); and ``theory_accuracy``, the benchmark's
        measured accuracy of an estimate for the run's regime (None for an exact one).
    """
    from collapsekit.diagnostics import diagnose_model
    from collapsekit.experiments.sweep import estimate_accuracy

    data, where = ctx.eval_data(point.config, max_examples)
    model = load_model(point.config, point.run_dir, data)
    # Few bootstrap resamples: the mutual information is not reported here. On the training device (the
    # NLL is S decoder passes per example); the data go there batch by batch.
    report = diagnose_model(model, data.x, data.y, n_samples=ctx.importance_samples, seed=0, mi_bootstrap=10,
                            mi_per_dim_queries=200, device=ctx.accelerator, progress=ctx.measuring)
    ctx.run_measured()
    top = report.levels[-1]
    kl = np.asarray(top.kl_per_dim, dtype=float)
    theory = point.row.get("theory")
    return {"n_active_predicted": point.row.get("n_active_predicted"),
            "n_active_predicted_lo": point.row.get("n_active_predicted_lo"),
            "n_active_predicted_hi": point.row.get("n_active_predicted_hi"), "theory": theory,
            "theory_accuracy": estimate_accuracy(point.config, theory),
            "n_active_measured": top.n_active, "latent_size": int(kl.size),
            "kl_nats": float(kl.sum()), "kl_per_dim": [float(v) for v in np.sort(kl)[::-1]],
            "nll_nats": -float(report.log_likelihood) if report.log_likelihood is not None else None,
            "active_units": int(top.active_units), "kl_levels_nats": [float(level.rate) for level in report.levels],
            "loss_nats": point.row.get("loss_nats"), "evaluated_on": where}

