"""``python -m collapsekit.cli``: the same as the ``collapsekit`` command."""

from collapsekit.cli import entry_point

entry_point()
