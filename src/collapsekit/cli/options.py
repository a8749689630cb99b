"""What several verbs share: exit statuses, argument types, the value parser, the data options."""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Iterator
from typing import Any, NoReturn

# The one parser of a configuration value typed on the command line, shared with `sweep --grid`:
# int, float, true/false (a bool), none/null (None), A:B (a list of numbers), else the word itself.
from collapsekit.experiments.values import parse_value

__all__ = ["EXIT_BAD_INPUT", "EXIT_DISAGREES", "OneLineParser", "RegisteredNames", "add_data_options",
           "int_list", "key_values", "number", "number_list", "parse_value", "positive_number",
           "sigma2_list"]

#: Exit statuses: bad input (argparse uses 2 for usage errors as well), and `verify` disagreeing.
EXIT_BAD_INPUT = 2
EXIT_DISAGREES = 1


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types ------------------------------------------------------------------------------
class RegisteredNames:
    """The ``choices`` of an option whose values are the names of a registry (model families, objectives).

    The names are read when a value is checked or the help is shown, not when the parser is built: the
    registries import torch (the parser must not), and a family or objective registered after the parser
    was built is a choice too. ``source`` is ``"module:function"``, a function that returns the names.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def names(self) -> tuple[str, ...]:
        module, _, function = self.source.partition(":")
        return tuple(getattr(importlib.import_module(module), function)())

    def __contains__(self, value: object) -> bool:
        return value in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _items(text: str) -> list[str]:
    """The comma-separated items of ``text``; an empty item (``0.5,,1``, a trailing comma) is refused."""
    items = [part.strip() for part in text.split(",")]
    empty = [i for i, item in enumerate(items, start=1) if not item]
    if empty:
        where = "an empty value" if len(items) == 1 else f"an empty item (item {empty[0]} of {len(items)})"
        raise argparse.ArgumentTypeError(f"{text!r} has {where}: separate values by single commas")
    return items


def number(text: str) -> float:
    """A finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_number(text: str) -> float:
    """A finite float > 0."""
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def number_list(text: str) -> list[float]:
    """Comma-separated finite floats (at least one; no empty item)."""
    return [number(part) for part in _items(text)]


def int_list(text: str) -> list[int]:
    """Comma-separated integers (no empty item)."""
    try:
        return [int(part) for part in _items(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def sigma2_list(text: str) -> list[float | None]:
    """Comma-separated fixed stds or ``learnable`` (None); no empty item."""
    return [None if part == "learnable" else number(part) for part in _items(text)]


# -- values ---------------------------------------------------------------------------------------
def key_values(text: str) -> dict[str, Any]:
    """``"a=1,b=x,c=true"`` → ``{"a": 1, "b": "x", "c": True}`` (values by :func:`parse_value`)."""
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE")
        settings[key.strip()] = parse_value(value)
    return settings


# -- option groups --------------------------------------------------------------------------------
def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data and its views (split, condition, digit, part of a seeded split)."""
    from collapsekit.data import SPEC_HELP

    group = parser.add_argument_group("data", SPEC_HELP)
    group.add_argument("--data", default="digits", metavar="SPEC", help="data source (default: digits)")
    group.add_argument("--split", choices=["quadrants"],
                       help="CVAE view: x = bottom-left image quadrant, y = the other three")
    group.add_argument("--condition", choices=["label"], help="CVAE view: x = one-hot label, y = the image")
    group.add_argument("--digit", type=int, metavar="N", help="keep only examples with label N")
    group.add_argument("--part", choices=["train", "test"], help="keep one part of a seeded train/test split")
    group.add_argument("--test-fraction", type=number, default=0.2, metavar="F",
                       help="test share of the split (default 0.2)")
    group.add_argument("--seed", type=int, default=0, help="seed of the split and of random starts (default 0)")
