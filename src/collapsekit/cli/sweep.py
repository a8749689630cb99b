"""``collapsekit sweep``: a grid of configurations × seeds trained in parallel; a rerun finishes what is missing.

The sweep itself (points, workers, resuming, summary.csv, the plot) is
:func:`collapsekit.experiments.sweep.run_sweep`; this module parses the command line and prints the
result.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from collapsekit.errors import ParameterError
from collapsekit.experiments.executors import EXECUTORS
from collapsekit.activity import KL_ACTIVE_THRESHOLD
from collapsekit.experiments.sweep import (POINTS_DIR, TRACEBACK_FILE, estimate_accuracies, load_sweep, parse_grid,
                                           parse_seeds, predicted_cell, run_sweep, what_ran)

if TYPE_CHECKING:
    from collapsekit.experiments.sweep import SweepResult


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` verb to the CLI's subparsers; its handler returns the exit status."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "sweep", help="train a grid of configurations × seeds in parallel; a rerun finishes what is missing",
        description="Train the base configuration at every combination of the --grid values and every seed, in "
                    "parallel worker processes (or on a Ray cluster). Each point is a run directory under "
                    "OUT/points/; summary.csv (one row per point) and a plot of measured active dimensions against "
                    "β with the theory's curve are written to OUT. A failed point does not stop the others "
                    "(exit status 1 names it); rerunning the same command skips finished points, resumes killed "
                    "ones from their last checkpoint and retries failed ones.",
        epilog="summary.csv: n_active_measured counts the top-level latent dimensions whose mean KL is ≥ "
               f"{KL_ACTIVE_THRESHOLD:g} nats per example on the final weights and the point's data (its "
               "evaluation.json); n_active_predicted applies the same rule to the closed form's KL at the same "
               "settings (empty where the theory does not apply), n_active_predicted_lo/_hi its interval where "
               "the closed form only estimates it (a nonlinear model: the post-hoc closed form's conformal "
               "interval, as diagnose's reports give it). Grid keys: configuration keys (objective.beta, model.eta_dec, schedule.settings.KEY) or "
               "short names (beta, beta1, beta2, eta_dec, eta_enc, latent_dim, lr, epochs, batch_size, ...).")
    parser.add_argument("config", metavar="CONFIG.yaml",
                        help="the base run configuration (YAML), or a sweep directory to rerun as it was")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a grid axis; repeat for a product (values: numbers, words, true/false, A:B lists)")
    parser.add_argument("--seeds", metavar="N|S1,S2,...",
                        help="a number of seeds (0..N-1) or a comma-separated list of seeds (default 1)")
    parser.add_argument("--out", metavar="DIR", help="the sweep directory (default: CONFIG's name + '-sweep')")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="points at once (default: the cores available; each worker uses cores/N threads)")
    parser.add_argument("--executor", choices=sorted(EXECUTORS), default="local",
                        help="local worker processes (default) or a Ray cluster (pip install 'collapsekit[ray]')")
    parser.add_argument("--address", metavar="HOST:PORT", help="Ray: the cluster head's address")
    parser.add_argument("--no-progress", action="store_true", help="no plan line or progress bar on stderr")
    parser.add_argument("--no-batch", action="store_true",
                        help="one process per point, even where small VAEs could train as one batched program")
    parser.add_argument("--batch-mode", choices=["exact", "fast"], default="exact",
                        help="batched programs: exact (default; bit for bit the separate runs) or fast (batched "
                             "products, the same up to rounding)")
    parser.add_argument("--gpus-per-point", type=float, metavar="G",
                        help="GPUs per point (0.5: two points share a GPU; 0: none). Default: 1 when the "
                             "configuration's train.accelerator asks for a GPU (auto: where this machine has one), "
                             "else 0. Local workers are pinned round-robin with CUDA_VISIBLE_DEVICES, one per GPU "
                             "by default; Ray tasks request num_gpus")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """``collapsekit sweep``: 0 when every point is done, 1 when some failed (named); bad input raises
    a :class:`~collapsekit.errors.CollapsekitError`, which the CLI turns into one line and status 2."""
    from collapsekit._io import check_writable
    from collapsekit.training import RunConfig

    source = Path(args.config)
    seeds: int | list[int]
    if source.is_dir():
        if args.grid or args.seeds is not None:
            raise ParameterError(f"{source} is a sweep directory: it reruns with its own grid and seeds "
                                 "(drop --grid and --seeds)")
        base, grid, seeds = load_sweep(source)
        out = Path(args.out) if args.out else source
    else:
        base = RunConfig.load(source)
        grid = parse_grid(args.grid)
        seeds = parse_seeds(args.seeds) if args.seeds is not None else 1
        out = Path(args.out) if args.out else Path(f"{source.stem}-sweep")
    check_writable(out, what="--out" if args.out else "the sweep directory (choose another with --out)")
    result = run_sweep(base, grid, seeds, out, executor=args.executor, workers=args.workers, address=args.address,
                       progress=not args.no_progress, batched=not args.no_batch,
                       gpus_per_point=args.gpus_per_point, batch_mode=args.batch_mode)
    print_result(result, accuracy=estimate_accuracies(base, grid, result.rows))
    return 0 if result.ok else 1


def print_result(result: SweepResult, max_rows: int = 40, accuracy: Sequence[str] = ()) -> None:
    """The summary as a table (at most ``max_rows`` points), the benchmark's measured ``accuracy`` of its
    estimated counts (:func:`~collapsekit.experiments.sweep.estimate_accuracies`), the failures, and where the
    files are."""
    from rich.markup import escape
    from rich.table import Table

    from collapsekit.cli import terminal

    out = terminal.console()
    table = Table(title=f"sweep: {len(result.rows)} points", title_justify="left")
    for name in ("point", "status", "active measured", "active predicted", "loss (nats)", "KL (nats)"):
        table.add_column(name, justify="left" if name in ("point", "status") else "right")
    colour = {"done": "green", "failed": "red"}
    show = lambda v, fmt="{}": "" if v is None else fmt.format(v)  # noqa: E731
    for row in result.rows[:max_rows]:
        status = row["status"]
        table.add_row(escape(str(row["point"])), f"[{colour.get(status, 'yellow')}]{status}[/]",
                      show(row["n_active_measured"]), predicted_cell(row),
                      show(row["loss_nats"], "{:.5g}"), show(row["kl_nats"], "{:.4g}"))
    out.print(table)
    if len(result.rows) > max_rows:
        out.print(f"... and {len(result.rows) - max_rows} more rows in {escape(str(result.summary_path))}")
    if accuracy:
        # An estimated count's interval alone does not say how often the closed form was right: the reports
        # quote the benchmark's measured accuracy beside it, and so does the sweep, once per regime.
        out.print(escape("active predicted: a linear-theory estimate for a nonlinear model, shown with its "
                         f"conformal interval; {'; '.join(accuracy)}"), soft_wrap=True)
    for row in result.failed:
        out.print("[red]failed[/red] " + escape(f"{row['point']}: {row['error']} (traceback: "
                                                f"{result.out_dir / POINTS_DIR / row['point'] / TRACEBACK_FILE})"),
                  soft_wrap=True)
    plot = f"; plot: {result.plot_path}" if result.plot_path else ""
    out.print(f"{escape(what_ran(result))}; summary: [bold]{escape(str(result.summary_path))}[/bold]{escape(plot)}",
              soft_wrap=True)
    if result.failed:
        out.print(f"{len(result.failed)} point(s) failed; rerun the same command to retry them", soft_wrap=True)
