"""``collapsekit diagnose``: measure collapse in a trained run, explain it, and write the reports."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collapsekit.errors import ParameterError


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``diagnose`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "diagnose", help="measure collapse in a trained run and explain it (terminal, JSON, Markdown, HTML)",
        description="Load a run directory (its latest checkpoint) or one checkpoint of it, measure every latent "
                    "level (KL per dimension, active units, MI, (ε,δ)-collapse, IS log-likelihood), set the "
                    "linear theory beside the measurement, and write report.json, report.md and report.html.")
    parser.add_argument("run", metavar="RUN_DIR", help="a run directory, or RUN_DIR/checkpoints/epoch-NNNNNN")
    parser.add_argument("--out", metavar="DIR", help="where the reports go (default RUN_DIR/diagnosis)")
    parser.add_argument("--part", choices=["train", "test"],
                        help="evaluate on that part of the run's seeded train/test split (default: the data "
                             "the run trained on)")
    parser.add_argument("--samples", type=int, default=1000, metavar="S",
                        help="importance samples per example for the log-likelihood (default 1000)")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="B", help="examples per pass (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo estimates (default 0)")
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="where the model runs: auto (CUDA when available, else cpu; the default), cpu, cuda, "
                             "cuda:N")
    parser.add_argument("--no-theory", action="store_true", help="skip the linear theory's prediction")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr (a bar on a terminal; elsewhere a few lines per long stage)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Diagnose the run, write report.json/.md/.html, print the report (tables or JSON)."""
    from collapsekit._io import check_writable
    from collapsekit._progress import stages
    from collapsekit.cli import terminal
    from collapsekit.runs import diagnose_run, resolve_run
    from collapsekit.viz.report import write_reports

    for name in ("samples", "batch_size"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    run_dir, _ = resolve_run(args.run)
    out = check_writable(args.out, what="--out") if args.out else \
        check_writable(run_dir / "diagnosis", what="the report folder (RUN_DIR/diagnosis; choose another with --out)")
    with stages("diagnose", quiet=args.no_progress) as stage:
        diagnosis = diagnose_run(args.run, part=args.part, n_samples=args.samples, batch_size=args.batch_size,
                                 seed=args.seed, theory=not args.no_theory, progress=stage,
                                 device=args.device)
        stage("reports (figures, JSON, Markdown, HTML)", 0, 1)
        paths = write_reports(diagnosis.report, out, model=diagnosis.model, x=diagnosis.data.x, y=diagnosis.data.y,
                              image_shape=diagnosis.image_shape, merge=diagnosis.merge)
        stage("reports (figures, JSON, Markdown, HTML)", 1, 1)
    if args.json:
        print(json.dumps(diagnosis.report.to_dict(), indent=2))
    else:
        terminal.print_collapse_report(diagnosis.report)
        terminal.console().print("reports: " + ", ".join(str(p) for p in paths.values()), markup=False)
    return 0
