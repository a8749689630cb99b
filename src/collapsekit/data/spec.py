"""Data spec strings (the CLI's ``--data SPEC``) and the views the CLI can stack on them."""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from collapsekit.data.arrays import ARRAY_SUFFIXES, load_array_file
from collapsekit.data.builtin import load_mnist10k
from collapsekit.data.dataset import Dataset
from collapsekit.data.digits import load_digits
from collapsekit.data.idx import load_mnist
from collapsekit.data.synthetic import correlated_pairs, gaussian, gaussian_decay
from collapsekit.data.views import digit_filter, label_condition, quadrant_split, train_test_split
from collapsekit.errors import DataError

__all__ = ["SPEC_HELP", "apply_views", "load"]

SPEC_HELP = """\
digits                      scikit-learn's 1797 8x8 digits (no download)
mnist10k                    10,000 28x28 MNIST digits bundled with collapsekit (no download)
mnist:DIR[:train|:t10k]     MNIST IDX files in DIR (train-/t10k-images-idx3-ubyte[.gz], or
                            images-idx3-ubyte[.gz]); the training part by default
PATH.npy|.npz|.csv          an array file (also file:PATH); .npz holds x and optionally y, labels
gaussian:eigs=9:4:1,n=5000  Gaussian rows with these second-moment eigenvalues; or
gaussian:d=20,decay=0.7     eigenvalues scale*decay^i; keys n (1000), seed (0), scale (1),
                            rotate (1: random basis), exact (0; 1: X'X/n equals the target)
correlated:rho=1/8,d=128    CVAE pairs y~N(0,I), x=rho*y+sqrt(1-rho^2)*noise; keys n (1000), seed (0)
Numbers accept fractions such as 1/8; lists are separated by ':'."""

_ACCEPTED = "digits, mnist10k, mnist:DIR[:train|:t10k], PATH.npy|.npz|.csv, file:PATH, gaussian:..., correlated:..."
#: Data sets shipped with the software: a bare name, no parameters.
_BUNDLED: dict[str, Callable[[], Dataset]] = {"digits": load_digits, "mnist10k": load_mnist10k}
_GAUSSIAN_KEYS = ("eigs", "d", "decay", "scale", "n", "seed", "exact", "rotate")
_CORRELATED_KEYS = ("rho", "d", "n", "seed")
_DEFAULT_N = 1000
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def load(spec: str | os.PathLike[str]) -> Dataset:
    """Build the data set a spec string describes (see :data:`SPEC_HELP`).

    Parameters
    ----------
    spec : str or path-like
        ``digits``, ``mnist10k``, ``mnist:DIR[:train|:t10k|:test]``, ``PATH.npy|.npz|.csv``, ``file:PATH``,
        ``gaussian:KEY=VALUE,...`` or ``correlated:KEY=VALUE,...``. A path-like object is
        read as an array file.

    Raises
    ------
    DataError
        Unknown scheme, unknown key or bad value (one line, listing what is accepted);
        anything the underlying loader raises (DataFileNotFoundError for missing files).
    """
    if isinstance(spec, os.PathLike):
        return load_array_file(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec must be a non-empty string, got {spec!r} (accepted: {_ACCEPTED})")
    spec = spec.strip()
    scheme, colon, rest = spec.partition(":")
    if spec in _BUNDLED:
        return _BUNDLED[spec]()
    if colon and scheme in _BUNDLED:
        raise DataError(f"data spec {spec!r}: {scheme} takes no parameters")
    if colon and scheme == "mnist":
        return _load_mnist_spec(spec, rest)
    if colon and scheme == "file":
        if not rest.strip():
            raise DataError(f"data spec {spec!r}: file: needs a path")
        return load_array_file(rest)
    if colon and scheme in _BUILDERS:
        return _BUILDERS[scheme](spec, rest)
    if Path(spec).expanduser().is_dir():
        raise DataError(_directory_message(spec))
    if Path(spec).suffix.lower() in ARRAY_SUFFIXES:
        return load_array_file(spec)
    raise DataError(f"unknown data spec {spec!r} (accepted: {_ACCEPTED})")


def _directory_message(spec: str) -> str:
    """Why a directory is not a data spec, and what to write instead (mnist:DIR when it holds IDX files)."""
    folder = Path(spec).expanduser()
    idx = sorted(p.name for p in folder.iterdir() if "-idx" in p.name and "ubyte" in p.name) \
        if _readable(folder) else []
    if idx:
        return f"data spec {spec!r} is a directory; it holds MNIST IDX files ({idx[0]}, ...): use --data mnist:{spec}"
    return (f"data spec {spec!r} is a directory; give a data file in it (PATH.npy, PATH.npz or PATH.csv), "
            f"mnist:DIR for MNIST IDX files, or a built-in source (accepted: {_ACCEPTED})")


def _readable(folder: Path) -> bool:
    try:
        next(iter(folder.iterdir()), None)
    except OSError:
        return False
    return True


def _load_mnist_spec(spec: str, rest: str) -> Dataset:
    directory, part = rest, "train"
    # Only a trailing :train/:t10k/:test picks the part, so directories may contain ':'.
    for candidate in ("train", "t10k", "test"):
        if rest.endswith(":" + candidate):
            directory, part = rest[: -len(candidate) - 1], candidate
            break
    if not directory.strip():
        raise DataError(f"data spec {spec!r}: mnist: needs a directory (mnist:DIR[:train|:t10k])")
    return load_mnist(directory, part)


def _parse_params(spec: str, text: str, accepted: tuple[str, ...]) -> dict[str, str]:
    """``key=value,...`` into a dict, refusing malformed items, unknown and repeated keys."""
    params: dict[str, str] = {}
    if not text.strip():
        return params
    for item in text.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        keys = ", ".join(accepted)
        if not eq or not key or not value:
            raise DataError(f"data spec {spec!r}: expected key=value, got {item.strip()!r} (keys: {keys})")
        if key not in accepted:
            raise DataError(f"data spec {spec!r}: unknown key {key!r} (accepted: {keys})")
        if key in params:
            raise DataError(f"data spec {spec!r}: key {key!r} given twice")
        params[key] = value
    return params


def _fraction(spec: str, key: str, value: str) -> Fraction:
    try:
        return Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise DataError(
            f"data spec {spec!r}: {key}={value!r} is not a number (decimals or fractions like 1/8)"
        ) from None


def _float(spec: str, key: str, value: str) -> float:
    return float(_fraction(spec, key, value))


def _int(spec: str, key: str, value: str, minimum: int) -> int:
    number = _fraction(spec, key, value)
    if number.denominator != 1 or number < minimum:
        raise DataError(f"data spec {spec!r}: {key}={value!r} must be an integer ≥ {minimum}")
    return int(number)


def _bool(spec: str, key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise DataError(f"data spec {spec!r}: {key}={value!r} must be 1/0 (or true/false, yes/no)")


def _float_list(spec: str, key: str, value: str) -> list[float]:
    return [_float(spec, key, item.strip()) for item in value.split(":")]


def _build(spec: str, make: Callable[[], Dataset]) -> Dataset:
    # Domain errors from the generators (rho > 1, negative eigenvalues) get the spec as context.
    try:
        return make()
    except DataError as exc:
        raise DataError(f"data spec {spec!r}: {exc}") from None


def _gaussian_spec(spec: str, text: str) -> Dataset:
    params = _parse_params(spec, text, _GAUSSIAN_KEYS)
    n = _int(spec, "n", params["n"], 1) if "n" in params else _DEFAULT_N
    seed = _int(spec, "seed", params["seed"], 0) if "seed" in params else 0
    exact = _bool(spec, "exact", params["exact"]) if "exact" in params else False
    rotate = _bool(spec, "rotate", params["rotate"]) if "rotate" in params else True
    if ("eigs" in params) == ("d" in params):
        raise DataError(f"data spec {spec!r}: give exactly one of eigs=λ1:λ2:... or d=DIM")
    if "eigs" in params:
        extra = [key for key in ("decay", "scale") if key in params]
        if extra:
            raise DataError(f"data spec {spec!r}: {extra[0]} applies only with d=, not with eigs=")
        eigs = _float_list(spec, "eigs", params["eigs"])
        return _build(spec, lambda: gaussian(eigs, n, seed=seed, rotate=rotate, exact=exact))
    dim = _int(spec, "d", params["d"], 1)
    decay = _float(spec, "decay", params["decay"]) if "decay" in params else 0.7
    scale = _float(spec, "scale", params["scale"]) if "scale" in params else 1.0
    return _build(spec, lambda: gaussian_decay(dim, n, decay=decay, scale=scale, seed=seed, rotate=rotate, exact=exact))


def _correlated_spec(spec: str, text: str) -> Dataset:
    params = _parse_params(spec, text, _CORRELATED_KEYS)
    missing = [key for key in ("rho", "d") if key not in params]
    if missing:
        raise DataError(f"data spec {spec!r}: correlated needs {missing[0]}= (e.g. correlated:rho=1/8,d=128)")
    rho = _float(spec, "rho", params["rho"])
    dim = _int(spec, "d", params["d"], 1)
    n = _int(spec, "n", params["n"], 1) if "n" in params else _DEFAULT_N
    seed = _int(spec, "seed", params["seed"], 0) if "seed" in params else 0
    return _build(spec, lambda: correlated_pairs(rho, n, dim, seed=seed))


_BUILDERS: dict[str, Callable[[str, str], Dataset]] = {"gaussian": _gaussian_spec, "correlated": _correlated_spec}


def apply_views(
    ds: Dataset,
    *,
    split: str | None = None,
    condition: str | None = None,
    digit: int | None = None,
    part: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Apply the CLI's views in a fixed order: digit filter, train/test part, then CVAE pairing.

    Parameters
    ----------
    ds : Dataset
        The loaded data set.
    split : {None, "quadrants"}
        Pair quadrants of each image (:func:`quadrant_split`).
    condition : {None, "label"}
        Pair the one-hot label with the data (:func:`label_condition`); excludes ``split``.
    digit : int or None
        Keep only rows with this label (:func:`digit_filter`).
    part : {None, "train", "test"}
        Keep this part of a seeded :func:`train_test_split`; ``None`` keeps every row.
    test_fraction, seed
        Passed to :func:`train_test_split` when ``part`` is given.
    """
    if split not in (None, "quadrants"):
        raise DataError(f"split must be 'quadrants' or None, got {split!r}")
    if condition not in (None, "label"):
        raise DataError(f"condition must be 'label' or None, got {condition!r}")
    if part not in (None, "train", "test"):
        raise DataError(f"part must be 'train', 'test' or None, got {part!r}")
    if split is not None and condition is not None:
        raise DataError("split='quadrants' and condition='label' both build the CVAE pair; choose one")
    if digit is not None:
        ds = digit_filter(ds, digit)
    if part is not None:
        train, test = train_test_split(ds, test_fraction=test_fraction, seed=seed)
        ds = train if part == "train" else test
    if split == "quadrants":
        ds = quadrant_split(ds)
    elif condition == "label":
        ds = label_condition(ds)
    return ds
