"""Typed exceptions raised at collapsekit's boundaries.

Every exception a user can trigger with bad input derives from :class:`CollapsekitError`;
the CLI turns these into a one-line message and exit status 2. Each also derives from the
closest built-in (``ValueError``, ``FileNotFoundError``) so generic handlers keep working.
"""

from __future__ import annotations


class CollapsekitError(Exception):
    """Base class of every error caused by user input."""


class DataError(CollapsekitError, ValueError):
    """Data that cannot be used: NaN/inf values, wrong shapes, unparsable files, bad specs."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file or directory that does not exist."""


class ParameterError(CollapsekitError, ValueError):
    """A hyper-parameter out of its domain (β ≤ 0, η ≤ 0, latent size too large, ...)."""
