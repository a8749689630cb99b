"""``collapsekit train``: a run directory from a configuration and flags (every flag has a config key)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from collapsekit.cli.options import RegisteredNames, int_list, key_values, number, number_list, parse_value

# Flags of `train`: (flag, config key, argparse keyword arguments).
TRAIN_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--data", "data.spec", {"metavar": "SPEC", "help": "data source"}),
    ("--split", "data.split", {"choices": ["quadrants"], "help": "CVAE view: quadrant split"}),
    ("--condition", "data.condition", {"choices": ["label"], "help": "CVAE view: one-hot label as x"}),
    ("--digit", "data.digit", {"type": int, "metavar": "N", "help": "keep only label N"}),
    ("--part", "data.part", {"choices": ["train", "test"], "help": "one part of a seeded train/test split"}),
    ("--test-fraction", "data.test_fraction", {"type": number, "metavar": "F", "help": "test share of the split"}),
    ("--val-fraction", "data.val_fraction", {"type": number, "metavar": "F",
                                             "help": "hold out this share of the training rows (those --part and "
                                                     "--test-fraction leave) to validate on every epoch"}),
    ("--val-seed", "data.val_seed", {"type": int, "metavar": "S", "help": "seed of the validation split"}),
    ("--model", "model.kind", {"choices": RegisteredNames("collapsekit.training.config:model_kinds"), "metavar": "KIND",
                               "help": "model family: %(choices)s"}),
    ("--arch", "model.arch", {"choices": ["linear", "mlp", "conv"], "help": "encoder and decoder family"}),
    ("--latent-dims", "model.latent_dims", {"type": int_list, "metavar": "D[,D2,...]",
                                            "help": "latent size, one per level (hvae: ≥ 2)"}),
    ("--hidden", "model.hidden", {"type": int_list, "metavar": "H[,H2,...]", "help": "MLP hidden sizes"}),
    ("--activation", "model.activation", {"choices": ["relu", "tanh"], "help": "hidden activation"}),
    ("--mean-activation", "model.mean_activation", {"choices": ["none", "relu", "tanh", "sigmoid"],
                                                    "help": "squash every latent mean"}),
    ("--out-activation", "model.out_activation", {"choices": ["none", "relu", "tanh", "sigmoid"],
                                                  "help": "squash the decoder's output mean"}),
    ("--channels", "model.channels", {"type": int_list, "metavar": "C1,C2", "help": "conv channels"}),
    ("--init-std", "model.init_std", {"type": number, "metavar": "S",
                                      "help": "starting value of a learnable encoder std"}),
    ("--likelihood", "model.likelihood", {"choices": ["gaussian", "bernoulli"], "help": "decoder likelihood"}),
    ("--eta-enc", "model.eta_enc", {"type": number, "metavar": "E", "help": "prior std"}),
    ("--eta-dec", "model.eta_dec", {"type": number, "metavar": "E", "help": "decoder std"}),
    ("--learn-eta-dec", "model.learn_eta_dec", {"action": "store_const", "const": True,
                                              "help": "learn the decoder std"}),
    ("--encoder-std", "model.encoder_std", {"metavar": "S", "help": "'data', 'learnable' or a fixed std"}),
    ("--sigma1", "model.sigma1", {"metavar": "S", "help": "hvae: z1 std: a fixed value, 'learnable' or 'data'"}),
    ("--sigma2", "model.sigma2", {"metavar": "S", "help": "hvae: upper-level std: 'learnable', 'data' or a value"}),
    ("--objective", "objective.name", {"choices": RegisteredNames("collapsekit.training.config:objective_names"),
                                       "metavar": "NAME", "help": "objective: %(choices)s"}),
    ("--beta", "objective.beta", {"type": number_list, "metavar": "B[,B2,...]",
                                  "help": "true KL weight, one for all levels or one per level"}),
    ("--free-bits", "objective.free_bits", {"type": number, "metavar": "λ", "help": "nats per dimension"}),
    ("--k", "objective.k", {"type": int, "help": "IWAE samples"}),
    ("--alpha", "objective.alpha", {"type": number, "help": "InfoVAE α"}),
    ("--lambda", "objective.lambda", {"type": number, "help": "InfoVAE λ"}),
    ("--schedule", "schedule.name", {"choices": ["constant", "linear", "sigmoid", "cyclical", "capacity"],
                                     "help": "schedule of the factor on β"}),
    ("--schedule-set", "schedule.settings", {"metavar": "KEY=VALUE,...", "type": key_values,
                                             "help": "schedule settings, e.g. warmup_steps=1000"}),
    ("--optimizer", "optim.name", {"choices": ["adam", "sgd"], "help": "optimiser"}),
    ("--lr", "optim.lr", {"type": number, "help": "learning rate"}),
    ("--momentum", "optim.momentum", {"type": number, "help": "SGD momentum"}),
    ("--weight-decay", "optim.weight_decay", {"type": number, "help": "L2 weight decay"}),
    ("--grad-clip", "optim.grad_clip", {"type": number, "metavar": "NORM", "help": "clip the gradient norm"}),
    ("--lr-schedule", "optim.lr_schedule", {"choices": ["constant", "cosine"],
                                         "help": "learning-rate schedule (cosine: decays to 0)"}),
    ("--epochs", "train.epochs", {"type": int, "metavar": "N", "help": "epochs to train"}),
    ("--batch-size", "train.batch_size", {"type": int, "metavar": "B", "help": "examples per step"}),
    ("--seed", "train.seed", {"type": int, "help": "seed of the weights, the data order, the noise and "
                                                        "the train/test split"}),
    ("--accelerator", "train.accelerator", {"help": "cpu, gpu, auto, ... (Lightning Fabric)"}),
    ("--devices", "train.devices", {"help": "number of devices, or 'auto'"}),
    ("--num-nodes", "train.num_nodes", {"type": int, "help": "machines (Lightning Fabric)"}),
    ("--strategy", "train.strategy", {"help": "auto, ddp, ddp_spawn, ... (Lightning Fabric)"}),
    ("--precision", "train.precision", {"choices": ["32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true",
                                                    "16-true", "transformer-engine", "transformer-engine-float16"],
                                        "help": "Lightning Fabric's precision"}),
    ("--checkpoint-every", "train.checkpoint_every", {"type": int, "metavar": "N",
                                                      "help": "a checkpoint every N epochs and at the last"}),
    ("--keep-checkpoints", "train.keep_checkpoints", {"type": int, "metavar": "K",
                                                      "help": "keep the newest K checkpoints"}),
    ("--early-stop", "train.early_stop", {"type": int, "metavar": "PATIENCE",
                                          "help": "stop when the validation loss has not improved for PATIENCE "
                                                  "epochs (needs --val-fraction)"}),
    ("--logger", "train.loggers", {"action": "append", "choices": ["csv", "tensorboard"],
                                  "help": "also log to (repeat for both)"}),
    ("--no-progress", "train.progress", {"action": "store_const", "const": False,
                                       "help": "no progress bar or per-epoch lines on stderr"}),
    ("--no-monitor", "train.monitor", {"action": "store_const", "const": False,
                                       "help": "no collapse monitor (per-epoch active units, MI, warnings)"}),
    ("--min-active", "train.min_active", {"type": int, "metavar": "K",
                                          "help": "warn as soon as the monitor's forecast says the run ends with "
                                                  "fewer than K active latent dimensions (of the top level)"}),
)


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``train`` verb to the CLI's subparsers."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "train", help="train a VAE, CVAE or hierarchical VAE into a run directory",
        description="Train a model; writes config.yaml, metrics.jsonl (per epoch, nats) and checkpoints/ "
                    "(safetensors + JSON) to --out. Every flag has a config key (shown in brackets, with its "
                    "default); flags override --config.",
        formatter_class=ConfigDefaultsFormatter)
    add_options(parser)
    parser.set_defaults(handler=run)
    return parser


def add_options(parser: argparse.ArgumentParser) -> None:
    """--config, --out, --resume and one flag per configuration key (:data:`TRAIN_FLAGS`)."""
    parser.add_argument("--config", metavar="RUN.yaml", help="a run configuration (YAML); flags override it")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    for flag, key, options in TRAIN_FLAGS:
        options = dict(options)
        options["help"] = options.get("help", "")   # ConfigDefaultsFormatter adds "[key, default VALUE]"
        if "choices" not in options and "action" not in options:
            options.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(flag, dest=key.replace(".", "__"), default=None, **options)


#: dest of each configuration flag → its dotted configuration key.
FLAG_KEYS = {key.replace(".", "__"): key for _, key, _ in TRAIN_FLAGS}


def config_default(key: str) -> str:
    """The default of a dotted configuration key, read from the typed configuration, as a flag would take it."""
    from collapsekit.training.config import RunConfig   # at --help time only: the package imports torch

    section, _, name = key.partition(".")
    values = RunConfig().model_dump(by_alias=True, mode="json")[section]
    value = values[name]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


class ConfigDefaultsFormatter(argparse.HelpFormatter):
    """Ends the help of every configuration flag with ``[key, default VALUE]``, the default read from
    :class:`~collapsekit.training.config.RunConfig` (the flags themselves default to "not given", so that a
    ``--config`` file's values stand)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        key = FLAG_KEYS.get(action.dest)
        if key is None:
            return action.help
        default = config_default(key).replace("%", "%%")
        const = getattr(action, "const", None)
        sets = f"; this flag sets {str(const).lower()}" if isinstance(const, bool) else ""
        return f"{action.help or ''} [{key}, default {default}{sets}]".strip()


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the run and print its summary."""
    from collapsekit._io import check_writable
    from collapsekit.cli import terminal
    from collapsekit.training import resolve_config, resume_hint, train
    from collapsekit.training.evaluation import run_notes

    check_writable(args.out, what="--out")
    overrides = {key: getattr(args, key.replace(".", "__")) for _, key, _ in TRAIN_FLAGS}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    for key in ("model.sigma2", "model.encoder_std"):   # a number or a word
        if key in overrides:
            overrides[key] = parse_value(overrides[key])
    if isinstance(overrides.get("objective.beta"), list) and len(overrides["objective.beta"]) == 1:
        overrides["objective.beta"] = overrides["objective.beta"][0]
    config = resolve_config(args.out, config=args.config, overrides=overrides, resume=args.resume)
    for note in run_notes(config):                 # once at the start; the summary says it again
        print(f"collapsekit: note: {note}", file=sys.stderr)
    try:
        result = train(config, args.out, resume=args.resume)
    except KeyboardInterrupt:
        print(f"collapsekit: interrupted; {resume_hint(args.out)}", file=sys.stderr)
        return 130
    terminal.print_training_summary(result)
    return 0
