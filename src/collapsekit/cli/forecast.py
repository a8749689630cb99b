"""``collapsekit forecast``: how many latent dimensions a configured run will keep at its end, before or early in
training, with an interval (docs/forecast.md gives the measured accuracy)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from collapsekit.cli.options import number


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``forecast`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "forecast", help="forecast the active dimensions at the end of a configured run",
        description="Forecast the headline count of active latent dimensions (mean KL ≥ 0.01 nats) at the end of "
                    "the run CONFIG.yaml describes, with an interval. --budget 0 (the default): the adjusted closed form "
                    "(no training). A budget F > 0 trains the first ⌊F·epochs⌋ epochs into --out (continue them "
                    "with `collapsekit train --out RUN --resume --epochs N`) and extrapolates each dimension's KL.")
    parser.add_argument("config", metavar="CONFIG.yaml", help="the run's configuration (as `train --config` reads)")
    parser.add_argument("--budget", type=number, default=0.0, metavar="F",
                        help="largest fraction of the run's optimiser steps to spend, 0 … 1 (default 0: the closed "
                             "form only; docs/forecast.md compares the two on the benchmark)")
    parser.add_argument("--out", metavar="RUN", help="run directory for the trained prefix (needed when F > 0; "
                                                     "with --keep, one prefix per grid β under RUN/beta-<factor>/)")
    parser.add_argument("--keep", type=int, metavar="K",
                        help="instead: the largest β forecast to keep K dimensions active (and the largest whose "
                             "interval's lower end keeps K): from the closed form at --budget 0 (cost 0), or at "
                             "--budget F from a pilot that trains the first ⌊F·epochs⌋ epochs at each of a few β "
                             "in one batched program (cost: points × F of a run)")
    parser.add_argument("--json", action="store_true", help="print the forecast as JSON")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Forecast and print (a table and one sentence, or JSON)."""
    from collapsekit.errors import ParameterError
    from collapsekit.forecast import forecast_config
    from collapsekit.training.config import RunConfig

    if not 0 <= args.budget <= 1:
        raise ParameterError(f"--budget must be a fraction of the run between 0 and 1, got {args.budget:g}")
    config = RunConfig.load(args.config)
    if args.out is not None:
        from collapsekit._io import check_writable

        check_writable(args.out, what="--out", directory=True)
    if args.keep is not None:
        return _recommend(config, args)
    result = forecast_config(config, budget=args.budget, run_dir=args.out)
    from collapsekit.forecast.accuracy import annotate

    if args.json:
        print(json.dumps(annotate(result.to_dict(), config), indent=2, allow_nan=False))
        return 0
    print_forecast(result, config)
    return 0


def print_forecast(result: Any, config: Any) -> None:
    """A forecast as a table (rank, forecast KL, active) and one sentence with its interval and, for a nonlinear
    model, the method's measured accuracy on the benchmark (``collapsekit forecast`` and ``predict --config``)."""
    from collapsekit.activity import KL_ACTIVE_THRESHOLD
    from collapsekit.diagnostics.forecast_intervals import regime_of
    from collapsekit.forecast.accuracy import evidence
    from collapsekit.formatting import cell

    print(f"{'rank':>4}  {'forecast KL (nats)':>18}  active")
    for rank, kl in enumerate(result.kl_per_rank, 1):
        print(f"{rank:>4}  {cell(kl):>18}  {'yes' if kl >= KL_ACTIVE_THRESHOLD else 'no'}")
    lo, hi = result.interval
    said = evidence(result.method, config.model.arch, regime_of(config))
    print(f"Forecast: {result.n_active} of {result.latent_size} latent dimensions active at the end of the "
          f"{config.train.epochs}-epoch run (interval {lo}–{hi}; {result.method.replace('_', ' ')}, "
          f"{100 * result.cost_fraction:.0f} % of the run spent" + (f"; this method was {said}" if said else "")
          + ").")
    for note in result.notes:
        print(f"  note: {note}")


def _recommend(config: Any, args: argparse.Namespace) -> int:
    """``--keep K``: the largest β forecast to keep K dimensions (JSON, or the pilot's table and one sentence)."""
    from collapsekit.forecast import recommend_beta
    from collapsekit.diagnostics.forecast_intervals import regime_of
    from collapsekit.forecast.accuracy import evidence

    rec = recommend_beta(config, args.keep, budget=args.budget, run_dir=args.out)
    if args.json:
        print(json.dumps(rec.to_dict(), indent=2, allow_nan=False))
        return 0
    fmt = lambda b: "—" if b is None else (", ".join(f"{v:.4g}" for v in b) if isinstance(b, list) else f"{b:.4g}")  # noqa: E731
    if rec.pilot:
        print(f"{'factor':>8}  {'β':>10}  {'forecast':>8}  interval")
        for row in rec.pilot:
            print(f"{row['factor']:>8.4g}  {fmt(row['beta']):>10}  {row['forecast']:>8}  "
                  f"{row['interval'][0]}–{row['interval'][1]}")
    said = evidence(rec.method, config.model.arch, regime_of(config))
    cost = ("cost 0" if not rec.pilot else f"a pilot of {len(rec.pilot)} β, {100 * rec.cost_fraction:.0f} % of a run "
            f"in optimiser steps, {rec.programs} training program{'s' * (rec.programs != 1)} this time")
    print(f"Largest β forecast to keep {rec.keep} of {rec.latent_size} dimensions active: {fmt(rec.beta)} "
          f"(forecast {rec.forecast}, interval {rec.interval[0]}–{rec.interval[1]}); largest whose interval keeps "
          f"{rec.keep}: {fmt(rec.beta_safe)} ({rec.method.replace('_', ' ')}, {cost}"
          + (f"; its count forecast was {said}" if said else "") + ").")
    for note in rec.notes:
        print(f"  note: {note}")
    return 0
