"""Synthetic data with known second moments, for checking the theory against exact answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from collapsekit.data.dataset import Dataset
from collapsekit.errors import DataError

__all__ = ["correlated_pairs", "gaussian", "gaussian_decay"]


def _count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (whole floats accepted, bools refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, Real) and math.isfinite(float(value)) and float(value).is_integer():
        number = int(float(value))
    else:
        raise DataError(f"{name} must be an integer, got {value!r}")
    if number < minimum:
        raise DataError(f"{name} must be ≥ {minimum}, got {number}")
    return number


def _real(name: str, value: object) -> float:
    """``value`` as a finite float (fractions.Fraction and numpy scalars accepted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.floating, np.integer)):
        raise DataError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise DataError(f"{name} must be finite, got {value!r}")
    return number


def _random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed d×d orthogonal matrix."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    # Without the sign fix QR's convention biases the distribution away from uniform.
    return q * np.sign(np.diag(r))


def gaussian(
    eigenvalues: Sequence[float] | np.ndarray,
    n: int,
    *,
    seed: int = 0,
    rotate: bool = True,
    exact: bool = False,
) -> Dataset:
    """Zero-mean Gaussian rows whose second moment E[x xᵀ] has the given eigenvalues.

    Parameters
    ----------
    eigenvalues : sequence of float
        The spectrum λ (finite, ≥ 0); its length is the dimension d.
    n : int
        Number of rows, ≥ 1.
    seed : int
        Seed of the sample and of the basis.
    rotate : bool
        Use a random orthogonal eigenbasis Q (seeded); otherwise the coordinate axes.
    exact : bool
        Transform the sample so that its raw second moment ``X.T @ X / n`` equals
        ``Q diag(λ) Qᵀ`` to float64 rounding (needs ``n ≥ d``). The rows are then no longer
        independent, but every moment-based prediction holds without sampling error.

    Returns
    -------
    Dataset
        ``x`` float64 of shape (n, d), name ``"gaussian(d=...)"``.
    """
    try:
        lam: np.ndarray | None = np.asarray(eigenvalues, dtype=np.float64)
    except (TypeError, ValueError):
        lam = None
    if lam is None or lam.ndim != 1 or lam.size == 0:
        raise DataError(f"eigenvalues must be a non-empty 1-D sequence of numbers, got {eigenvalues!r}")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise DataError(f"eigenvalues must be finite and ≥ 0, got {lam.tolist()}")
    n = _count("n", n)
    d = lam.size
    if exact and n < d:
        raise DataError(f"exact=True needs n ≥ d, got n = {n} < d = {d}")
    rng = np.random.default_rng(_count("seed", seed, minimum=0))
    # z first, basis second: rotate=True and rotate=False then share the same draws.
    z = rng.standard_normal((n, d))
    if exact:
        # Orthonormal columns from QR make zᵀz/n = I to rounding however ill-conditioned z is;
        # the sign fix keeps each column close to the original draw.
        u, r = np.linalg.qr(z)
        signs = np.sign(np.diag(r))
        signs[signs == 0] = 1.0
        z = u * signs * math.sqrt(n)
    x = z * np.sqrt(lam)
    if rotate:
        x = x @ _random_orthogonal(rng, d).T
    return Dataset(x=x, name=f"gaussian(d={d})")


def gaussian_decay(
    dim: int,
    n: int,
    *,
    decay: float = 0.7,
    scale: float = 1.0,
    seed: int = 0,
    rotate: bool = True,
    exact: bool = False,
) -> Dataset:
    """:func:`gaussian` with the geometric spectrum ``scale · decay**i``, i = 0..dim-1.

    Parameters
    ----------
    dim : int
        Dimension d, ≥ 1.
    n : int
        Number of rows, ≥ 1.
    decay : float
        Ratio of consecutive eigenvalues, ≥ 0.
    scale : float
        Largest eigenvalue, > 0.
    seed, rotate, exact
        As for :func:`gaussian`.

    Returns
    -------
    Dataset
        float64 rows, name ``"gaussian(d=..., decay=...)"``.
    """
    dim = _count("dim", dim)
    decay = _real("decay", decay)
    scale = _real("scale", scale)
    if decay < 0:
        raise DataError(f"decay must be ≥ 0, got {decay}")
    if scale <= 0:
        raise DataError(f"scale must be > 0, got {scale}")
    eigenvalues = scale * decay ** np.arange(dim, dtype=np.float64)
    ds = gaussian(eigenvalues, n, seed=seed, rotate=rotate, exact=exact)
    return Dataset(x=ds.x, name=f"gaussian(d={dim}, decay={decay:g})")


def correlated_pairs(rho: float, n: int, dim: int, *, seed: int = 0) -> Dataset:
    """Condition/output pairs with correlation ρ: the CVAE correlation experiment.

    ``y ~ N(0, I_dim)`` and ``x = ρ·y + √(1−ρ²)·ε`` with ``ε ~ N(0, I_dim)``, so
    ``E[x yᵀ] = ρ I`` and ``E[x xᵀ] = I``. ρ = 1 gives ``x == y`` exactly.

    Parameters
    ----------
    rho : float
        Correlation in [0, 1] (a fractions.Fraction is fine).
    n : int
        Number of pairs, ≥ 1.
    dim : int
        Dimension of x and of y, ≥ 1.
    seed : int
        Seed of the draws.

    Returns
    -------
    Dataset
        ``x`` the condition, ``y`` the output, both float64; name ``"correlated(rho=...)"``.
    """
    rho = _real("rho", rho)
    if not 0.0 <= rho <= 1.0:
        raise DataError(f"rho must be in [0, 1], got {rho}")
    n = _count("n", n)
    dim = _count("dim", dim)
    rng = np.random.default_rng(_count("seed", seed, minimum=0))
    y = rng.standard_normal((n, dim))
    noise = rng.standard_normal((n, dim))
    x = rho * y + math.sqrt(1.0 - rho * rho) * noise
    return Dataset(x=x, y=y, name=f"correlated(rho={rho:g})")
