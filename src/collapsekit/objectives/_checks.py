"""Boundary checks for objective and schedule settings: one line, naming the field and the value."""

from __future__ import annotations

from numbers import Integral

from collapsekit._validation import non_negative, positive, real
from collapsekit.errors import ParameterError

__all__ = ["integer", "non_negative", "positive", "real"]


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
