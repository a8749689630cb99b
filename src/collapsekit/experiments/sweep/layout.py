"""The files of a sweep directory (see :mod:`collapsekit.experiments.sweep`)."""

from __future__ import annotations

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"
POINTS_DIR = "points"
STATUS_FILE = "status.json"
TRACEBACK_FILE = "traceback.txt"
LOCK_FILE = ".lock"
SWEEP_FORMAT = 1
