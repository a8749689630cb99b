"""Raw (uncentred) second moments of the data, and the spectra the closed forms read.

The linear models of the theory have no bias terms, so everything depends on the data only
through E[xxᵀ] (and, for the CVAE, E[xyᵀ] and E[yyᵀ]). Moments are accumulated in float64
over chunks of rows, so memory stays O(d²) whatever the number of examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collapsekit._validation import as_2d_finite
from collapsekit.errors import DataError, ParameterError

#: Rows converted to float64 at a time by :meth:`Moments.from_data` (≈ 25 MB at d = 784).
DEFAULT_CHUNK_ROWS = 4096


def _checked_square(name: str, matrix: object) -> np.ndarray:
    arr = np.array(as_2d_finite(name, matrix), dtype=np.float64)
    if arr.shape[0] != arr.shape[1]:
        raise DataError(f"{name}: a second-moment matrix must be square, got shape {arr.shape}")
    scale = max(float(np.abs(arr).max()), 1.0)
    if not np.allclose(arr, arr.T, rtol=0.0, atol=1e-8 * scale):
        raise DataError(f"{name}: a second-moment matrix must be symmetric")
    arr = 0.5 * (arr + arr.T)
    lowest = float(np.linalg.eigvalsh(arr)[0])
    if lowest < -1e-8 * scale:
        raise DataError(f"{name}: a second-moment matrix must be positive semi-definite "
                        f"(smallest eigenvalue {lowest:.3g})")
    return arr


def _noise_floor(scale: float, dim: int) -> float:
    """Eigenvalues at or below d·eps·scale are rounding noise of a d×d matrix of that scale."""
    return float(scale) * dim * np.finfo(np.float64).eps


def _psd_pinv(matrix: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric PSD matrix; eigenvalues at the noise floor count as zero."""
    phi, basis = np.linalg.eigh(matrix)
    keep = phi > _noise_floor(phi.max(initial=0.0), matrix.shape[0])
    return (basis[:, keep] / phi[keep]) @ basis[:, keep].T


def _descending_eigvals(matrix: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix, descending; those at the noise floor set to 0.

    ``scale`` is the magnitude the matrix was computed from (default: its largest eigenvalue):
    a rank-2 data set must report exactly two nonzero eigenvalues, not 2 plus noise, or a
    tiny β would call noise an active dimension.
    """
    values = np.linalg.eigvalsh(matrix)[::-1]
    floor = _noise_floor(values[0] if scale is None else scale, matrix.shape[0])
    return np.where(values > floor, values, 0.0)


def _is_tensor(values: object) -> bool:
    """A torch tensor, told without importing torch here (the theory needs numpy only)."""
    return all(hasattr(values, name) for name in ("detach", "device", "is_complex", "numpy"))


def _rows(name: str, values: object) -> object:
    """``values`` ready to be read in chunks: a torch tensor as it is (on its device, in its dtype),
    anything else as a numpy array."""
    if _is_tensor(values):
        return values.detach()                                   # type: ignore[attr-defined]
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:                        # ragged lists and the like
        raise DataError(f"{name}: cannot be read as a numeric array ({exc})") from None


def _host_chunk(name: str, chunk: object) -> object:
    """One chunk of rows in CPU memory: a tensor's rows copied from its device and converted to
    float64 there (bfloat16 has no numpy dtype); a numpy chunk as it is."""
    if not _is_tensor(chunk):
        return chunk
    if chunk.is_complex():                                        # type: ignore[attr-defined]
        raise DataError(f"{name}: complex values are not supported")
    try:
        return chunk.to("cpu").double().numpy()                   # type: ignore[attr-defined]
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        where = getattr(chunk, "device", "?")
        raise DataError(f"{name}: a tensor on device {where} cannot be copied to the CPU "
                        f"({str(exc).strip().splitlines()[0]})") from None


@dataclass(frozen=True)
class Moments:
    """Raw second moments: ``xx`` = E[xxᵀ]; for a CVAE also ``xy`` = E[xyᵀ] and ``yy`` = E[yyᵀ].

    In a CVAE, ``x`` is the input (the condition) and ``y`` the output generated from x and z.

    Examples
    --------
    >>> m = Moments.from_data(x)          # doctest: +SKIP
    >>> m = Moments.from_data(x, y)       # CVAE  # doctest: +SKIP
    >>> m = Moments(xx=np.diag([9.0, 4.0, 1.0]))
    >>> m.vae_spectrum()
    array([3., 2., 1.])
    """

    xx: np.ndarray
    xy: np.ndarray | None = None
    yy: np.ndarray | None = None
    n: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "xx", _checked_square("xx", self.xx))
        if (self.xy is None) != (self.yy is None):
            raise DataError("xy and yy must be given together (both for a CVAE, neither for a VAE)")
        if self.yy is not None:
            yy = _checked_square("yy", self.yy)
            xy = np.array(as_2d_finite("xy", self.xy), dtype=np.float64)
            if xy.shape != (self.xx.shape[0], yy.shape[0]):
                raise DataError(f"xy: expected shape (d_x, d_y) = {(self.xx.shape[0], yy.shape[0])}, "
                                f"got {xy.shape}")
            # The joint moment matrix of (x, y) must itself be PSD (Cauchy–Schwarz for moments).
            _checked_square("joint moment [[xx, xy], [yx, yy]]", np.block([[self.xx, xy], [xy.T, yy]]))
            object.__setattr__(self, "xy", xy)
            object.__setattr__(self, "yy", yy)

    @classmethod
    def from_data(cls, x: object, y: object | None = None, *,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> "Moments":
        """Accumulate raw second moments from examples in rows, in float64, ``chunk_rows`` at a time.

        Parameters
        ----------
        x : array-like, shape (n, d_x)
            Examples in rows (a memory map works: only one chunk is converted at a time). A torch
            tensor may be on any device and of any dtype (a GPU's, bfloat16): it stays where it is
            and each chunk is copied to the CPU in float64 as it is read.
        y : array-like, shape (n, d_y), optional
            The paired CVAE outputs; same number of rows as ``x``.
        chunk_rows : int
            Rows per chunk.

        Raises
        ------
        DataError
            On NaN or infinite values (naming the first bad row), non-numeric data,
            mismatched row counts, or a tensor that cannot be copied to the CPU (``meta``).
        """
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
            raise ParameterError(f"chunk_rows must be an integer ≥ 1, got {chunk_rows!r}")
        x_arr = _rows("x", x)
        if x_arr.ndim == 1:
            x_arr = x_arr[:, None]
        if x_arr.ndim != 2 or x_arr.shape[0] == 0:
            raise DataError(f"x: expected a non-empty 2-D array (examples × features), got shape "
                            f"{tuple(x_arr.shape)}")
        parts = [("x", x_arr)]
        if y is not None:
            y_arr = _rows("y", y)
            if y_arr.ndim == 1:
                y_arr = y_arr[:, None]
            if y_arr.ndim != 2 or y_arr.shape[0] != x_arr.shape[0]:
                raise DataError(f"x has {x_arr.shape[0]} rows but y has "
                                f"{y_arr.shape[0] if y_arr.ndim else 0} (shape {tuple(y_arr.shape)})")
            parts.append(("y", y_arr))
        n = x_arr.shape[0]
        widths = [arr.shape[1] for _, arr in parts]
        joint = np.zeros((sum(widths), sum(widths)), dtype=np.float64)
        chunk = np.empty((min(chunk_rows, n), sum(widths)), dtype=np.float64)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            block = chunk[: stop - start]
            col = 0
            for name, arr in parts:
                block[:, col:col + arr.shape[1]] = as_2d_finite(name, _host_chunk(name, arr[start:stop]),
                                                                row_offset=start)
                col += arr.shape[1]
            # One product gives xx, xy and yy together; block.T @ block is a symmetric rank-k update.
            joint += block.T @ block
        joint /= n
        d_x = widths[0]
        if y is None:
            return cls(xx=joint, n=n)
        return cls(xx=joint[:d_x, :d_x], xy=joint[:d_x, d_x:], yy=joint[d_x:, d_x:], n=n)

    # -- shapes -----------------------------------------------------------------------------
    @property
    def d_x(self) -> int:
        """Dimension of x."""
        return int(self.xx.shape[0])

    @property
    def d_y(self) -> int | None:
        """Dimension of y, or None for a VAE's moments."""
        return None if self.yy is None else int(self.yy.shape[0])

    @property
    def conditional(self) -> bool:
        """True when the moments hold a paired (x, y) for a CVAE."""
        return self.yy is not None

    # -- spectra ----------------------------------------------------------------------------
    def vae_spectrum(self) -> np.ndarray:
        """θ of the VAE and MHVAE: singular values of Z = E[x x̃ᵀ] = √eig(E[xxᵀ]), descending."""
        return np.sqrt(_descending_eigvals(self.xx))

    def residual(self) -> np.ndarray:
        """E = E[yyᵀ] − E[yxᵀ] E[xxᵀ]⁺ E[xyᵀ]: the second moment of y's least-squares residual on x.

        Computed as a Schur complement in float64 with a pseudo-inverse, because E[xxᵀ] is
        singular on images with constant borders (MNIST).
        """
        if self.yy is None or self.xy is None:
            raise DataError("the CVAE needs paired moments: build them with Moments.from_data(x, y)")
        residual = self.yy - self.xy.T @ _psd_pinv(self.xx) @ self.xy
        return 0.5 * (residual + residual.T)

    def cvae_spectrum(self) -> np.ndarray:
        """θ of the CVAE: eigenvalues of the residual matrix E (variance-like), descending."""
        # E = yy − (explained part) loses precision relative to yy, not to E itself.
        assert self.yy is not None
        return _descending_eigvals(self.residual(), scale=float(np.linalg.eigvalsh(self.yy)[-1]))

    def regression(self) -> np.ndarray:
        """U₂* = E[yxᵀ] E[xxᵀ]⁺: the least-squares map from x to y that the optimal CVAE decoder learns."""
        if self.xy is None:
            raise DataError("the regression of y on x needs paired moments: Moments.from_data(x, y)")
        return self.xy.T @ _psd_pinv(self.xx)  # (d_y, d_x)
