"""What `predict` and `verify` share: the hyper-parameter options (a grid), the data's moments."""

from __future__ import annotations

import argparse
import inspect
import itertools
from typing import Any

from collapsekit.cli.options import int_list, number_list, sigma2_list
from collapsekit.errors import ParameterError

#: Hyper-parameters a grid can vary, per model; their defaults are read from the predict_* signatures.
GRID_PARAMETERS: dict[str, tuple[str, ...]] = {
    "vae": ("beta", "eta_enc", "eta_dec"),
    "cvae": ("beta", "eta_enc", "eta_dec"),
    "mhvae": ("beta1", "beta2", "eta_enc", "eta_dec", "sigma1", "sigma2"),
}
ALL_GRID_PARAMETERS = ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma1", "sigma2")


def flag(name: str) -> str:
    """The option of a keyword: ``eta_dec`` → ``--eta-dec``."""
    return "--" + name.replace("_", "-")


def default(model: str, name: str) -> Any:
    """The default of one keyword of the model's closed form."""
    from collapsekit.theory import PREDICTORS

    return inspect.signature(PREDICTORS[model]).parameters[name].default


def add_hyper_options(parser: argparse.ArgumentParser) -> None:
    """The hyper-parameters of the linear models; comma-separated values form a grid."""
    group = parser.add_argument_group("hyper-parameters (comma-separated values form a grid)")
    group.add_argument("--latent-dim", type=int, metavar="K", help="latent size (VAE, CVAE; default 16)")
    group.add_argument("--latent-dims", type=int_list, metavar="D1,D2", help="MHVAE sizes of z1,z2 (default 16,16)")
    group.add_argument("--beta", type=number_list, metavar="B", help="KL weight β, the true weight (default 1)")
    group.add_argument("--beta1", type=number_list, metavar="B", help="MHVAE weight of the z1 term (default 1)")
    group.add_argument("--beta2", type=number_list, metavar="B", help="MHVAE weight of the z2 KL (default 1)")
    group.add_argument("--eta-enc", type=number_list, metavar="E", help="prior std η_enc (default 1)")
    group.add_argument("--eta-dec", type=number_list, metavar="E", help="decoder std η_dec (default 1)")
    group.add_argument("--sigma1", type=number_list, metavar="S", help="MHVAE fixed z1 encoder std (default 0.5)")
    group.add_argument("--sigma2", type=sigma2_list, metavar="S",
                       help="MHVAE z2 encoder std: 'learnable' (default) or a fixed value")
    group.add_argument("--encoder-std", type=number_list, metavar="S1,S2,...",
                       help="VAE: fixed encoder stds (one value, or one per latent dimension); default learnable")


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


def settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every combination of the hyper-parameter values given (a grid), as keyword arguments."""
    names = GRID_PARAMETERS[args.model]
    for given, value in (("--latent-dims", args.latent_dims), ("--latent-dim", args.latent_dim)):
        wanted = "--latent-dims" if args.model == "mhvae" else "--latent-dim"
        if value is not None and given != wanted:
            raise ParameterError(f"{given} does not apply to the {args.model}; use {wanted}")
    for name in ALL_GRID_PARAMETERS:
        if name not in names and getattr(args, name) is not None:
            raise ParameterError(f"{flag(name)} does not apply to the {args.model}")
    if args.encoder_std is not None and args.model != "vae":
        raise ParameterError("--encoder-std applies to the VAE only (use --sigma1/--sigma2 for the MHVAE)")
    grids = [[(name, value) for value in (getattr(args, name) or [default(args.model, name)])] for name in names]
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
