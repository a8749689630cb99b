"""``collapsekit predict``: the closed-form optimum of the linear model on the data, before training."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collapsekit.cli.options import add_data_options
from collapsekit.cli.theory_options import (THEORY_NAMES, add_hyper_options, add_model_argument, load_moments,
                                            print_deprecation_note, settings, use_current_names)


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "predict", help="predict collapse from the data before training (closed forms)",
        description="Closed-form optimum of the linear model on your data: which latent dimensions collapse, "
                    "their KL (nats) and critical β. With --config RUN.yaml instead of a model: the prediction for "
                    "that run — the exact closed form for a linear model; for a nonlinear one the closed-form "
                    "forecast with its interval and its measured accuracy on the benchmark (docs/forecast.md).")
    add_model_argument(parser, optional=True)
    parser.add_argument("--config", metavar="RUN.yaml",
                        help="a run configuration (as `train --config` reads) in place of the model, data and "
                             "hyper-parameter options")
    add_data_options(parser)
    add_hyper_options(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the prediction(s) as JSON instead of tables")
    out.add_argument("--plot", metavar="FILE.png", help="draw the spectrum against the collapse threshold")
    out.add_argument("--save", metavar="FILE.json", help="also write the JSON to this file (atomically)")
    out.add_argument("--recommend", type=int, metavar="K",
                     help="also print the largest β (β2 for the hvae) that keeps K dimensions active")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Predict, print (tables or JSON), and write the plot and the JSON file asked for."""
    from collapsekit._io import check_writable
    from collapsekit.theory import predict, recommend_beta

    for flag, path in (("--plot", args.plot), ("--save", args.save)):
        if path:
            check_writable(path, what=flag, directory=False)
    if args.config is not None:
        from collapsekit.cli.predict_config import run_config

        return run_config(args)
    if args.model is None:
        from collapsekit.errors import ParameterError

        raise ParameterError("predict needs a model (vae, cvae, hvae) or --config RUN.yaml")
    deprecated = use_current_names(args)
    grid = settings(args)
    print_deprecation_note(deprecated)
    model = THEORY_NAMES[args.model]
    dataset, moments = load_moments(args)
    predictions = [predict(model, moments, **kwargs) for kwargs in grid]
    recommendation = None
    if args.recommend is not None:
        kwargs = dict(grid[0])
        recommendation = recommend_beta(moments, model, target_active=args.recommend, **kwargs)
    if args.plot:
        from collapsekit.viz import plot_spectrum

        name = dataset.name.replace("$", r"\$")            # matplotlib reads $...$ as mathematics
        plot_spectrum(predictions, args.plot, title=f"{model.upper()} on {name}: θ against the collapse threshold")
    payload: Any = [p.to_dict() for p in predictions]
    payload = payload[0] if len(payload) == 1 else payload
    if recommendation is not None:
        payload = {"predictions": payload, "recommended_beta": recommendation, "target_active": args.recommend}
    text = json.dumps(payload, indent=2, allow_nan=False)
    if args.save:
        from collapsekit._io import atomic_path

        with atomic_path(args.save) as temporary:
            temporary.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
        return 0
    from rich.markup import escape

    from collapsekit.cli import terminal

    terminal.print_predictions(predictions, data_name=f"{dataset.name} ({dataset.n} examples)")
    if recommendation is not None:
        terminal.print_recommendation(model, args.recommend, recommendation)
    for kind, path in (("plot", args.plot), ("predictions", args.save)):
        if path:
            terminal.console().print(f"{kind} written to [bold]{escape(path)}[/bold]")
    return 0
