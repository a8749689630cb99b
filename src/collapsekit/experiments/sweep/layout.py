"""The files of a sweep directory (see :mod:`collapsekit.experiments.sweep`)."""

from __future__ import annotations

from collapsekit._io import LOCK_FILE  # noqa: F401  (one lock file for the sweep and the trainer)

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"
POINTS_DIR = "points"
STATUS_FILE = "status.json"
TRACEBACK_FILE = "traceback.txt"
SWEEP_FORMAT = 1
#: summary.csv's schema version, in its last column ``format``. 2: ``n_active_measured`` is the headline rule on the
#: final weights and ``n_active_predicted`` the rule on the closed form's KL (issue 10); a file without the column
#: is format 1 (the last epoch's batch average, and the count of nonzero modes). 3: ``n_active_predicted_lo`` and
#: ``n_active_predicted_hi``, the interval of an estimated count (empty for an exact one); format 1 and 2 files
#: read back with them None.
SUMMARY_FORMAT = 3
