"""``collapsekit demo``: the main job on the embedded digits data — predict CVAE collapse across β, train
the linear CVAE the prediction describes, and diagnose it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapsekit.cli import diagnose, predict
from collapsekit.cli.options import OneLineParser

DEMO_BETAS = "0.01,0.03,0.1,0.3,1"
DEMO_TRAIN_BETA = 0.1
DEMO_IMPORTANCE_SAMPLES = 200


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "demo", help="the main job on the embedded digits data: predict CVAE collapse across β, then train "
                     "that CVAE and diagnose it",
        description="The main job, end to end, on scikit-learn's digits (quadrant split): predict CVAE collapse "
                    f"for β in {{{DEMO_BETAS}}} (tables and a plot), then train the linear CVAE at "
                    f"β = {DEMO_TRAIN_BETA} (150 epochs, about a minute) and set its measured KL beside the "
                    "prediction, then diagnose the trained run (collapsekit diagnose: terminal summary and "
                    "report.html). Everything goes under --out.")
    parser.add_argument("--out", default="demo-output", metavar="DIR", help="output folder (default demo-output)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Predict, then train and diagnose."""
    from collapsekit._io import check_writable

    out = check_writable(args.out, what="--out")
    predict_args = ["predict", "cvae", "--data", "digits", "--split", "quadrants", "--latent-dim", "16",
                    "--beta", DEMO_BETAS, "--plot", str(out / "cvae-digits-beta-grid.png"),
                    "--save", str(out / "cvae-digits-beta-grid.json")]
    from collapsekit.cli import terminal

    console = terminal.console()
    console.rule("collapsekit demo: CVAE on scikit-learn digits (x = bottom-left quadrant, y = the rest)")
    console.print("$ collapsekit " + " ".join(predict_args), markup=False)
    status = _run_verb(predict, predict_args)
    if status != 0:
        return status
    return _demo_train(out / "cvae-digits-run")


def _run_verb(verb: Any, argv: Sequence[str]) -> int:
    """Run one verb module (its own parser) as the command line ``argv`` would; errors propagate."""
    parser = OneLineParser(prog="collapsekit")
    verb.add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


def _demo_train(run_dir: Path) -> int:
    """Train the linear CVAE the prediction describes and set its measured KL beside the predicted one."""
    import shutil

    from collapsekit.cli import terminal
    from collapsekit.theory import Moments, predict_cvae
    from collapsekit.training import RunConfig, evaluate, load_training_data, train
    from collapsekit.training.trainer import build_objective_from_config

    config = RunConfig.parse({
        "data": {"spec": "digits", "split": "quadrants"},
        "model": {"kind": "cvae", "arch": "linear", "latent_dims": [16]},
        "objective": {"beta": DEMO_TRAIN_BETA}, "optim": {"lr": 1e-2, "lr_schedule": "cosine"},
        "train": {"epochs": 150, "batch_size": 128}})
    terminal.console().rule(f"training that linear CVAE at β = {DEMO_TRAIN_BETA} for {config.train.epochs} epochs")
    shutil.rmtree(run_dir, ignore_errors=True)       # the demo's own scratch run, rebuilt each time
    result = train(config, run_dir)
    data = load_training_data(config)
    assert result.model is not None and data.y is not None   # one process; a CVAE's pairs
    objective, _ = build_objective_from_config(config)
    measured = evaluate(result.model, objective, data, n_samples=64)
    prediction = predict_cvae(Moments.from_data(data.x.double().numpy(), data.y.double().numpy()),
                              latent_dim=16, beta=DEMO_TRAIN_BETA)
    terminal.print_measured_against_predicted(measured, prediction, run_dir, result.evaluation)
    report_dir = run_dir.parent / "diagnosis"
    terminal.console().rule("diagnosing the trained CVAE (collapsekit diagnose)")
    status = _run_verb(diagnose, ["diagnose", str(run_dir), "--out", str(report_dir),
                                  "--samples", str(DEMO_IMPORTANCE_SAMPLES)])
    if status == 0:
        from rich.markup import escape

        terminal.console().print(f"[bold]HTML report:[/bold] {escape(str((report_dir / 'report.html').resolve()))}")
    return status
