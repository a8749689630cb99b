"""``collapsekit doctor``: the quick checks that tell a bug from a collapse, on a run directory or on your own model.

What it examines, one of:

* ``RUN_DIR``: a run of ``collapsekit train`` — its latest checkpoint, the data it trained on, its objective (at
  the schedule's final value), its optimiser and its schedule;
* ``--factory MODULE:OBJECT``: your own model. ``OBJECT`` (in an importable module, or in a file given as
  ``path/to/file.py``) is a function of no arguments, or its result, giving ``(model, data, loss_fn)``,
  ``(model, data, loss_fn, optimizer)`` or a dict with those keys and optionally ``beta``, ``schedule``,
  ``total_steps``, ``adapter_options``: exactly what :func:`collapsekit.checkup.doctor` takes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collapsekit.cli.options import EXIT_DISAGREES
from collapsekit.errors import ParameterError

#: What a factory may give besides model and data.
FACTORY_KEYS = ("model", "data", "loss_fn", "optimizer", "beta", "schedule", "total_steps", "adapter_options")
#: The exit status when a check fails (as ``verify`` when the theory disagrees).
EXIT_FAILED = EXIT_DISAGREES


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``doctor`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "doctor", help="quick checks that tell a bug from a collapse (effective β, decoder uses z, encoder "
                       "training, schedule, under-regularised latents, theory)",
        description="Run the doctor's checks on a run directory of collapsekit train, or on your own model through "
                    "--factory MODULE:OBJECT (a function returning (model, data, loss_fn[, optimizer]) or a dict "
                    "with those keys and optionally beta, schedule, total_steps). Each check prints ok / warn / fail "
                    "with its evidence and the fix; the exit status is 1 when a check fails. See docs/doctor.md.")
    parser.add_argument("run", nargs="?", metavar="RUN_DIR",
                        help="a run directory, or RUN_DIR/checkpoints/epoch-NNNNNN")
    parser.add_argument("--factory", metavar="MODULE:OBJECT",
                        help="your model: MODULE (importable from the current directory) or path/to/file.py, and the "
                             "name of a function giving (model, data, loss_fn[, optimizer]) or a dict")
    parser.add_argument("--beta", type=float, metavar="B", help="the KL weight you meant (default: the run's, else 1)")
    parser.add_argument("--checks", metavar="NAMES",
                        help="comma-separated subset of: effective_beta, decoder_uses_z, encoder_training, schedule, "
                             "regularisation, theory (default all)")
    parser.add_argument("--examples", type=int, default=512, metavar="N", help="examples measured (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the checks' noise (default 0)")
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="RUN_DIR only: where the model is loaded (auto: CUDA when available; a factory's model "
                             "stays where the factory put it)")
    parser.add_argument("--json", action="store_true", help='print {"checks": [{"name", "status", "message", ...}]}')
    parser.set_defaults(handler=run)
    return parser


def load_factory(spec: str) -> dict[str, Any]:
    """``MODULE:OBJECT`` → the doctor's arguments (see the module docstring); one-line errors."""
    module_name, colon, attribute = spec.rpartition(":")
    if not colon or not module_name or not attribute:
        raise ParameterError(f"--factory {spec!r}: expected MODULE:OBJECT (e.g. mymodel:make)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ParameterError(f"--factory: no file {module_name}")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            assert loader is not None and loader.loader is not None
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 — the user's module: any error becomes one line
        raise ParameterError(f"--factory: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attribute):
        raise ParameterError(f"--factory: {module_name} has no {attribute!r}")
    made = getattr(module, attribute)
    if callable(made) and not isinstance(made, (tuple, list, Mapping)):
        try:
            made = made()
        except Exception as exc:  # noqa: BLE001
            raise ParameterError(f"--factory: {spec}() failed: {type(exc).__name__}: {exc}") from None
    if isinstance(made, Mapping):
        extra = sorted(set(made) - set(FACTORY_KEYS))
        if extra or "model" not in made or "data" not in made:
            raise ParameterError(f"--factory: the dict needs model and data and may have {', '.join(FACTORY_KEYS[2:])}"
                                 + (f"; unknown {', '.join(extra)}" if extra else ""))
        return dict(made)
    if isinstance(made, (tuple, list)) and len(made) in (2, 3, 4):
        return dict(zip(FACTORY_KEYS, made))
    raise ParameterError(f"--factory: {spec} gave a {type(made).__name__}; expected (model, data, loss_fn[, "
                         "optimizer]) or a dict")


def run(args: argparse.Namespace) -> int:
    """Run the checks and print them (a table or JSON); exit 1 when one fails."""
    from collapsekit.cli import terminal
    from collapsekit.checkup import doctor

    if (args.run is None) == (args.factory is None):
        raise ParameterError("give a RUN_DIR or --factory MODULE:OBJECT (one of them)")
    if args.examples < 2:
        raise ParameterError(f"--examples must be ≥ 2, got {args.examples}")
    checks = None if args.checks is None else [c.strip() for c in args.checks.split(",") if c.strip()]
    if args.run is not None:
        from collapsekit.runs import run_parts

        parts = run_parts(args.run, device=args.device)
        inputs: dict[str, Any] = {"model": parts.model, "data": parts.data, "loss_fn": parts.loss_fn,
                                  "optimizer": parts.optimizer, "beta": parts.beta, "schedule": parts.schedule,
                                  "total_steps": parts.total_steps, "batch_size": parts.batch_size}
    else:
        inputs = load_factory(args.factory)
    if args.beta is not None:
        inputs["beta"] = args.beta
    report = doctor(**inputs, checks=checks, examples=args.examples, seed=args.seed)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        terminal.print_doctor_report(report)
    return EXIT_FAILED if report.status == "fail" else 0
