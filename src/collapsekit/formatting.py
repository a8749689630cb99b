"""Numbers as people read them: the one place that decides how a value is printed.

Every report, table and message formats its numbers here, so that they agree — above all on a
missing value, which is always :data:`MISSING`:

- :func:`number`: a measurement in running text or a report cell (Markdown, HTML): 4 significant
  digits, scientific notation outside [10⁻³, 10⁶), a real minus sign;
- :func:`cell`: a table cell or a setting in a sentence (the presets' tables, the CLI's tables, the
  explanations): integers as they are, floats to ``digits`` significant digits, booleans yes/no.

Machine-readable files (CSV, JSON, directory names) are not formatted here: they keep every digit
(``repr``) and an empty cell for a missing value, so that they read back exactly.

Nothing here imports collapsekit: every layer may use it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["MISSING", "cell", "number"]

#: How every human-readable output shows a value that is missing (None) or not a number (NaN).
MISSING = "—"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def number(value: Any, digits: int = 4) -> str:
    """A measurement for a reader: ``digits`` significant digits, :data:`MISSING` for None/NaN.

    >>> number(0.000123), number(-2.5), number(None), number(float("inf"))
    ('1.23e−04', '−2.5', '—', '∞')
    """
    if _missing(value):
        return MISSING
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.2e}".replace("-", "−")
    return f"{value:.{digits}g}".replace("-", "−")


def cell(value: Any, digits: int = 4) -> str:
    """A table cell: integers as they are, floats to ``digits`` significant digits, booleans yes/no,
    :data:`MISSING` for None/NaN.

    >>> cell(3), cell(0.123456), cell(True), cell(None), cell("exact")
    ('3', '0.1235', 'yes', '—', 'exact')
    """
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{float(value):.{digits}g}"
    return str(value)
