"""collapsekit: detect, predict and explain posterior collapse in variational autoencoders.

The public entry points live in sub-packages that follow the data flow:
``collapsekit.data`` (sources and views), ``collapsekit.theory`` (closed-form optima,
predictions and their numerical verification) and ``collapsekit.cli`` (the command line).
"""

from collapsekit.errors import CollapsekitError, DataError, ParameterError

__version__ = "0.1.0"

__all__ = ["CollapsekitError", "DataError", "ParameterError", "__version__"]
