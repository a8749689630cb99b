"""Ground truth of the forecast benchmark: train every configuration of grid.json for each seed, resumably.

    nice -n 10 python bench/forecast/run_truth.py [--seeds 0,1] [--limit N]     # from the repository root

Each finished (configuration, seed) appends one line to ``results/truth.jsonl``: the headline count and the
sorted per-dimension KL of the summary level from the run's ``evaluation.json``, every level's KL, the
per-epoch KL per dimension of the summary level from ``metrics.jsonl`` (the trajectory the early-training
forecast reads a prefix of), the schedule's factor per epoch, the learned η_dec, steps and seconds. The run
directory is then deleted. Killed and restarted, it skips the pairs already recorded and retrains the one it was
in; ``results/truth.csv`` (one row per pair) is rewritten from the JSONL after each run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
TRUTH = RESULTS / "truth.jsonl"
CSV = RESULTS / "truth.csv"
RUNS = HERE / "runs"


def done() -> set[tuple[str, int]]:
    """The (id, seed) pairs already recorded."""
    if not TRUTH.is_file():
        return set()
    pairs = set()
    for line in TRUTH.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:        # a line cut by a kill: that pair runs again
            continue
        pairs.add((row["id"], int(row["seed"])))
    return pairs


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a results file the benchmark appends to, one JSON object a line (none where the file is
    missing; a line cut by a kill is skipped: the resumable runners rerun what it held)."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def read_rows() -> list[dict[str, Any]]:
    """Every recorded ground-truth row (:func:`read_jsonl` of results/truth.jsonl)."""
    return read_jsonl(TRUTH)


def run_one(entry: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one (configuration, seed) and return its row."""
    import torch

    from collapsekit.models.likelihoods import decoder_eta
    from collapsekit.training.config import RunConfig
    from collapsekit.training.trainer import train

    values = json.loads(json.dumps(entry["config"]))
    values["train"]["seed"] = seed
    config = RunConfig.parse(values)
    run_dir = RUNS / f"{entry['id']}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    torch.set_num_threads(1)
    started = time.perf_counter()
    row: dict[str, Any] = {"id": entry["id"], "seed": seed, "split": entry["split"], "group": entry["group"],
                           "data": entry["data"], "kind": entry["kind"], "arch": entry["arch"], **entry["regime"]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = train(config, run_dir)
    except Exception as exc:  # noqa: BLE001 — a diverged or failed run is a row too (status failed)
        shutil.rmtree(run_dir, ignore_errors=True)
        return row | {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    evaluation = result.evaluation
    top = evaluation["levels"][-1]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    row |= {"status": "ok", "n_active": int(evaluation["n_active"]), "latent_size": int(evaluation["latent_size"]),
            "kl_sorted": sorted((float(v) for v in top["kl_per_dim"]), reverse=True),
            "levels": [{"name": lv["name"], "n_active": lv["n_active"], "kl_per_dim": lv["kl_per_dim"]}
                       for lv in evaluation["levels"]],
            "trajectory": [m["kl_per_dim"][-1] for m in metrics],
            "beta_scale": [m.get("beta_scale", 1.0) for m in metrics],
            "eta_dec": decoder_eta(result.model), "steps": int(metrics[-1]["step"]),
            "epochs": len(metrics), "seconds": round(time.perf_counter() - started, 2)}
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


def write_csv(rows: list[dict[str, Any]]) -> None:
    """``truth.csv``: one row per (configuration, seed), the sorted KL joined by ``;``."""
    columns = ["id", "seed", "split", "group", "data", "kind", "arch", "likelihood", "activation", "heads",
               "schedule", "clip", "budget", "target", "status", "n_active", "latent_size", "eta_dec", "steps",
               "seconds", "kl_sorted"]
    temporary = CSV.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            out = dict(row)
            out["kl_sorted"] = ";".join(f"{v:.5g}" for v in row.get("kl_sorted", []))
            writer.writerow(out)
    os.replace(temporary, CSV)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N configurations of the grid")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from bench.forecast import datasets
    from bench.forecast.grid import load_grid

    datasets.ensure()
    RESULTS.mkdir(parents=True, exist_ok=True)
    grid = load_grid()[: args.limit]
    seeds = [int(s) for s in args.seeds.split(",")]
    finished = done()
    for index, entry in enumerate(grid):
        for seed in seeds:
            if (entry["id"], seed) in finished:
                continue
            row = run_one(entry, seed)
            with open(TRUTH, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(row) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            write_csv(read_rows())
            print(f"[{index + 1}/{len(grid)}] {entry['id']} seed {seed}: {row.get('n_active', row['status'])} of "
                  f"{row.get('latent_size', '?')} active ({row.get('seconds', 0)} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
