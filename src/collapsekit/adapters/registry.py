"""Which adapter a model gets: :func:`as_adapter` asks the registered families in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collapsekit.errors import ParameterError
from collapsekit.adapters.protocol import ModelAdapter


@dataclass(frozen=True)
class AdapterEntry:
    """One registered family: its name, the test a model must pass and the adapter's factory."""

    name: str
    matches: Callable[[object], bool]
    factory: Callable[..., ModelAdapter]


#: Registered families, asked in order (the last registered first: a user's adapter wins).
ADAPTERS: list[AdapterEntry] = []


def register_adapter(name: str, matches: Callable[[object], bool], factory: Callable[..., ModelAdapter]) -> None:
    """Add an adapter family: from then on ``as_adapter(model)`` (and ``diagnose(model, data)``) uses
    ``factory(model, **options)`` for every model with ``matches(model)`` true.

    Parameters
    ----------
    name : str
        What error messages call the family (``"pythae"``). Registering a name again replaces it.
    matches : callable
        ``matches(model) -> bool``. It must not raise, nor import a heavy library to decide: test the
        class's module name (``type(model).__module__.startswith("mylib")``) rather than ``isinstance``.
    factory : callable
        ``factory(model, **options) -> ModelAdapter``.
    """
    if not isinstance(name, str) or not name:
        raise ParameterError(f"adapter name must be a non-empty string, got {name!r}")
    if not callable(matches) or not callable(factory):
        raise ParameterError(f"adapter {name!r}: matches and factory must be callable")
    unregister_adapter(name)
    ADAPTERS.insert(0, AdapterEntry(name, matches, factory))


def unregister_adapter(name: str) -> None:
    """Remove a registered adapter family (no error when it is not registered)."""
    ADAPTERS[:] = [entry for entry in ADAPTERS if entry.name != name]


def adapter_names() -> list[str]:
    """The registered families, in the order :func:`as_adapter` asks them."""
    return [entry.name for entry in ADAPTERS]


def find_adapter(model: object) -> AdapterEntry | None:
    """The first registered family that matches ``model``, or None."""
    for entry in ADAPTERS:
        try:
            if entry.matches(model):
                return entry
        except Exception:                          # a faulty matcher must not hide the other families
            continue
    return None


def as_adapter(model: object, **options: Any) -> ModelAdapter:
    """``model`` as a :class:`~collapsekit.adapters.protocol.ModelAdapter`.

    Parameters
    ----------
    model : object
        An adapter (returned as is; ``options`` must then be empty), or a model of a registered family:
        collapsekit's VAE and CVAE, a pair ``(encoder, decoder)`` of callables, a Pythae VAE, a diffusers
        ``AutoencoderKL``, or whatever :func:`register_adapter` added.
    **options
        Passed to the family's factory (e.g. ``prior_std=``, ``beta=``).

    Raises
    ------
    ParameterError
        One line naming the supported families, for a model no family matches.
    """
    if isinstance(model, ModelAdapter):
        if options:
            raise ParameterError(f"{type(model).__name__} is already an adapter: options "
                                 f"{sorted(options)} cannot be applied to it")
        return model
    entry = find_adapter(model)
    if entry is None:
        raise ParameterError(f"no adapter for a {type(model).__module__}.{type(model).__qualname__}: supported are "
                             f"{', '.join(adapter_names())} (or write one: collapsekit.adapters.register_adapter)")
    return entry.factory(model, **options)
