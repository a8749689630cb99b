"""Configuration checks shared by the model modules: one wording per kind of bad setting.

Every check raises :class:`~collapsekit.errors.ParameterError` with a one-line message that
names the field and the offending value, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from torch import Tensor, nn

from collapsekit._validation import positive_vector
from collapsekit.errors import DataError, ParameterError

#: Hidden-layer nonlinearities by name.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
}
#: Nonlinearities allowed on a mean or an output (None: identity).
OUTPUT_ACTIVATIONS = ("relu", "tanh", "sigmoid")


def count(field: str, value: object, minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (a float with an integral value is accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{field} must be an integer, got {value!r}")
    if value < minimum:
        raise ParameterError(f"{field} must be ≥ {minimum}, got {value!r}")
    return int(value)


def counts(field: str, values: object, *, allow_empty: bool = False) -> tuple[int, ...]:
    """A sequence of integers ≥ 1 (an int is read as a one-element sequence)."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else values
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ParameterError(f"{field} must be a sequence of integers, got {values!r}")
    out = tuple(count(f"{field}[{i}]", v) for i, v in enumerate(values))
    if not out and not allow_empty:
        raise ParameterError(f"{field} must not be empty")
    return out


def activation(field: str, name: object) -> nn.Module:
    """A fresh hidden-layer activation module by name."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ParameterError(f"{field} must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def output_activation(field: str, name: object) -> nn.Module:
    """An activation for a mean or an output: None (identity), "relu", "tanh" or "sigmoid"."""
    if name is None:
        return nn.Identity()
    if not isinstance(name, str) or name not in OUTPUT_ACTIVATIONS:
        raise ParameterError(f"{field} must be None or one of {list(OUTPUT_ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def std_values(field: str, value: object, dim: int) -> np.ndarray:
    """A float (used for every dimension) or one positive std per dimension, as float64."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise ParameterError(f"{field} must be a number or a sequence of {dim} numbers, got {value!r}")
    try:
        return positive_vector(field, value, dim)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError(f"{field} must be a number or a sequence of {dim} numbers, got {value!r}") from None


def square_side(dim: int) -> int | None:
    """The side s with s² = dim, or None when dim is not a perfect square."""
    side = math.isqrt(dim)
    return side if side * side == dim else None


def n_samples(value: object) -> int:
    """Number of latent samples per example in a forward pass."""
    return count("n_samples", value)


def batch(field: str, tensor: object, features: int | None = None) -> Tensor:
    """A (B, D) tensor (optionally with D = ``features``), else :class:`DataError`."""
    if not isinstance(tensor, Tensor):
        raise DataError(f"{field} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise DataError(f"{field} must have shape (batch, features), got {tuple(tensor.shape)}")
    if features is not None and tensor.shape[1] != features:
        raise DataError(f"{field} has {tensor.shape[1]} features, expected {features}")
    return tensor


def latent_dim_of(field: str, module: nn.Module, given: int | None) -> int:
    """The latent size of an encoder: ``given`` if passed, else its ``latent_dim`` attribute."""
    if given is not None:
        return count(field, given)
    value = getattr(module, "latent_dim", None)
    if value is None:
        raise ParameterError(f"{field}: the encoder has no latent_dim attribute; pass {field}=...")
    return count(field, value)
