"""Pilots of the forecast benchmark: for every configuration whose 10 % prefix is not its own beginning (the early
method's fallbacks: cyclical schedules, warm-ups longer than the prefix, runs where 10 % buys no whole epoch),
train a pilot of ⌊0.1 · steps⌋ optimiser steps per seed and schedule variant, resumably.

    nice -n 10 python bench/forecast/run_pilots.py [--seeds 0,1] [--budget 0.1]     # from the repository root

Each pilot (:mod:`collapsekit.forecast.schedule_pilot`) appends one line to ``results/pilots.jsonl``: id, seed, variant
(``compressed``, ``final``, ``mean``, ``fast_compressed``, ``fast_final``; a constant schedule has only
``compressed``, the run's own beginning in partial epochs, and ``fast_compressed``), the pilot's and the run's steps, its KL trajectory per chunk of steps and seconds. Pilots are
trained in memory; nothing is written to a run directory. Killed and restarted, it skips the recorded triples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
PILOTS = RESULTS / "pilots.jsonl"


def read_pilots() -> list[dict[str, Any]]:
    """Every recorded pilot (lines cut by a kill are skipped)."""
    from bench.forecast.run_truth import read_jsonl

    return read_jsonl(PILOTS)


def needs_pilot(entry: dict[str, Any], budget: float) -> str | None:
    """Why the early method falls back for this configuration at ``budget`` (None: its prefix serves)."""
    from collapsekit.forecast.early import prefix_epochs, prefix_problem
    from collapsekit.training.config import RunConfig

    config = RunConfig.parse(entry["config"])
    return prefix_problem(config, prefix_epochs(config, budget), entry["rows"])


def variants(entry: dict[str, Any]) -> tuple[str, ...]:
    from collapsekit.forecast.schedule_pilot import VARIANTS

    if entry["config"]["schedule"]["name"] == "constant":
        return ("compressed", "fast_compressed")
    return VARIANTS


def run_one(entry: dict[str, Any], seed: int, variant: str, budget: float, data: Any) -> dict[str, Any]:
    import torch

    from collapsekit.forecast.closed_form import total_steps
    from collapsekit.forecast.schedule_pilot import pilot_config, pilot_steps, train_pilot
    from collapsekit.training.config import RunConfig

    values = json.loads(json.dumps(entry["config"]))
    values["train"]["seed"] = seed
    config = RunConfig.parse(values)
    n = int(data.n)
    steps = pilot_steps(config, n, budget)
    torch.set_num_threads(1)
    started = time.perf_counter()
    row: dict[str, Any] = {"id": entry["id"], "seed": seed, "variant": variant, "budget": budget,
                           "split": entry["split"], "steps": steps, "total_steps": total_steps(config, n)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trajectory = train_pilot(pilot_config(config, n, steps, variant), data, steps)
    except Exception as exc:  # noqa: BLE001 — a failed pilot is a row too
        return row | {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return row | {"status": "ok", "trajectory": trajectory, "seconds": round(time.perf_counter() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--budget", type=float, default=0.1, help="fraction of the run's steps (default 0.1)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from bench.forecast import datasets
    from bench.forecast.grid import load_grid
    from collapsekit.training.builders import load_training_data
    from collapsekit.training.config import RunConfig

    datasets.ensure()
    RESULTS.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    finished = {(r["id"], r["seed"], r["variant"], r["budget"]) for r in read_pilots()}
    todo = [e for e in load_grid() if needs_pilot(e, args.budget) is not None]
    started = time.perf_counter()
    for index, entry in enumerate(todo):
        for seed in seeds:
            data = None                  # the train/test split depends on the seed
            for variant in variants(entry):
                if (entry["id"], seed, variant, args.budget) in finished:
                    continue
                if data is None:
                    values = json.loads(json.dumps(entry["config"]))
                    values["train"]["seed"] = seed
                    data = load_training_data(RunConfig.parse(values))
                row = run_one(entry, seed, variant, args.budget, data)
                with open(PILOTS, "a", encoding="utf-8") as stream:
                    stream.write(json.dumps(row) + "\n")
                    stream.flush()
                    os.fsync(stream.fileno())
                print(f"[{index + 1}/{len(todo)}] {entry['id']} seed {seed} {variant}: {row['status']} "
                      f"{row['steps']} of {row['total_steps']} steps ({row.get('seconds', 0)} s)", flush=True)
    print(f"{len(todo)} configurations need a pilot; {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
