"""Boundary checks for objective and schedule settings: one line, naming the field and the value."""

from __future__ import annotations

import math
from numbers import Integral, Real

from collapsekit.errors import ParameterError


def real(name: str, value: object) -> float:
    """``value`` as a finite float, or a :class:`ParameterError`."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    return number


def non_negative(name: str, value: object) -> float:
    """A finite float ≥ 0."""
    number = real(name, value)
    if number < 0:
        raise ParameterError(f"{name} must be ≥ 0, got {value!r}")
    return number


def positive(name: str, value: object) -> float:
    """A finite float > 0."""
    number = real(name, value)
    if number <= 0:
        raise ParameterError(f"{name} must be > 0, got {value!r}")
    return number


def integer(name: str, value: object, minimum: int) -> int:
    """An integer ≥ ``minimum``; a float with an integral value (``1e4``) is accepted, since YAML and
    command lines often write step counts that way."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, Integral):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ParameterError(f"{name} must be ≥ {minimum}, got {value!r}")
    return int(value)
