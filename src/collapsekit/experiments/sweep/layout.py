"""The files of a sweep directory (see :mod:`collapsekit.experiments.sweep`)."""

from __future__ import annotations

from collapsekit._io import LOCK_FILE  # noqa: F401  (one lock file for the sweep and the trainer)

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"
POINTS_DIR = "points"
STATUS_FILE = "status.json"
TRACEBACK_FILE = "traceback.txt"
SWEEP_FORMAT = 1
