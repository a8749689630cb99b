"""What `predict` and `verify` share: the model's name, the hyper-parameter options (a grid), the data's moments.

The vocabulary is `train`'s: the two-level hierarchical VAE is ``hvae`` and its KL weights are
``--beta B1,B2`` (one per level; one value for both). The theory's closed forms cover the two-level
linear case, which the theory (:mod:`collapsekit.theory`) calls ``mhvae``. The old spellings,
``mhvae`` and ``--beta1``/``--beta2``, still work and print a one-line deprecation note.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import sys
from typing import Any

from collapsekit.cli.options import int_list, number_list, sigma2_list
from collapsekit.errors import ParameterError

#: The models, by their CLI names (those of `train --model`), and the theory's name of each: the built-in model
#: families that a closed form describes, as the registry says (``ModelFamily.closed_form``). Written out
#: here because the registry imports torch, which `predict` and `verify` never need (tests/test_extension.py
#: holds the two equal).
THEORY_NAMES: dict[str, str] = {"vae": "vae", "cvae": "cvae", "hvae": "mhvae"}
#: Deprecated model names → the name to use.
MODEL_ALIASES: dict[str, str] = {"mhvae": "hvae"}

#: Hyper-parameters a grid can vary, in this order; a model's are those its closed form takes
#: (:func:`grid_parameters`), their defaults those of its signature (:func:`default`).
ALL_GRID_PARAMETERS = ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma1", "sigma2")
#: Deprecated flags of the hvae's per-level β (each a grid of its own); ``--beta B1,B2`` replaces them.
LEVEL_BETA_FLAGS = ("beta1", "beta2")


def flag(name: str) -> str:
    """The option of a keyword: ``eta_dec`` → ``--eta-dec``."""
    return "--" + name.replace("_", "-")


def _closed_form_parameters(model: str) -> Any:
    """The keyword parameters of the model's closed form (``model`` by its CLI name)."""
    from collapsekit.theory import PREDICTORS

    return inspect.signature(PREDICTORS[THEORY_NAMES[model]]).parameters


def grid_parameters(model: str) -> tuple[str, ...]:
    """The hyper-parameters a grid can vary for the model (``model`` by its CLI name): those of
    :data:`ALL_GRID_PARAMETERS` its closed form takes."""
    parameters = _closed_form_parameters(model)
    return tuple(name for name in ALL_GRID_PARAMETERS if name in parameters)


def default(model: str, name: str) -> Any:
    """The default of one keyword of the model's closed form (``model`` by its CLI name)."""
    return _closed_form_parameters(model)[name].default


def add_model_argument(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """The positional model name: vae, cvae or hvae (mhvae: deprecated); ``optional``: it may be left out (where
    a run configuration can name the model instead)."""
    names = sorted(THEORY_NAMES)
    parser.add_argument("model", choices=sorted([*names, *MODEL_ALIASES]), metavar="{" + ",".join(names) + "}",
                        nargs="?" if optional else None,
                        help="the linear model (hvae: the two-level hierarchical VAE; 'mhvae' is a deprecated "
                             "spelling)")


def add_hyper_options(parser: argparse.ArgumentParser) -> None:
    """The hyper-parameters of the linear models; comma-separated values form a grid."""
    group = parser.add_argument_group("hyper-parameters (comma-separated values form a grid)")
    group.add_argument("--latent-dim", type=int, metavar="K", help="latent size (VAE, CVAE; default 16)")
    group.add_argument("--latent-dims", type=int_list, metavar="D1,D2", help="hvae sizes of z1,z2 (default 16,16)")
    group.add_argument("--beta", type=number_list, action="append", metavar="B",
                       help="KL weight β, the true weight (default 1); hvae: B1,B2, one per level as in train "
                            "(one value: both levels); repeat --beta for more settings")
    group.add_argument("--beta1", type=number_list, metavar="B", help="deprecated: hvae --beta B1,B2")
    group.add_argument("--beta2", type=number_list, metavar="B", help="deprecated: hvae --beta B1,B2")
    group.add_argument("--eta-enc", type=number_list, metavar="E", help="prior std η_enc (default 1)")
    group.add_argument("--eta-dec", type=number_list, metavar="E", help="decoder std η_dec (default 1)")
    group.add_argument("--sigma1", type=number_list, metavar="S", help="hvae fixed z1 encoder std (default 0.5)")
    group.add_argument("--sigma2", type=sigma2_list, metavar="S",
                       help="hvae z2 encoder std: 'learnable' (default) or a fixed value")
    group.add_argument("--encoder-std", type=number_list, metavar="S1,S2,...",
                       help="VAE: fixed encoder stds (one value, or one per latent dimension); default learnable")


def use_current_names(args: argparse.Namespace) -> list[str]:
    """Replace a deprecated model name by the current one (in ``args``); the deprecated spellings used."""
    used = []
    if args.model in MODEL_ALIASES:
        used.append(f"'{args.model}' is now '{MODEL_ALIASES[args.model]}'")
        args.model = MODEL_ALIASES[args.model]
    if args.model == "hvae" and any(getattr(args, name) is not None for name in LEVEL_BETA_FLAGS):
        used.append("--beta1/--beta2 are now --beta B1,B2")
    return used


def print_deprecation_note(used: list[str]) -> None:
    """One line on stderr naming the deprecated spellings used (nothing when none was)."""
    if used:
        print(f"collapsekit: deprecated: {'; '.join(used)} (the old spellings go in a later release)",
              file=sys.stderr)


def load_moments(args: argparse.Namespace) -> tuple[Any, Any]:
    """The data the options describe, and its moments (of (x, y) for the CVAE)."""
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


def _level_betas(given: list[list[float]]) -> list[tuple[tuple[str, float], ...]]:
    """The hvae's ``--beta`` options → one (β₁, β₂) setting per option."""
    pairs = []
    for values in given:
        if len(values) not in (1, 2):
            raise ParameterError(f"hvae --beta takes B (both levels) or B1,B2 (one per level), got "
                                 f"{len(values)} values; repeat --beta for more settings")
        first, second = (values[0], values[0]) if len(values) == 1 else values
        pairs.append((("beta1", first), ("beta2", second)))
    return pairs


def settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every combination of the hyper-parameter values given (a grid), as keyword arguments of the closed form."""
    names = grid_parameters(args.model)
    for given, value in (("--latent-dims", args.latent_dims), ("--latent-dim", args.latent_dim)):
        wanted = "--latent-dims" if args.model == "hvae" else "--latent-dim"
        if value is not None and given != wanted:
            raise ParameterError(f"{given} does not apply to the {args.model}; use {wanted}")
    per_level = args.model == "hvae" and args.beta is not None
    for name in ALL_GRID_PARAMETERS:
        if name not in names and getattr(args, name) is not None and not (per_level and name == "beta"):
            raise ParameterError(f"{flag(name)} does not apply to the {args.model}")
    if per_level and any(getattr(args, name) is not None for name in LEVEL_BETA_FLAGS):
        raise ParameterError("give the hvae's β as --beta B1,B2 only (--beta1/--beta2 are its deprecated spelling)")
    if args.encoder_std is not None and args.model != "vae":
        raise ParameterError("--encoder-std applies to the VAE only (use --sigma1/--sigma2 for the hvae)")
    values = {"beta": [b for given in args.beta for b in given]} if args.beta is not None else {}
    axes = []
    for name in names:
        if per_level and name in LEVEL_BETA_FLAGS:
            if name == LEVEL_BETA_FLAGS[0]:
                axes.append(_level_betas(args.beta))
            continue
        axes.append([((name, value),) for value in (values.get(name, getattr(args, name))
                                                    or [default(args.model, name)])])
    fixed: dict[str, Any]
    if args.model == "hvae":
        dims = args.latent_dims or [16, 16]
        if len(dims) != 2:
            raise ParameterError(f"--latent-dims takes two sizes D1,D2, got {len(dims)}")
        fixed = {"latent_dims": tuple(dims)}
    else:
        fixed = {"latent_dim": 16 if args.latent_dim is None else args.latent_dim}
        if args.model == "vae":
            fixed["encoder_std"] = args.encoder_std
    return [fixed | dict(pair for axis in combo for pair in axis) for combo in itertools.product(*axes)]
