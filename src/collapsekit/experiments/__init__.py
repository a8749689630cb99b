"""Experiments: sweep grids and the programs that run them, and the paper's experiments as presets.

Batched training of small models lives in :mod:`collapsekit.training.batched` (a trainer);
``can_batch`` and ``train_batched`` stay importable from here. Submodules are imported on first
use: the CLI imports this package for every verb.
"""

from typing import Any

__all__ = ["can_batch", "train_batched"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from collapsekit.training import batched

        return getattr(batched, name)
    raise AttributeError(f"module 'collapsekit.experiments' has no attribute {name!r}")
