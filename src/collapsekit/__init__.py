"""collapsekit: detect, predict and explain posterior collapse in variational autoencoders.

The public entry points live in sub-packages that follow the data flow:
``collapsekit.data`` (sources and views), ``collapsekit.theory`` (closed-form optima,
predictions and their numerical verification), ``collapsekit.models`` and ``collapsekit.objectives``,
``collapsekit.training`` (the trainer and the CollapseMonitor), ``collapsekit.diagnostics``
(metrics and reports), ``collapsekit.experiments`` (sweeps, presets) and ``collapsekit.cli``.
The most used names are also here: ``collapsekit.diagnose``, ``collapsekit.doctor``, ``CollapseReport``,
``CollapseMonitor``, and the adapters' ``as_adapter`` and ``register_adapter`` (``collapsekit.adapters``: models
of other libraries).
"""

from typing import Any

from collapsekit.errors import CollapsekitError, DataError, ParameterError

__version__ = "0.1.0"

__all__ = ["CollapseMonitor", "CollapseReport", "CollapsekitError", "DataError", "ParameterError", "__version__",
           "as_adapter", "diagnose", "doctor", "register_adapter"]

# Imported on first use: `import collapsekit` (and every CLI call) stays free of torch.
_LAZY = {"diagnose": "collapsekit.diagnostics", "CollapseReport": "collapsekit.diagnostics",
         "CollapseMonitor": "collapsekit.training.monitor", "as_adapter": "collapsekit.adapters",
         "register_adapter": "collapsekit.adapters", "doctor": "collapsekit.checkup.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'collapsekit' has no attribute {name!r}")
