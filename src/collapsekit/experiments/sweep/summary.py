"""A sweep's summary: one row per point (``summary.csv``), and :class:`SweepResult`.

summary.csv keeps every digit (floats as ``repr``) and an empty cell for a missing value, so that it
reads back exactly (:func:`read_summary`) and compares across executors. Its last column, ``format``, is
the schema version (:data:`~collapsekit.experiments.sweep.layout.SUMMARY_FORMAT`) on every row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsekit._io import atomic_path
from collapsekit.experiments.sweep.layout import SUMMARY_FILE, SUMMARY_FORMAT
from collapsekit.experiments.sweep.points import Point
from collapsekit.experiments.values import format_value, parse_value

#: Columns of summary.csv after the grid keys and the seed.
RESULT_COLUMNS = ("n_active_predicted", "n_active_predicted_lo", "n_active_predicted_hi", "n_active_measured",
                  "latent_size", "loss_nats", "reconstruction_nats", "kl_nats", "epochs_trained", "theory")
#: Columns a summary of an earlier format lacks, read back as None.
ADDED_IN_FORMAT_3 = ("n_active_predicted_lo", "n_active_predicted_hi")


def summary_rows(points: Sequence[Point], statuses: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per point, in grid order, from the points' status records."""
    rows = []
    for point in points:
        status = statuses.get(point.id, {})
        result = status.get("result") or {}
        rows.append({"point": point.id, **point.settings, "seed": point.seed,
                     "status": status.get("status", "pending"), **{c: result.get(c) for c in RESULT_COLUMNS},
                     "error": status.get("error")})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)                        # every digit: summaries compare across executors
    if isinstance(value, (bool, list, tuple)):
        return format_value(value)
    return str(value)


def write_summary(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Path:
    """Write ``summary.csv`` atomically: a kill while writing leaves the previous complete file."""
    columns = ["point", *keys, "seed", "status", *RESULT_COLUMNS, "error"]
    target = Path(path)
    with atomic_path(target) as temporary, open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([*columns, "format"])
        writer.writerows([*(_cell(row.get(column)) for column in columns), str(SUMMARY_FORMAT)] for row in rows)
    return target


def read_summary(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``summary.csv``: numbers as numbers, empty cells as None; ``format`` is 1 for a file written
    before the column existed (see :data:`~collapsekit.experiments.sweep.layout.SUMMARY_FORMAT`), and the columns
    format 3 added (the predicted count's interval) are None in a format 1 or 2 file."""
    text_columns = {"point", "status", "theory", "error"}
    with open(path, newline="", encoding="utf-8") as stream:
        rows = [{key: (value if key in text_columns else parse_value(value)) if value != "" else None
                 for key, value in row.items()} for row in csv.DictReader(stream)]
    rows = [row if "format" in row else {**row, "format": 1} for row in rows]
    return [row if row["format"] >= 3 else _with_interval(row) for row in rows]


def _with_interval(row: dict[str, Any]) -> dict[str, Any]:
    """A format 1 or 2 row with the interval columns (None), after ``n_active_predicted`` as format 3 has them."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value
        if key == "n_active_predicted":
            out |= {column: row.get(column) for column in ADDED_IN_FORMAT_3}
    return out


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes
    ----------
    out_dir : Path
        The sweep directory.
    rows : list of dict
        The summary, one row per point (also in ``summary.csv``).
    skipped : list of str
        Points already done before this call (not run again).
    retried : list of str
        Points that had failed before and were run again.
    interrupted : list of str
        Points an earlier call left running (it was killed); run again, from their last checkpoint.
    ran : list of str
        Every point this call ran (``retried`` and ``interrupted`` included).
    plot_path : Path or None
        The plot, when one was drawn.
    batching : str
        How the points ran: ``"batched: ..."``, or why they were not batched.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    plot_path: Path | None = None
    batching: str = ""

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Rows of the points that failed."""
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def ok(self) -> bool:
        """Every point is done."""
        return all(row["status"] == "done" for row in self.rows)


def what_ran(result: SweepResult, *, before: bool = False) -> str:
    """``ran 4 (1 failed before, retried: ...; 2 interrupted, resumed), skipped 2 already done``;
    in the future tense (``running ...``) for the plan ``before`` the points run."""
    retry, resume, run, skip = (("retrying", "resuming", "running", "skipping") if before
                                else ("retried", "resumed", "ran", "skipped"))
    details = []
    if result.retried:
        shown = ", ".join(result.retried[:5]) + (", ..." if len(result.retried) > 5 else "")
        details.append(f"{len(result.retried)} failed before, {retry}: {shown}")
    if result.interrupted:
        details.append(f"{len(result.interrupted)} interrupted, {resume} from their checkpoints")
    text = f"{run} {len(result.ran)}" + (f" ({'; '.join(details)})" if details else "")
    return text + (f", {skip} {len(result.skipped)} already done" if result.skipped else "")
