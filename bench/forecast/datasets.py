"""The benchmark's derived data sets, written deterministically into bench/forecast/data/ (not tracked).

* ``mnist2k``: the first 2,000 rows of the bundled mnist10k, raw pixels in [0, 1] (labels, 28×28);
* ``mnist2k_std``: the same rows standardised: centred per pixel and divided by one global std (the spectrum's
  shape is kept; mean variance per pixel 1);
* ``digits_std``: scikit-learn's digits standardised the same way (labels, 8×8);
* ``manifold``: 2,000 rows of a nonlinear 4-dimensional manifold in 24 dimensions, x = tanh(z A) B + 0.05 ε,
  z ~ N(0, I₄) (known intrinsic dimension 4).

The linear synthetic data (``gaussian:eigs=...``) needs no file. Regenerating gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
FILES = ("mnist2k", "mnist2k_std", "digits_std", "manifold")


def path(name: str) -> str:
    """The data spec of a derived data set, relative to the repository root (where the runner runs)."""
    return f"bench/forecast/data/{name}.npz"


def _standardise(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    return (centred / np.sqrt(np.mean(centred ** 2))).astype(np.float32)


def ensure() -> None:
    """Write every derived data set that is missing."""
    from collapsekit.data import load

    DATA.mkdir(parents=True, exist_ok=True)
    if not all((DATA / f"{name}.npz").is_file() for name in FILES):
        mnist = load("mnist10k")
        digits = load("digits")
        x = mnist.x[:2000].astype(np.float32)
        labels = mnist.labels[:2000]
        np.savez(DATA / "mnist2k.npz", x=x, labels=labels, image_shape=np.array([28, 28]))
        np.savez(DATA / "mnist2k_std.npz", x=_standardise(x), labels=labels, image_shape=np.array([28, 28]))
        np.savez(DATA / "digits_std.npz", x=_standardise(digits.x.astype(np.float64)), labels=digits.labels,
                 image_shape=np.array([8, 8]))
        rng = np.random.default_rng(4)
        z = rng.standard_normal((2000, 4))
        a = rng.standard_normal((4, 12)) / 2
        b = rng.standard_normal((12, 24)) / np.sqrt(12)
        x_m = np.tanh(z @ a) @ b + 0.05 * rng.standard_normal((2000, 24))
        np.savez(DATA / "manifold.npz", x=x_m.astype(np.float32))
