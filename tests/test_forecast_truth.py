"""The forecast benchmark's ground truth regenerates: a small subset of bench/forecast/results/truth.jsonl,
retrained by the benchmark's own command (bench/forecast/run_truth.py's ``run_one``), gives the recorded rows.

The subset is three cheap configurations whose recorded KLs all sit at least 1.3× away from the 0.01-nat activity
threshold (so that rounding across machines cannot flip a count): a partial collapse (7 of 8 on a Gaussian of known
spectrum), a full collapse (a bundled mnist10k digit) and an all-active run. The whole grid takes about 20
CPU-minutes (docs/forecast.md §1); these three take a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FORECAST = ROOT / "bench" / "forecast"
SUBSET = [("1a33586938", 0), ("3e50c1db0b", 0), ("2ab23322a3", 1)]


def _run_truth(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("forecast_run_truth", FORECAST / "run_truth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RUNS = tmp_path / "runs"          # its scratch run directories, out of the repository
    return module


@pytest.mark.parametrize("cid, seed", SUBSET)
def test_a_recorded_ground_truth_row_is_what_its_command_trains(tmp_path, cid, seed):
    grid = {e["id"]: e for e in json.loads((FORECAST / "grid.json").read_text(encoding="utf-8"))}
    recorded = next(row for row in map(json.loads, (FORECAST / "results" / "truth.jsonl").open(encoding="utf-8"))
                    if row["id"] == cid and row["seed"] == seed)
    kl = np.asarray(recorded["kl_sorted"])
    assert np.all(np.abs(np.log10(np.maximum(kl, 1e-12) / 0.01)) >= np.log10(1.3))   # the subset's premise
    row = _run_truth(tmp_path).run_one(grid[cid], seed)
    assert row["status"] == "ok"
    assert row["n_active"] == recorded["n_active"]
    np.testing.assert_allclose(row["kl_sorted"], recorded["kl_sorted"], rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(row["trajectory"], recorded["trajectory"], rtol=1e-3, atol=1e-7)
