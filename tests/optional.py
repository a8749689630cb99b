"""Optional libraries in the tests: skipped where they are missing, a failure under CI.

``make test`` installs Pythae, diffusers and Lightning (the ``dev`` extra), so a missing one under CI (the CI
environment variable set) is an installation that went wrong, not a reason to skip.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(name: str) -> ModuleType:
    """Import ``name``; without it skip the test, or fail it with the reason when CI is set."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"{name} is not installed ({exc})"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: `make test` installs it with the dev extra)", pytrace=False)
        pytest.skip(message, allow_module_level=True)
