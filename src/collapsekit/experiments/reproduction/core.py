"""What every preset shares, by job (this module re-exports them):

- :mod:`.context`: :class:`Context` (the scale, the data, the output directory and the budgets of one
  preset run), :func:`run_config`, :func:`train_section`, the β-scaling notes;
- :mod:`.runs`: :func:`train_grid` (a grid of configurations trained through
  :func:`~collapsekit.experiments.sweep.run_sweep`, batched where it can, resumable), :class:`TrainedRun`,
  :func:`measure` (the diagnostics of one trained run: KL per dimension, measured active dimensions,
  importance-sampled NLL, Burda active units);
- :mod:`.closed_form`: :func:`closed_form_curve` (the closed form's count of active dimensions over a fine
  grid, from one spectrum: the sweep's curve), :func:`well_separated`;
- :mod:`.verdicts`: :class:`Verdict` and :func:`trend`: the paper's qualitative claim judged from measured numbers;
- :mod:`.outputs`: :class:`PresetResult` and :func:`write_outputs`: ``table.csv``, ``table.md``, ``result.json``.
"""

from __future__ import annotations

from collapsekit.experiments.reproduction.closed_form import (CURVE_POINTS, QUICK_MARGIN, closed_form_curve,
                                                              spectrum_moments, well_separated)
from collapsekit.experiments.reproduction.context import (HALVED_NOTE, PAPER_SAMPLES, QUICK_EVAL_EXAMPLES,
                                                          QUICK_MNIST, QUICK_SAMPLES, TRUE_BETA_NOTE, Context,
                                                          run_config, train_section)
from collapsekit.experiments.reproduction.outputs import (MEASURE_COLUMNS, Column, PresetResult, for_preset,
                                                          markdown_body, markdown_table, write_outputs)
from collapsekit.experiments.reproduction.runs import TrainedRun, load_model, measure, train_grid, train_one
from collapsekit.experiments.reproduction.verdicts import Verdict, arrow, combine, trend, trend_claim

__all__ = ["CURVE_POINTS", "HALVED_NOTE", "MEASURE_COLUMNS", "PAPER_SAMPLES", "QUICK_EVAL_EXAMPLES", "QUICK_MARGIN",
           "QUICK_MNIST", "QUICK_SAMPLES", "TRUE_BETA_NOTE", "Column", "Context", "PresetResult", "TrainedRun",
           "Verdict", "arrow", "closed_form_curve", "combine", "for_preset", "load_model", "markdown_body",
           "markdown_table", "measure", "run_config", "spectrum_moments", "train_grid", "train_one", "train_section",
           "trend", "trend_claim", "well_separated", "write_outputs"]
