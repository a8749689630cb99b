"""Boundary checks shared by every module: one place, one wording for each kind of bad input."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING
from numbers import Real

import numpy as np

from collapsekit.errors import DataError, ParameterError

if TYPE_CHECKING:
    import torch


def as_2d_finite(name: str, values: object, *, row_offset: int = 0) -> np.ndarray:
    """Return ``values`` as a 2-D numeric array, or raise :class:`DataError` naming the problem.

    A 1-D array is read as one column. Rows holding NaN or ±inf are reported by their
    (0-based) index plus ``row_offset``, so chunked callers can name the global row.
    """
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise DataError(f"{name}: cannot be read as a numeric array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{name}: expected numeric values, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise DataError(f"{name}: complex values are not supported")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array (examples × features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name}: empty array of shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if bad_rows.size:
            row = int(bad_rows[0])
            kind = "NaN" if np.isnan(arr[row]).any() else "an infinite value"
            more = f" (and {bad_rows.size - 1} more rows)" if bad_rows.size > 1 else ""
            raise DataError(f"{name}: row {row + row_offset} contains {kind}{more}")
    return arr


def real(name: str, value: object) -> float:
    """``value`` as a finite float; bools and strings are refused (``True`` is not a β)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    return number


def non_negative(name: str, value: object) -> float:
    """A finite float ≥ 0, or a :class:`ParameterError`."""
    number = real(name, value)
    if number < 0:
        raise ParameterError(f"{name} must be ≥ 0, got {value!r}")
    return number


def positive(name: str, value: object) -> float:
    """A finite float > 0, or a :class:`ParameterError`."""
    number = real(name, value)
    if number <= 0:
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return number


#: Why the closed forms need β > 0, for every refusal of β = 0.
ZERO_BETA = ("with no weight on the KL (β = 0: a plain autoencoder) the optimum's KL is unbounded, the encoder std "
             "going to 0, so there is no collapse to predict")


def zero_beta(beta: object) -> bool:
    """Is a KL weight (a number, or one per level) 0 anywhere? Then the collapse theory does not apply."""
    values = beta if isinstance(beta, (list, tuple, np.ndarray)) else [beta]
    return any(isinstance(b, Real) and not isinstance(b, bool) and float(b) == 0 for b in values)


def zero_beta_note(beta: object) -> str | None:
    """What a run with β = 0 must say (once at its start, and in its summary), or None when β > 0."""
    if not zero_beta(beta):
        return None
    values = list(beta) if isinstance(beta, (list, tuple, np.ndarray)) else [beta]
    if all(float(b) == 0 for b in values):
        return ("β = 0: the objective puts no weight on the KL, so this is a plain autoencoder; the collapse theory "
                "(which needs β > 0) does not apply, and a dimension whose KL stays near 0 is one the decoder "
                "does not use")
    levels = ", ".join(f"z{i + 1}" for i, b in enumerate(values) if float(b) == 0)
    return (f"β = 0 on {levels}: the objective puts no weight on that KL; the collapse theory (which needs β > 0 "
            "on every level) does not apply")


def kl_weight(name: str, value: object) -> float:
    """A KL weight β of the closed forms: a finite float > 0; β = 0 is refused saying why."""
    number = real(name, value)
    if number == 0:
        raise ParameterError(f"{name} must be > 0: {ZERO_BETA}")
    if number < 0:
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def positive_vector(name: str, values: float | Sequence[float], length: int) -> np.ndarray:
    """A scalar (broadcast) or a sequence of ``length`` finite positive numbers, as float64."""
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be a number or a sequence of numbers, got shape {arr.shape}")
    if arr.size == 1:
        arr = np.full(length, float(arr[0]))
    if arr.size != length:
        raise ParameterError(f"{name} has {arr.size} values but the latent size is {length}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ParameterError(f"{name} must be finite and > 0, got {arr.tolist()}")
    return arr


def latent_size(name: str, value: object, limit: int, what: str) -> int:
    """A latent size in 1..``limit``; ``what`` says where the limit comes from."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParameterError(f"{name} must be an integer, got {value!r}")
    size = int(value)
    if size <= 0:
        raise ParameterError(f"{name} must be ≥ 1, got {size}")
    if size > limit:
        raise ParameterError(f"{name} = {size} is larger than the data allows ({what} = {limit})")
    return size


def resolve_device(value: object, *, name: str = "device") -> "torch.device":
    """The torch device a ``--device`` / ``device=`` value names, checked: ``None`` or ``"auto"`` is the
    first CUDA device when one is available, else the CPU; ``"cuda"`` is the current CUDA device
    (``cuda:0`` unless the caller chose another). A name torch does not know, or a device this machine
    does not have (``cuda`` without a GPU, ``cuda:3`` with two), is a one-line :class:`ParameterError`."""
    import torch

    if value is None or value == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(value)  # type: ignore[arg-type]
    except (RuntimeError, TypeError, ValueError):
        raise ParameterError(f"{name} must be auto, cpu, cuda or cuda:N (a torch device), got {value!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"{name} {value}: CUDA is not available here (no GPU visible, or a torch built "
                                 "without CUDA); use cpu") from None
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ParameterError(f"{name} {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError(f"{name} {value}: Apple's MPS is not available here; use cpu")
    return device
