"""The ``collapsekit`` command: one program, one verb per stage of the data flow.

One module per verb (:mod:`.predict`, :mod:`.forecast`, :mod:`.verify`, :mod:`.train`, :mod:`.diagnose`, :mod:`.doctor`,
:mod:`.demo`, :mod:`.sweep`, :mod:`.reproduce`), each with ``add_parser(verbs)`` and ``run(args)``; what several verbs
share is in :mod:`.options` and :mod:`.theory_options`; what they print, in :mod:`.terminal`.
Library modules return data; only this package prints results.

Bad input never shows a traceback: every :class:`~collapsekit.errors.CollapsekitError` becomes a
one-line message on stderr and exit status 2 (argparse uses 2 for usage errors as well).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from collapsekit import __version__
from collapsekit.cli import demo, diagnose, doctor, forecast, predict, reproduce, sweep, train, verify
from collapsekit.cli.options import EXIT_BAD_INPUT, EXIT_DISAGREES, OneLineParser
from collapsekit.errors import CollapsekitError

__all__ = ["EXIT_BAD_INPUT", "EXIT_DISAGREES", "VERBS", "build_parser", "entry_point", "main"]

#: The verbs, in the order ``collapsekit --help`` lists them. No verb module imports torch at import
#: time: the parser stays fast for every verb.
VERBS = (predict, forecast, verify, train, diagnose, doctor, demo, sweep, reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = OneLineParser(
        prog="collapsekit",
        description="Detect, predict and explain posterior collapse in VAEs, CVAEs and hierarchical VAEs.")
    parser.add_argument("--version", action="version", version=f"collapsekit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


# -- entry point ----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 verification disagrees or a doctor check fails, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.handler(args))
    except CollapsekitError as exc:
        print(f"collapsekit: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("collapsekit: interrupted", file=sys.stderr)
        return 130


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A collapse warning is a message for the user, not a source location: print it as one."""
    if category.__name__ in ("CollapseWarning", "CheckpointWarning"):   # by name: the CLI does not import torch
        print(f"collapsekit: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def entry_point() -> None:
    """Console-script entry: exit with :func:`main`'s status."""
    sys.exit(main())

