"""The ``collapsekit`` command: one program, one verb per stage of the data flow.

Bad input never shows a traceback: every :class:`~collapsekit.errors.CollapsekitError` becomes a
one-line message on stderr and exit status 2 (argparse uses 2 for usage errors as well).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collapsekit import __version__
from collapsekit.errors import CollapsekitError, ParameterError

EXIT_BAD_INPUT = 2
EXIT_DISAGREES = 1

# Hyper-parameters a grid can vary, per model; their defaults are read from the predict_* signatures.
_GRID_PARAMETERS: dict[str, tuple[str, ...]] = {
    "vae": ("beta", "eta_enc", "eta_dec"),
    "cvae": ("beta", "eta_enc", "eta_dec"),
    "mhvae": ("beta1", "beta2", "eta_enc", "eta_dec", "sigma1", "sigma2"),
}
_ALL_GRID_PARAMETERS = ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma1", "sigma2")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(model: str, name: str) -> Any:
    from collapsekit.theory import PREDICTORS

    return inspect.signature(PREDICTORS[model]).parameters[name].default


# -- argument types ------------------------------------------------------------------------------
def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _number_list(text: str) -> list[float]:
    values = [_number(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} holds no numbers")
    return values


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _sigma2_list(text: str) -> list[float | None]:
    return [None if part.strip() == "learnable" else _number(part) for part in text.split(",")]


# -- parser --------------------------------------------------------------------------------------
def _add_data_options(parser: argparse.ArgumentParser) -> None:
    from collapsekit.data import SPEC_HELP

    group = parser.add_argument_group("data", SPEC_HELP)
    group.add_argument("--data", default="digits", metavar="SPEC", help="data source (default: digits)")
    group.add_argument("--split", choices=["quadrants"],
                       help="CVAE view: x = bottom-left image quadrant, y = the other three")
    group.add_argument("--condition", choices=["label"], help="CVAE view: x = one-hot label, y = the image")
    group.add_argument("--digit", type=int, metavar="N", help="keep only examples with label N")
    group.add_argument("--part", choices=["train", "test"], help="keep one part of a seeded train/test split")
    group.add_argument("--test-fraction", type=_number, default=0.2, metavar="F",
                       help="test share of the split (default 0.2)")
    group.add_argument("--seed", type=int, default=0, help="seed of the split and of random starts (default 0)")


def _add_hyper_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyper-parameters (comma-separated values form a grid)")
    group.add_argument("--latent-dim", type=int, metavar="K", help="latent size (VAE, CVAE; default 16)")
    group.add_argument("--latent-dims", type=_int_list, metavar="D1,D2", help="MHVAE sizes of z1,z2 (default 16,16)")
    group.add_argument("--beta", type=_number_list, metavar="B", help="KL weight β, the true weight (default 1)")
    group.add_argument("--beta1", type=_number_list, metavar="B", help="MHVAE weight of the z1 term (default 1)")
    group.add_argument("--beta2", type=_number_list, metavar="B", help="MHVAE weight of the z2 KL (default 1)")
    group.add_argument("--eta-enc", type=_number_list, metavar="E", help="prior std η_enc (default 1)")
    group.add_argument("--eta-dec", type=_number_list, metavar="E", help="decoder std η_dec (default 1)")
    group.add_argument("--sigma1", type=_number_list, metavar="S", help="MHVAE fixed z1 encoder std (default 0.5)")
    group.add_argument("--sigma2", type=_sigma2_list, metavar="S",
                       help="MHVAE z2 encoder std: 'learnable' (default) or a fixed value")
    group.add_argument("--encoder-std", type=_number_list, metavar="S1,S2,...",
                       help="VAE: fixed encoder stds (one value, or one per latent dimension); default learnable")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="collapsekit",
        description="Detect, predict and explain posterior collapse in VAEs, CVAEs and hierarchical VAEs.")
    parser.add_argument("--version", action="version", version=f"collapsekit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    predict = verbs.add_parser("predict", help="predict collapse from the data before training (closed forms)",
                               description="Closed-form optimum of the linear model on your data: which latent "
                                           "dimensions collapse, their KL (nats) and critical β.")
    predict.add_argument("model", choices=sorted(_GRID_PARAMETERS))
    _add_data_options(predict)
    _add_hyper_options(predict)
    out = predict.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the prediction(s) as JSON instead of tables")
    out.add_argument("--plot", metavar="FILE.png", help="draw the spectrum against the collapse threshold")
    out.add_argument("--save", metavar="FILE.json", help="also write the JSON to this file (atomically)")
    out.add_argument("--recommend", type=int, metavar="K",
                     help="also print the largest β (β2 for the MHVAE) that keeps K dimensions active")
    predict.set_defaults(handler=_run_predict)

    verify = verbs.add_parser("verify", help="check the closed form by minimising the full loss numerically",
                              description="Minimise the linear model's full loss (float64, multi-start L-BFGS) "
                                          "and compare with the closed form. Exit 0 if they agree, 1 if not.")
    verify.add_argument("model", choices=sorted(_GRID_PARAMETERS))
    _add_data_options(verify)
    _add_hyper_options(verify)
    verify.add_argument("--starts", type=int, default=8, help="random starts of L-BFGS (default 8)")
    verify.add_argument("--rtol", type=_number, default=1e-6, help="relative loss tolerance (default 1e-6)")
    verify.add_argument("--json", action="store_true", help="print the result(s) as JSON")
    verify.set_defaults(handler=_run_verify)

    train = verbs.add_parser("train", help="train a VAE, CVAE or hierarchical VAE into a run directory",
                             description="Train a model; writes config.yaml, metrics.jsonl (per epoch, nats) and "
                                         "checkpoints/ (safetensors + JSON) to --out. Every flag has a config key "
                                         "(shown in brackets); flags override --config.")
    _add_train_options(train)
    train.set_defaults(handler=_run_train)

    diagnose = verbs.add_parser(
        "diagnose", help="measure collapse in a trained run and explain it (terminal, JSON, Markdown, HTML)",
        description="Load a run directory (its latest checkpoint) or one checkpoint of it, measure every latent "
                    "level (KL per dimension, active units, MI, (ε,δ)-collapse, IS log-likelihood), set the "
                    "linear theory beside the measurement, and write report.json, report.md and report.html.")
    diagnose.add_argument("run", metavar="RUN_DIR", help="a run directory, or RUN_DIR/checkpoints/epoch-NNNNNN")
    diagnose.add_argument("--out", metavar="DIR", help="where the reports go (default RUN_DIR/diagnosis)")
    diagnose.add_argument("--part", choices=["train", "test"],
                          help="evaluate on that part of the run's seeded train/test split (default: the data "
                               "the run trained on)")
    diagnose.add_argument("--samples", type=int, default=1000, metavar="S",
                          help="importance samples per example for the log-likelihood (default 1000)")
    diagnose.add_argument("--batch-size", type=int, default=1024, metavar="B", help="examples per pass (default 1024)")
    diagnose.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo estimates (default 0)")
    diagnose.add_argument("--no-theory", action="store_true", help="skip the linear theory's prediction")
    diagnose.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    diagnose.set_defaults(handler=_run_diagnose)

    demo = verbs.add_parser("demo", help="the main job on the embedded digits data: CVAE collapse across β",
                            description="Predict CVAE collapse on scikit-learn's digits (quadrant split) for "
                                        "a β grid, print the tables and write the plot.")
    demo.add_argument("--out", default="demo-output", metavar="DIR", help="output folder (default demo-output)")
    demo.set_defaults(handler=_run_demo)

    # Neither module imports torch at import time: the parser stays fast for every verb.
    from collapsekit.experiments.presets import add_reproduce_parser
    from collapsekit.experiments.sweep import add_sweep_parser

    add_sweep_parser(verbs)
    add_reproduce_parser(verbs)
    return parser


# Flags of `train`: (flag, config key, argparse keyword arguments).
_TRAIN_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--data", "data.spec", {"metavar": "SPEC", "help": "data source (default digits)"}),
    ("--split", "data.split", {"choices": ["quadrants"], "help": "CVAE view: quadrant split"}),
    ("--condition", "data.condition", {"choices": ["label"], "help": "CVAE view: one-hot label as x"}),
    ("--digit", "data.digit", {"type": int, "metavar": "N", "help": "keep only label N"}),
    ("--part", "data.part", {"choices": ["train", "test"], "help": "one part of a seeded train/test split"}),
    ("--test-fraction", "data.test_fraction", {"type": _number, "metavar": "F"}),
    ("--model", "model.kind", {"choices": ["vae", "cvae", "hvae"]}),
    ("--arch", "model.arch", {"choices": ["linear", "mlp", "conv"]}),
    ("--latent-dims", "model.latent_dims", {"type": _int_list, "metavar": "D[,D2,...]",
                                            "help": "latent size, one per level (hvae: ≥ 2)"}),
    ("--hidden", "model.hidden", {"type": _int_list, "metavar": "H[,H2,...]", "help": "MLP hidden sizes"}),
    ("--activation", "model.activation", {"choices": ["relu", "tanh"]}),
    ("--mean-activation", "model.mean_activation", {"choices": ["none", "relu", "tanh", "sigmoid"],
                                                    "help": "squash every latent mean"}),
    ("--out-activation", "model.out_activation", {"choices": ["none", "relu", "tanh", "sigmoid"],
                                                  "help": "squash the decoder's output mean"}),
    ("--channels", "model.channels", {"type": _int_list, "metavar": "C1,C2", "help": "conv channels"}),
    ("--init-std", "model.init_std", {"type": _number, "metavar": "S",
                                      "help": "starting value of a learnable encoder std"}),
    ("--likelihood", "model.likelihood", {"choices": ["gaussian", "bernoulli"]}),
    ("--eta-enc", "model.eta_enc", {"type": _number, "metavar": "E", "help": "prior std"}),
    ("--eta-dec", "model.eta_dec", {"type": _number, "metavar": "E", "help": "decoder std"}),
    ("--learn-eta-dec", "model.learn_eta_dec", {"action": "store_const", "const": True}),
    ("--encoder-std", "model.encoder_std", {"metavar": "S", "help": "'data', 'learnable' or a fixed std"}),
    ("--sigma1", "model.sigma1", {"metavar": "S", "help": "hvae: z1 std: a fixed value, 'learnable' or 'data'"}),
    ("--sigma2", "model.sigma2", {"metavar": "S", "help": "hvae: upper-level std: 'learnable', 'data' or a value"}),
    ("--objective", "objective.name", {"choices": ["elbo", "iwae", "infovae"]}),
    ("--beta", "objective.beta", {"type": _number_list, "metavar": "B[,B2,...]",
                                  "help": "true KL weight, one for all levels or one per level"}),
    ("--free-bits", "objective.free_bits", {"type": _number, "metavar": "λ", "help": "nats per dimension"}),
    ("--k", "objective.k", {"type": int, "help": "IWAE samples"}),
    ("--alpha", "objective.alpha", {"type": _number, "help": "InfoVAE α"}),
    ("--lambda", "objective.lambda", {"type": _number, "help": "InfoVAE λ"}),
    ("--schedule", "schedule.name", {"choices": ["constant", "linear", "sigmoid", "cyclical", "capacity"],
                                     "help": "schedule of the factor on β"}),
    ("--schedule-set", "schedule.settings", {"metavar": "KEY=VALUE,...", "type": lambda t: _key_values(t),
                                             "help": "schedule settings, e.g. warmup_steps=1000"}),
    ("--optimizer", "optim.name", {"choices": ["adam", "sgd"]}),
    ("--lr", "optim.lr", {"type": _number}),
    ("--momentum", "optim.momentum", {"type": _number}),
    ("--weight-decay", "optim.weight_decay", {"type": _number}),
    ("--grad-clip", "optim.grad_clip", {"type": _number, "metavar": "NORM"}),
    ("--lr-schedule", "optim.lr_schedule", {"choices": ["constant", "cosine"]}),
    ("--epochs", "train.epochs", {"type": int, "metavar": "N"}),
    ("--batch-size", "train.batch_size", {"type": int, "metavar": "B"}),
    ("--seed", "train.seed", {"type": int}),
    ("--accelerator", "train.accelerator", {"help": "cpu, gpu, auto, ... (Lightning Fabric)"}),
    ("--devices", "train.devices", {"help": "number of devices, or 'auto'"}),
    ("--num-nodes", "train.num_nodes", {"type": int}),
    ("--strategy", "train.strategy", {"help": "auto, ddp, ddp_spawn, ... (Lightning Fabric)"}),
    ("--precision", "train.precision", {"choices": ["32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true",
                                                    "16-true", "transformer-engine", "transformer-engine-float16"],
                                        "help": "Lightning Fabric's precision (default 32-true)"}),
    ("--checkpoint-every", "train.checkpoint_every", {"type": int, "metavar": "N",
                                                      "help": "a checkpoint every N epochs and at the last"}),
    ("--keep-checkpoints", "train.keep_checkpoints", {"type": int, "metavar": "K",
                                                      "help": "keep the newest K checkpoints (default 2)"}),
    ("--logger", "train.loggers", {"action": "append", "choices": ["csv", "tensorboard"]}),
    ("--no-progress", "train.progress", {"action": "store_const", "const": False}),
    ("--no-monitor", "train.monitor", {"action": "store_const", "const": False,
                                       "help": "no collapse monitor (per-epoch active units, MI, warnings)"}),
)


def _key_values(text: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE")
        settings[key.strip()] = _parse_scalar(value.strip())
    return settings


def _parse_scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="RUN.yaml", help="a run configuration (YAML); flags override it")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    for flag, key, options in _TRAIN_FLAGS:
        options = dict(options)
        options["help"] = (options.get("help", "") + f" [{key}]").strip()
        if "choices" not in options and "action" not in options:
            options.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(flag, dest=key.replace(".", "__"), default=None, **options)


def _run_train(args: argparse.Namespace) -> int:
    from collapsekit import terminal
    from collapsekit.training import resolve_config, resume_hint, train

    overrides = {key: getattr(args, key.replace(".", "__")) for _, key, _ in _TRAIN_FLAGS}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    for key in ("model.sigma2", "model.encoder_std"):   # a number or a word
        if key in overrides:
            overrides[key] = _parse_scalar(overrides[key])
    if isinstance(overrides.get("objective.beta"), list) and len(overrides["objective.beta"]) == 1:
        overrides["objective.beta"] = overrides["objective.beta"][0]
    config = resolve_config(args.out, config=args.config, overrides=overrides, resume=args.resume)
    try:
        result = train(config, args.out, resume=args.resume)
    except KeyboardInterrupt:
        print(f"collapsekit: interrupted; {resume_hint(args.out)}", file=sys.stderr)
        return 130
    terminal.print_training_summary(result)
    return 0


def _run_diagnose(args: argparse.Namespace) -> int:
    from collapsekit import terminal
    from collapsekit.diagnostics import diagnose_run
    from collapsekit.viz.report import write_reports

    for name in ("samples", "batch_size"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    diagnosis = diagnose_run(args.run, part=args.part, n_samples=args.samples, batch_size=args.batch_size,
                             seed=args.seed, theory=not args.no_theory)
    out = Path(args.out) if args.out else diagnosis.run_dir / "diagnosis"
    paths = write_reports(diagnosis.report, out, model=diagnosis.model, x=diagnosis.data.x, y=diagnosis.data.y,
                          image_shape=diagnosis.image_shape, merge=diagnosis.merge)
    if args.json:
        print(json.dumps(diagnosis.report.to_dict(), indent=2))
    else:
        terminal.print_collapse_report(diagnosis.report)
        terminal.console().print("reports: " + ", ".join(str(p) for p in paths.values()))
    return 0


# -- shared steps ---------------------------------------------------------------------------------
def _load_moments(args: argparse.Namespace):
    from collapsekit.data import apply_views, load
    from collapsekit.theory import Moments

    if args.model != "cvae" and (args.split or args.condition):
        raise ParameterError(f"--split and --condition make (x, y) pairs for the CVAE; the {args.model} "
                             "models the data alone")
    dataset = apply_views(load(args.data), split=args.split, condition=args.condition, digit=args.digit,
                          part=args.part, test_fraction=args.test_fraction, seed=args.seed)
    if args.model == "cvae":
        if dataset.y is None:
            raise ParameterError("the CVAE needs (x, y) pairs: add --split quadrants or --condition label, "
                                 "or give data with a y array")
        return dataset, Moments.from_data(dataset.x, dataset.y)
    return dataset, Moments.from_data(dataset.x)


def _settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every combination of the hyper-parameter values given (a grid), as keyword arguments."""
    names = _GRID_PARAMETERS[args.model]
    for flag, value in (("--latent-dims", args.latent_dims), ("--latent-dim", args.latent_dim)):
        wanted = "--latent-dims" if args.model == "mhvae" else "--latent-dim"
        if value is not None and flag != wanted:
            raise ParameterError(f"{flag} does not apply to the {args.model}; use {wanted}")
    for name in _ALL_GRID_PARAMETERS:
        if name not in names and getattr(args, name) is not None:
            raise ParameterError(f"{_flag(name)} does not apply to the {args.model}")
    if args.encoder_std is not None and args.model != "vae":
        raise ParameterError("--encoder-std applies to the VAE only (use --sigma1/--sigma2 for the MHVAE)")
    grids = [[(name, value) for value in (getattr(args, name) or [_default(args.model, name)])] for name in names]
    fixed: dict[str, Any]
    if args.model == "mhvae":
        dims = args.latent_dims or [16, 16]
        if len(dims) != 2:
            raise ParameterError(f"--latent-dims takes two sizes D1,D2, got {len(dims)}")
        fixed = {"latent_dims": tuple(dims)}
    else:
        fixed = {"latent_dim": 16 if args.latent_dim is None else args.latent_dim}
        if args.model == "vae":
            fixed["encoder_std"] = args.encoder_std
    return [fixed | dict(combo) for combo in itertools.product(*grids)]


# -- predict --------------------------------------------------------------------------------------
def _run_predict(args: argparse.Namespace) -> int:
    from collapsekit.theory import predict, recommend_beta

    settings = _settings(args)
    dataset, moments = _load_moments(args)
    predictions = [predict(args.model, moments, **kwargs) for kwargs in settings]
    recommendation = None
    if args.recommend is not None:
        kwargs = dict(settings[0])
        recommendation = recommend_beta(moments, args.model, target_active=args.recommend, **kwargs)
    if args.plot:
        from collapsekit.viz import plot_spectrum

        plot_spectrum(predictions, args.plot, title=f"{args.model.upper()} on {dataset.name}: "
                                                    "θ against the collapse threshold")
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
    from collapsekit import terminal

    terminal.print_predictions(predictions, data_name=f"{dataset.name} ({dataset.n} examples)")
    if recommendation is not None:
        terminal.print_recommendation(args.model, args.recommend, recommendation)
    for kind, path in (("plot", args.plot), ("predictions", args.save)):
        if path:
            terminal.console().print(f"{kind} written to [bold]{path}[/bold]")
    return 0


# -- verify ---------------------------------------------------------------------------------------
def _run_verify(args: argparse.Namespace) -> int:
    from collapsekit.theory.verify import verify

    from collapsekit import terminal

    if args.starts < 1:
        raise ParameterError(f"--starts must be ≥ 1, got {args.starts}")
    settings = _settings(args)
    _, moments = _load_moments(args)
    results = []
    with terminal.progress(len(settings) * args.starts, "L-BFGS starts", quiet=args.json) as advance:
        for kwargs in settings:
            results.append(verify(args.model, moments, starts=args.starts, seed=args.seed, rtol=args.rtol,
                                  on_start_done=advance, **kwargs))
    if args.json:
        payload = [r.to_dict() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, allow_nan=False))
    else:
        terminal.print_verifications(results)
    return 0 if all(r.agrees for r in results) else EXIT_DISAGREES


# -- demo -----------------------------------------------------------------------------------------
DEMO_BETAS = "0.01,0.03,0.1,0.3,1"


DEMO_TRAIN_BETA = 0.1
DEMO_IMPORTANCE_SAMPLES = 200


def _run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    predict_args = ["predict", "cvae", "--data", "digits", "--split", "quadrants", "--latent-dim", "16",
                    "--beta", DEMO_BETAS, "--plot", str(out / "cvae-digits-beta-grid.png"),
                    "--save", str(out / "cvae-digits-beta-grid.json")]
    from collapsekit import terminal

    console = terminal.console()
    console.rule("collapsekit demo: CVAE on scikit-learn digits (x = bottom-left quadrant, y = the rest)")
    console.print("$ collapsekit " + " ".join(predict_args))
    status = main(predict_args)
    if status != 0:
        return status
    return _demo_train(out / "cvae-digits-run")


def _demo_train(run_dir: Path) -> int:
    """Train the linear CVAE the prediction describes and set its measured KL beside the predicted one."""
    import shutil

    from collapsekit import terminal
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
    terminal.print_measured_against_predicted(measured, prediction, run_dir)
    report_dir = run_dir.parent / "diagnosis"
    terminal.console().rule("diagnosing the trained CVAE (collapsekit diagnose)")
    status = main(["diagnose", str(run_dir), "--out", str(report_dir), "--samples", str(DEMO_IMPORTANCE_SAMPLES)])
    if status == 0:
        terminal.console().print(f"[bold]HTML report:[/bold] {(report_dir / 'report.html').resolve()}")
    return status


# -- entry point ----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 verification disagrees, 2 bad input)."""
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


if __name__ == "__main__":
    entry_point()
