"""Runs: what ``collapsekit train`` writes to a run directory, read back and diagnosed.

This is the application layer above :mod:`collapsekit.diagnostics` (measurement) and
:mod:`collapsekit.training` (the trainer, its configs and checkpoints): diagnosing a run needs
both, so it lives here and neither of them imports it.

>>> diagnosis = diagnose_run("runs/cvae")                          # doctest: +SKIP
>>> diagnosis.report.levels[0].n_collapsed                         # doctest: +SKIP
"""

from collapsekit.runs.diagnose import RunDiagnosis, diagnose_run, load_run_checkpoint, read_history, resolve_run
from collapsekit.runs.parts import RunParts, run_parts

__all__ = ["RunDiagnosis", "RunParts", "diagnose_run", "load_run_checkpoint", "read_history", "resolve_run",
           "run_parts"]
