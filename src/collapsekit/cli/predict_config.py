"""``collapsekit predict --config RUN.yaml``: the prediction for a configured run. A linear model gets the exact
closed form (the linear optimum with the run's β at its schedule's end, η_dec and latent sizes: what ``predict``
prints for those settings); a nonlinear one gets the closed-form forecast from the configuration with its interval
and the benchmark's measured accuracy of that method (docs/forecast.md), not a bare number."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collapsekit.errors import ParameterError

#: Options that describe the model, data or hyper-parameters: a run configuration gives them all.
_REPLACED = ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma1", "sigma2", "encoder_std", "latent_dim",
             "latent_dims", "split", "condition", "digit", "part")


def _check(args: argparse.Namespace) -> None:
    if args.model is not None:
        raise ParameterError(f"give the model ({args.model}) or --config RUN.yaml, not both: the configuration "
                             "names its model")
    given = [name for name in _REPLACED if getattr(args, name, None) is not None]
    if given or args.data != "digits":
        flag = "--" + (given[0] if given else "data").replace("_", "-")
        raise ParameterError(f"{flag} does not go with --config: the run configuration gives the model, data and "
                             "hyper-parameters (edit it, or leave --config out)")
    if args.recommend is not None:
        raise ParameterError("--recommend does not go with --config yet: use `predict MODEL --recommend K` with "
                             "the run's settings")


def run_config(args: argparse.Namespace) -> int:
    """Predict for the run ``args.config`` describes; print (tables or JSON) and write what was asked for."""
    from collapsekit.training.builders import load_training_data
    from collapsekit.training.config import RunConfig

    _check(args)
    config = RunConfig.load(args.config)
    data = load_training_data(config)
    if config.model.arch == "linear":
        return _linear(args, config, data)
    if args.plot:
        raise ParameterError("--plot draws the linear closed form's spectrum: the configuration is a nonlinear "
                             f"({config.model.arch}) model; leave --plot out")
    from collapsekit.cli.forecast import print_forecast
    from collapsekit.forecast import forecast_config
    from collapsekit.forecast.accuracy import annotate

    result = forecast_config(config, budget=0.0, data=data)
    payload = annotate(result.to_dict(), config)
    _save(args, payload)
    if args.json:
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print_forecast(result, config)
    return 0


def _linear(args: argparse.Namespace, config: Any, data: Any) -> int:
    """The exact closed form for a linear configuration, printed as ``predict`` prints it."""
    from collapsekit.diagnostics.theory_compare import TheorySetting, moments_for, predict_for, unsupported_reason
    from collapsekit.forecast import final_beta_scale

    setting = TheorySetting.from_config(config, beta_scale=final_beta_scale(config, data.n))
    reason = unsupported_reason(setting)
    if reason is not None:
        raise ParameterError(f"no closed form for this configuration: {reason}")
    moments = moments_for(setting, data.x, data.y)
    predictions = list({id(p): p for p, _ in predict_for(setting, moments).values()}.values())
    payload: Any = predictions[0].to_dict() if len(predictions) == 1 else [p.to_dict() for p in predictions]
    _save(args, payload)
    if args.plot:
        from collapsekit.viz import plot_spectrum

        plot_spectrum(predictions, args.plot, title=f"{config.model.kind.upper()} on "
                                                    f"{config.data.spec.replace('$', chr(92) + '$')}")
    if args.json:
        print(json.dumps(payload, indent=2, allow_nan=False))
        return 0
    from collapsekit.cli import terminal

    terminal.print_predictions(predictions, data_name=f"{config.data.spec} ({data.n} examples)")
    for note in setting.notes:
        print(f"note: {note}")
    return 0


def _save(args: argparse.Namespace, payload: Any) -> None:
    if args.save:
        from collapsekit._io import atomic_path

        with atomic_path(args.save) as temporary:
            temporary.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
