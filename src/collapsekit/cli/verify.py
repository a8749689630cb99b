"""``collapsekit verify``: the closed form against direct numerical minimisation of the same loss."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collapsekit.cli.options import EXIT_DISAGREES, add_data_options, positive_number
from collapsekit.cli.theory_options import (THEORY_NAMES, add_hyper_options, add_model_argument, load_moments,
                                            print_deprecation_note, settings, use_current_names)
from collapsekit.errors import ParameterError


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``verify`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "verify", help="check the closed form by minimising the full loss numerically",
        description="Minimise the linear model's full loss (float64, multi-start L-BFGS) and compare with the "
                    "closed form. Exit 0 if they agree, 1 if not.")
    add_model_argument(parser)
    add_data_options(parser)
    add_hyper_options(parser)
    parser.add_argument("--starts", type=int, default=8, help="random starts of L-BFGS (default 8)")
    parser.add_argument("--rtol", type=positive_number, default=1e-6,
                        help="relative loss tolerance, > 0 (default 1e-6)")
    parser.add_argument("--json", action="store_true", help="print the result(s) as JSON")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr (a bar on a terminal; elsewhere a few lines when it runs long)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Verify every setting of the grid; 0 when all agree, 1 when one does not."""
    from collapsekit.cli import terminal
    from collapsekit._progress import stages
    from collapsekit.theory.verify import verify

    if args.starts < 1:
        raise ParameterError(f"--starts must be ≥ 1, got {args.starts}")
    deprecated = use_current_names(args)
    grid = settings(args)
    print_deprecation_note(deprecated)
    _, moments = load_moments(args)
    results = []
    total, done = len(grid) * args.starts, 0
    with stages("verify", quiet=args.no_progress) as stage:
        def advance(steps: int = 1) -> None:
            nonlocal done
            done += steps
            stage("L-BFGS starts", done, total)

        stage("L-BFGS starts", 0, total)
        for kwargs in grid:
            results.append(verify(THEORY_NAMES[args.model], moments, starts=args.starts, seed=args.seed, rtol=args.rtol,
                                  on_start_done=advance, **kwargs))
    if args.json:
        payload = [r.to_dict() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, allow_nan=False))
    else:
        terminal.print_verifications(results)
    return 0 if all(r.agrees for r in results) else EXIT_DISAGREES
