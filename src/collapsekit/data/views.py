"""Pure transformations Dataset → Dataset: CVAE splits, label filters, train/test parts."""

from __future__ import annotations

import math

import numpy as np

from collapsekit._validation import as_2d_finite
from collapsekit.data.dataset import Dataset
from collapsekit.errors import DataError

__all__ = ["digit_filter", "label_condition", "quadrant_merge", "quadrant_split", "train_test_split"]

# Sources whose labels are the ten digits: their one-hot width stays 10 even on a subset.
_DIGIT_SOURCES = ("digits", "mnist", "mnist10k")


def _require_labels(ds: Dataset, view: str) -> np.ndarray:
    if ds.labels is None:
        raise DataError(f"{view} needs class labels, but data set {ds.name!r} has none")
    return ds.labels


def _require_plain(ds: Dataset, view: str) -> None:
    # Views that build a new (x, y) pair would silently discard an existing output.
    if ds.y is not None:
        raise DataError(f"{view} needs a data set without a paired output y, but {ds.name!r} has one")


def quadrant_split(ds: Dataset) -> Dataset:
    """Split square images into the CVAE pair of the paper: one quadrant predicts the rest.

    Parameters
    ----------
    ds : Dataset
        Plain data set of H×H images (``image_shape`` set, H even, no ``y``).

    Returns
    -------
    Dataset
        ``x`` = bottom-left quadrant (rows H/2.., columns ..H/2) flattened row-major, H²/4
        columns; ``y`` = top-left, top-right, bottom-right quadrants, each flattened
        row-major, concatenated (3H²/4 columns). Labels kept, ``image_shape`` None, name
        suffixed ``/quadrants``. :func:`quadrant_merge` inverts it.
    """
    _require_plain(ds, "quadrant split")
    if ds.image_shape is None:
        raise DataError(f"quadrant split needs images, but data set {ds.name!r} has no image_shape")
    height, width = ds.image_shape
    if height != width or height % 2:
        raise DataError(f"quadrant split needs square images with an even side, got {height}×{width}")
    h = height // 2
    images = ds.x.reshape(ds.n, height, width)
    x = images[:, h:, :h].reshape(ds.n, -1)
    y = np.concatenate(
        [images[:, :h, :h].reshape(ds.n, -1), images[:, :h, h:].reshape(ds.n, -1), images[:, h:, h:].reshape(ds.n, -1)],
        axis=1,
    )
    return Dataset(x=x, y=y, labels=ds.labels, name=f"{ds.name}/quadrants")


def quadrant_merge(x_part: np.ndarray, y_part: np.ndarray, side: int) -> np.ndarray:
    """Rebuild flattened images from a :func:`quadrant_split` pair (its exact inverse).

    Parameters
    ----------
    x_part : np.ndarray
        ``(n, side²/4)`` bottom-left quadrants; a 1-D vector is one image.
    y_part : np.ndarray
        ``(n, 3·side²/4)`` top-left, top-right, bottom-right quadrants; 1-D is one image.
    side : int
        Image side, even.

    Returns
    -------
    np.ndarray
        ``(n, side²)`` row-major flattened images; ``.reshape(n, side, side)`` for pictures.
    """
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side <= 0 or side % 2:
        raise DataError(f"side must be a positive even integer, got {side!r}")
    h = int(side) // 2
    q = h * h
    # Here a 1-D vector is one generated sample, not a column of scalars.
    x_arr = as_2d_finite("x_part", np.reshape(x_part, (1, -1)) if np.ndim(x_part) == 1 else x_part)
    y_arr = as_2d_finite("y_part", np.reshape(y_part, (1, -1)) if np.ndim(y_part) == 1 else y_part)
    if x_arr.shape[1] != q:
        raise DataError(f"x_part has {x_arr.shape[1]} columns, expected {q} for side {side}")
    if y_arr.shape[1] != 3 * q:
        raise DataError(f"y_part has {y_arr.shape[1]} columns, expected {3 * q} for side {side}")
    if x_arr.shape[0] != y_arr.shape[0]:
        raise DataError(f"x_part has {x_arr.shape[0]} rows but y_part has {y_arr.shape[0]}")
    n = x_arr.shape[0]
    images = np.empty((n, side, side), dtype=np.result_type(x_arr, y_arr))
    images[:, h:, :h] = x_arr.reshape(n, h, h)
    images[:, :h, :h] = y_arr[:, :q].reshape(n, h, h)
    images[:, :h, h:] = y_arr[:, q : 2 * q].reshape(n, h, h)
    images[:, h:, h:] = y_arr[:, 2 * q :].reshape(n, h, h)
    return images.reshape(n, side * side)


def label_condition(ds: Dataset, num_classes: int | None = None) -> Dataset:
    """Condition on the class: ``x`` becomes the one-hot label, ``y`` the former ``x``.

    Parameters
    ----------
    ds : Dataset
        Plain data set with non-negative labels.
    num_classes : int or None
        One-hot width; default max(label) + 1, or 10 for digit data (``digits``/``mnist``
        sources), so that a subset missing some digits keeps the same encoding.

    Returns
    -------
    Dataset
        ``x`` one-hot (dtype of the old ``x``), ``y`` the old ``x``, labels kept, name
        suffixed ``/label-condition``.
    """
    _require_plain(ds, "label conditioning")
    labels = _require_labels(ds, "label conditioning")
    if labels.min() < 0:
        raise DataError(f"label conditioning needs labels ≥ 0, found {int(labels.min())}")
    top = int(labels.max())
    if num_classes is None:
        is_digits = ds.name.split("/", 1)[0] in _DIGIT_SOURCES
        num_classes = 10 if is_digits and top < 10 else top + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes <= top:
        raise DataError(f"num_classes must be an integer > the largest label {top}, got {num_classes!r}")
    one_hot = np.zeros((ds.n, int(num_classes)), dtype=ds.x.dtype)
    one_hot[np.arange(ds.n), labels] = 1
    return Dataset(x=one_hot, y=ds.x, labels=labels, name=f"{ds.name}/label-condition")


def digit_filter(ds: Dataset, digit: int) -> Dataset:
    """The rows whose label equals ``digit`` (any data set with labels, not only digits).

    Raises
    ------
    DataError
        No labels, or no row has that label.
    """
    labels = _require_labels(ds, "digit filter")
    if isinstance(digit, bool) or not isinstance(digit, (int, np.integer)):
        raise DataError(f"digit must be an integer, got {digit!r}")
    mask = labels == digit
    if not mask.any():
        present = ", ".join(str(v) for v in np.unique(labels)[:20])
        raise DataError(f"digit filter: no row of {ds.name!r} has label {digit} (labels present: {present})")
    return ds.subset(mask, name=f"{ds.name}/digit={digit}")


def train_test_split(ds: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A seeded random partition of the rows into a training and a test part.

    Parameters
    ----------
    ds : Dataset
        Any data set with at least two rows.
    test_fraction : float
        Share of rows in the test part, strictly between 0 and 1 (rounded to whole rows).
    seed : int
        Seed of the permutation: the same seed gives the same partition.

    Returns
    -------
    tuple of Dataset
        ``(train, test)``, each keeping the original row order, named ``.../train`` and
        ``.../test``.
    """
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        raise DataError(f"test_fraction must be a number, got {test_fraction!r}") from None
    if not (math.isfinite(fraction) and 0.0 < fraction < 1.0):
        raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    n_test = round(ds.n * fraction)
    if n_test == 0 or n_test == ds.n:
        raise DataError(f"train/test split of {ds.n} rows with test_fraction {fraction:g} leaves an empty part")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer ≥ 0, got {seed!r}")
    order = np.random.default_rng(int(seed)).permutation(ds.n)
    # Sorted so each part keeps the source order; membership alone is what the seed decides.
    test_index = np.sort(order[:n_test])
    train_index = np.sort(order[n_test:])
    return ds.subset(train_index, name=f"{ds.name}/train"), ds.subset(test_index, name=f"{ds.name}/test")
