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
n_active_predicted_lo, n_active_predicted_hi
    Where the closed form only estimates the count (a nonlinear model, ``theory`` = ``linear-theory
    estimate``): its interval, the count ± the post-hoc closed form's split-conformal half-width calibrated on
    the benchmark (docs/forecast.md), as the diagnose reports state it. Empty for an exact prediction. Format 3;
    :func:`read_summary` gives None for them in a format 1 or 2 file.
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

Modules
-------
One job each: :mod:`.grid` (grid keys, ``--grid`` options, seeds), :mod:`.points` (a point and its
configuration), :mod:`.worker` (one point trained in a worker, its ``status.json``), :mod:`.theory`
(the closed form's count and curves), :mod:`.directory` (``sweep.yaml``), :mod:`.lock` (the directory's
lock), :mod:`.summary` (``summary.csv``, :class:`SweepResult`), :mod:`.plot` (the figure's data; the
drawing is :mod:`collapsekit.viz.sweep`), :mod:`.run` (:func:`run_sweep`). The value parser is
:mod:`collapsekit.experiments.values`. Every public name is importable from this package.
"""

from __future__ import annotations

from collapsekit.experiments.sweep.directory import load_sweep
from collapsekit.experiments.sweep.grid import (ConfigKey, Grid, integer_key, parse_grid, parse_grid_option,
                                                parse_seeds, resolve_key, seed_list)
from collapsekit.experiments.sweep.layout import (LOCK_FILE, POINTS_DIR, STATUS_FILE, SUMMARY_FILE, SUMMARY_FORMAT,
                                                  SWEEP_FILE, SWEEP_FORMAT, TRACEBACK_FILE)
from collapsekit.experiments.sweep.plot import plot_sweep
from collapsekit.experiments.sweep.points import Point, expand_grid, point_config
from collapsekit.experiments.sweep.run import run_sweep
from collapsekit.experiments.sweep.summary import (RESULT_COLUMNS, SweepResult, read_summary, summary_rows, what_ran,
                                                   write_summary)
from collapsekit.experiments.sweep.theory import (CURVE_POINTS, estimate_accuracies, estimate_accuracy, fine_values,
                                                 predicted_active, predicted_cell, predicted_interval, theory_curve)
from collapsekit.experiments.sweep.worker import (PointTask, batch_groups, point_result, read_status, run_point,
                                                  run_points)
from collapsekit.experiments.values import format_value, parse_value

__all__ = ["CURVE_POINTS", "LOCK_FILE", "POINTS_DIR", "RESULT_COLUMNS", "STATUS_FILE", "SUMMARY_FILE", "SWEEP_FILE",
           "SUMMARY_FORMAT", "SWEEP_FORMAT", "TRACEBACK_FILE", "ConfigKey", "Grid", "Point", "PointTask", "SweepResult", "batch_groups",
           "estimate_accuracies", "estimate_accuracy", "expand_grid", "fine_values", "format_value", "integer_key", "load_sweep", "parse_grid",
           "parse_grid_option", "parse_seeds", "parse_value", "plot_sweep", "point_config", "point_result",
           "predicted_active", "predicted_cell", "predicted_interval", "read_status", "read_summary", "resolve_key", "run_point",
           "run_points", "run_sweep",
           "seed_list", "summary_rows", "theory_curve", "what_ran", "write_summary"]
