"""scikit-learn's bundled 8×8 handwritten digits: real images with no download."""

from __future__ import annotations

import numpy as np

from collapsekit.data.dataset import Dataset

__all__ = ["load_digits"]


def load_digits() -> Dataset:
    """The 1797 8×8 digits shipped with scikit-learn.

    Returns
    -------
    Dataset
        ``x`` 1797×64 float32 in [0, 1] (grey levels 0..16 divided by 16), ``labels`` 0..9,
        ``image_shape`` (8, 8), name ``"digits"``.
    """
    # Imported here: scikit-learn takes about a second to import and most commands never need it.
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    return Dataset(x=x, labels=np.asarray(bunch.target), image_shape=(8, 8), name="digits")
