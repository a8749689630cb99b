"""``collapsekit reproduce``: the paper's experiments (E1–E14) as presets — tables, figures, verdicts.

The presets, their runs and the combined report are :mod:`collapsekit.experiments.presets`; this
module parses the command line and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapsekit._io import check_writable
from collapsekit.errors import ParameterError
from collapsekit.experiments.presets import DEFAULT_ROOT, PRESETS, SCALES, run_preset, select, write_report

if TYPE_CHECKING:
    from collapsekit.experiments.reproduction.outputs import PresetResult


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``reproduce`` verb to the CLI's subparsers; its handler returns the exit status."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "reproduce", help="run the paper's experiments (E1–E14) as presets: tables, figures, verdicts",
        description="Run one of the paper's experiments (or several, or all): train its configurations, measure "
                    "collapse with the diagnostics beside the closed-form prediction, and write table.csv, "
                    "table.md, figure.png and result.json (with a verdict on the paper's claim) to the output "
                    "directory. A rerun skips the training runs already finished.",
        epilog="Scales: quick (minutes on a laptop CPU; MNIST presets use the bundled mnist10k) and "
               "paper (the paper's settings; needs --data mnist:DIR with the full MNIST). β is the true KL "
               "weight: where the paper's script trained a β/2 model the preset trains nominal/2 and says so.")
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help="a preset, several separated by commas, or 'all' (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--scale", choices=SCALES, default="quick", help="quick (default) or paper")
    parser.add_argument("--data", metavar="SPEC",
                        help="data for the MNIST presets (paper scale: mnist:DIR with the full MNIST)")
    parser.add_argument("--out", metavar="DIR",
                        help="output directory of one preset (default reproduce/NAME); with several, the parent "
                             "of their directories (default reproduce/)")
    parser.add_argument("--workers", type=int, metavar="N", help="training processes at once (default: the cores)")
    parser.add_argument("--samples", type=int, metavar="S",
                        help="importance samples per example for the NLL (default 100 quick, 1000 paper)")
    parser.add_argument("--report", metavar="FILE.md",
                        help="also write a Markdown report of the presets run (figures copied beside it)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where the runs train and are measured: auto (CUDA when available, else cpu; the "
                             "default), cpu or cuda; sweeps give each worker its own GPU")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr (per experiment: a bar per stage on a terminal, over its "
                             "training runs and measurements; elsewhere a few lines per long stage)")
    parser.set_defaults(handler=run)
    return parser


def list_presets() -> None:
    """The presets as a table: name, paper id, what it runs, time at quick scale."""
    from rich.table import Table

    from collapsekit.cli import terminal

    table = Table(title="collapsekit reproduce: the paper's experiments", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("paper", no_wrap=True)
    table.add_column("what it runs", overflow="fold")
    table.add_column("quick scale", no_wrap=True)
    for preset in PRESETS.values():
        table.add_row(preset.name, preset.paper_id, preset.description, f"~{preset.quick_seconds} s")
    terminal.console().print(table)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (for the report's header)."""
    parts = ["collapsekit", "reproduce", args.name, "--scale", args.scale]
    for flag in ("data", "out", "workers", "samples", "report", "device"):
        value = getattr(args, flag, None)
        if value is not None and not (flag == "device" and value == "auto"):
            parts += [f"--{flag}", str(value)]
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """``collapsekit reproduce``: 0 when every preset ran (whatever its verdict); bad input raises a
    :class:`~collapsekit.errors.CollapsekitError`, which the CLI turns into one line and status 2."""
    from collapsekit._progress import stages

    if args.list:
        list_presets()
        return 0
    if not args.name:
        raise ParameterError("name a preset, several separated by commas, or 'all' "
                             "(collapsekit reproduce --list shows them)")
    presets = select(args.name)
    several = len(presets) > 1
    root = check_writable(args.out, what="--out") if args.out else \
        check_writable(DEFAULT_ROOT, what="the output directory (choose another with --out)")
    if args.report:
        check_writable(args.report, what="--report", directory=False)
    say = (lambda text: None) if args.no_progress else (lambda text: print(text, file=sys.stderr, flush=True))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = []
    for number, preset in enumerate(presets, 1):
        out = root / preset.name if several or not args.out else root
        say(f"reproduce {preset.paper_id} {preset.name} ({args.scale} scale) → {out}")
        # Per experiment: its training runs, its measurements and their diagnostics (a bar each on a terminal;
        # elsewhere a few lines per stage once it runs long).
        title = f"{preset.name} ({number}/{len(presets)})" if several else preset.name
        with stages(title, quiet=args.no_progress) as stage:
            result = run_preset(preset.name, scale=args.scale, data=args.data, out=out, workers=args.workers,
                                samples=args.samples, progress=not args.no_progress, device=args.device,
                                stage=stage)
        results.append(result)
        say(f"  {result.verdict.word} ({result.seconds:.0f} s): {result.sentence()}")
    if args.report:
        path = write_report(results, args.report, command=command_line(args), load=load)
        say(f"report: {path}")
    print_results(results)
    return 0


def print_results(results: Sequence[PresetResult]) -> None:
    """One row per preset run: its verdict on the paper's claim, time and outputs."""
    from rich.markup import escape
    from rich.table import Table

    from collapsekit.cli import terminal

    table = Table(title="reproduce", title_justify="left")
    for column in ("preset", "paper", "claim", "time (s)", "outputs"):
        table.add_column(column, overflow="fold")
    colour = {"holds": "green", "does not hold": "red", "inconclusive": "yellow"}
    for r in results:
        word = r.verdict.word
        table.add_row(r.name, r.paper_id, f"[{colour[word]}]{word}[/]", f"{r.seconds:.0f}",
                      escape(str(r.out_dir / "table.md")))
    terminal.console().print(table)
