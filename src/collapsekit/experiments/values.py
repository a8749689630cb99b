"""A configuration value as text and back: the one rule for values typed on the command line.

``sweep --grid KEY=V1,V2``, ``train --schedule-set KEY=VALUE`` and the word-or-number flags of ``train``
read their values with :func:`parse_value`; :func:`format_value` writes a value so that it reads back
(a sweep's point directories, its ``summary.csv``).
"""

from __future__ import annotations

import os
from typing import Any


def parse_value(text: str) -> Any:
    """A value from the command line: an integer, else a float, else ``true``/``false`` (any case) → a bool,
    ``none``/``null`` → None, ``A:B`` (numbers only) → a list, else the word itself.

    >>> parse_value("3"), parse_value("0.5"), parse_value("True"), parse_value("null"), parse_value("1:2")
    (3, 0.5, True, None, [1, 2])
    """
    value = text.strip()
    if ":" in value:
        parts = [parse_value(part) for part in value.split(":")]
        if all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
            return parts
        return value
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for number in (int, float):
        try:
            return number(value)
        except ValueError:
            pass
    return value


def format_value(value: Any) -> str:
    """The shortest text that reads back as ``value`` (the float ``1.0`` and the int ``1`` both give ``1``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    if isinstance(value, (list, tuple)):
        return ":".join(format_value(v) for v in value)
    return str(value).replace(os.sep, "_")      # never a nested directory
