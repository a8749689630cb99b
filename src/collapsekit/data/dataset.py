"""The :class:`Dataset` container every source returns and every view transforms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collapsekit._validation import as_2d_finite
from collapsekit.errors import DataError


def _as_float_matrix(name: str, values: object) -> np.ndarray:
    """``values`` as a finite 2-D float32/float64 array (other numeric dtypes become float64)."""
    arr = as_2d_finite(name, values)
    if arr.dtype not in (np.float32, np.float64):
        # Integer, bool and float16 inputs are promoted so that downstream linear algebra
        # never silently works in integer or half precision.
        arr = arr.astype(np.float64)
    return arr


def _as_labels(values: object, n: int) -> np.ndarray:
    """``values`` as a 1-D int64 array of ``n`` class labels, or raise :class:`DataError`."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"labels: expected a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"labels: x has {n} rows but labels has {arr.shape[0]} entries")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataError(f"labels: expected integer class labels, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        # Labels read from CSV or float arrays arrive as whole-valued floats; accept those only.
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            index = int(np.flatnonzero(~whole)[0])
            raise DataError(f"labels: entry {index} is {arr[index]!r}, not an integer class label")
    return arr.astype(np.int64, copy=False)


def _as_image_shape(value: object, d_x: int) -> tuple[int, int]:
    """``value`` as an ``(H, W)`` tuple of positive ints with ``H * W == d_x``."""
    try:
        height, width = (int(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise DataError(f"image_shape: expected (height, width), got {value!r}") from None
    if height <= 0 or width <= 0:
        raise DataError(f"image_shape: sides must be positive, got {(height, width)}")
    if height * width != d_x:
        raise DataError(f"image_shape: {height}×{width} = {height * width} pixels but x has {d_x} columns")
    return (height, width)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A data set: inputs ``x``, optionally a paired output ``y`` and class labels.

    Parameters
    ----------
    x : np.ndarray
        ``(n, d_x)`` float32 or float64 rows. For a CVAE this is the input/condition.
    y : np.ndarray or None
        ``(n, d_y)`` paired output a CVAE generates; ``None`` for a plain data set.
    labels : np.ndarray or None
        ``(n,)`` int64 class labels, if known.
    image_shape : tuple of int or None
        ``(H, W)`` when the rows of ``x`` are row-major flattened images.
    name : str
        A short description, extended by each view (``"mnist/digit=3/quadrants"``).

    Notes
    -----
    Arrays are validated (finite, matching row counts) and converted on construction but not
    copied, so a caller that mutates its arrays afterwards mutates the data set too.
    Equality is identity: comparing array contents is left to the caller.
    """

    x: np.ndarray
    y: np.ndarray | None = None
    labels: np.ndarray | None = None
    image_shape: tuple[int, int] | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        # Frozen dataclass: normalised fields are stored through object.__setattr__.
        x = _as_float_matrix("x", self.x)
        object.__setattr__(self, "x", x)
        n = x.shape[0]
        if self.y is not None:
            y = _as_float_matrix("y", self.y)
            if y.shape[0] != n:
                raise DataError(f"x has {n} rows but y has {y.shape[0]}")
            object.__setattr__(self, "y", y)
        if self.labels is not None:
            object.__setattr__(self, "labels", _as_labels(self.labels, n))
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", _as_image_shape(self.image_shape, x.shape[1]))
        if not isinstance(self.name, str):
            raise DataError(f"name: expected a string, got {self.name!r}")

    @property
    def n(self) -> int:
        """Number of rows (examples)."""
        return int(self.x.shape[0])

    @property
    def d_x(self) -> int:
        """Number of columns of ``x``."""
        return int(self.x.shape[1])

    @property
    def d_y(self) -> int | None:
        """Number of columns of ``y``, or ``None`` without a paired output."""
        return None if self.y is None else int(self.y.shape[1])

    def __repr__(self) -> str:
        # The default dataclass repr would print whole arrays.
        parts = [f"name={self.name!r}", f"n={self.n}", f"d_x={self.d_x}"]
        if self.y is not None:
            parts.append(f"d_y={self.d_y}")
        if self.labels is not None:
            parts.append("labels")
        if self.image_shape is not None:
            parts.append(f"image_shape={self.image_shape}")
        return f"Dataset({', '.join(parts)})"

    def subset(self, index: np.ndarray, name: str | None = None) -> Dataset:
        """The rows selected by ``index`` (integer indices or a boolean mask).

        Metadata is kept; ``name`` replaces the name when given.
        """
        return Dataset(
            x=self.x[index],
            y=None if self.y is None else self.y[index],
            labels=None if self.labels is None else self.labels[index],
            image_shape=self.image_shape,
            name=self.name if name is None else name,
        )
