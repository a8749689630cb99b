"""Does the recommended β keep K? The cost-0 scan against the pilot, on the benchmark's pilot-able configurations.

    nice -n 10 python bench/forecast/pilot_check.py [--budget 0.1] [--split reporting]   # from the repository root

For every configuration of grid.json the pilot can run on (a one-level MLP VAE with a constant β schedule and a
long budget: the batched program takes it and a 10 % prefix is the run's beginning) of the chosen split, with
K its target (the count its β was chosen to sit at): ``recommend_beta`` at budget 0 (the closed form's scan) and
at ``--budget`` (the pilot, into a scratch run directory), then the full run at each recommended β (``beta`` and,
where there is one, ``beta_safe``) trained as one batched program, seed 0, and its measured headline count.
Writes ``results/pilot_check_<split>_<budget>.json`` and prints a Markdown table (docs/forecast.md quotes it).
Nothing is tuned.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRATCH = HERE / "runs" / "pilot_check"


def eligible(entry: dict[str, Any], split: str) -> bool:
    """A configuration the pilot runs on as one batched program from a prefix that is the run's beginning."""
    regime = entry["regime"]
    return (entry["kind"] == "vae" and entry["arch"] == "mlp" and regime["schedule"] == "constant"
            and regime["budget"] == "long" and (split == "both" or entry["split"] == split))


def check(entry: dict[str, Any], budget: float) -> dict[str, Any]:
    """The two recommendations for one configuration, and the measured count of a full run at each β."""
    from collapsekit.activity import count_active
    from collapsekit.forecast import recommend_beta
    from collapsekit.training.batched import train_batched
    from collapsekit.training.builders import load_training_data
    from collapsekit.training.config import RunConfig

    config = RunConfig.parse(entry["config"])
    keep = int(entry["regime"]["target"])
    data = load_training_data(config)
    scratch = SCRATCH / entry["id"]
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.perf_counter()
    cost0 = recommend_beta(config, keep, data=data)
    pilot = recommend_beta(config, keep, data=data, budget=budget, run_dir=scratch / "pilot")
    pilot_seconds = time.perf_counter() - started
    betas = {"cost0": cost0.beta, "cost0_safe": cost0.beta_safe, "pilot": pilot.beta, "pilot_safe": pilot.beta_safe}
    chosen = {name: beta for name, beta in betas.items() if beta is not None}
    runs = train_batched([config.with_overrides({"objective.beta": beta}) for beta in chosen.values()],
                         [scratch / name for name in chosen], data=data)
    measured = {name: count_active(run.evaluation["levels"][-1]["kl_per_dim"]) for name, run in zip(chosen, runs)}
    shutil.rmtree(scratch, ignore_errors=True)
    return {"id": entry["id"], "data": entry["data"], "likelihood": entry["regime"]["likelihood"], "keep": keep,
            "configured_beta": config.objective.beta, "betas": betas, "measured": measured,
            "pilot_table": pilot.pilot, "pilot_cost": pilot.cost_fraction, "pilot_programs": pilot.programs,
            "pilot_seconds": round(pilot_seconds, 1)}


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the rows, and a line of totals."""
    fmt = lambda b: "—" if b is None else f"{b:.3g}"  # noqa: E731
    lines = ["| id | data | K | cost-0 β → count | cost-0 β_safe → count | pilot β → count "
             "| pilot β_safe → count |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        cells = [f"{fmt(row['betas'][name])} → {row['measured'].get(name, '—')}"
                 for name in ("cost0", "cost0_safe", "pilot", "pilot_safe")]
        lines.append(f"| {row['id']} | {row['data']} | {row['keep']} | " + " | ".join(cells) + " |")
    for name in ("cost0", "cost0_safe", "pilot", "pilot_safe"):
        given = [row for row in rows if name in row["measured"]]
        kept = sum(row["measured"][name] >= row["keep"] for row in given)
        lines.append(f"\n{name}: a β on {len(given)} of {len(rows)}; the full run kept K on {kept} of them")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--split", choices=["reporting", "tuning", "both"], default="reporting")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    grid = json.loads((HERE / "grid.json").read_text(encoding="utf-8"))
    rows = []
    for entry in (e for e in grid if eligible(e, args.split)):
        rows.append(check(entry, args.budget))
        print(json.dumps({k: rows[-1][k] for k in ("id", "keep", "betas", "measured", "pilot_seconds")}), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pilot_check_{args.split}_{args.budget:g}.json"
    out.write_text(json.dumps({"budget": args.budget, "split": args.split, "rows": rows}, indent=1) + "\n",
                   encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    sys.exit(main())
