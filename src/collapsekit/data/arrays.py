"""Data sets stored as plain arrays: ``.npy``, ``.npz`` and numeric ``.csv`` files."""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from collapsekit._validation import as_2d_finite
from collapsekit.data.dataset import Dataset
from collapsekit.errors import DataError, DataFileNotFoundError

__all__ = ["ARRAY_SUFFIXES", "load_array_file"]

ARRAY_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".csv")
_NPZ_KEYS = ("x", "y", "labels", "image_shape")
# Errors numpy raises on corrupt or pickled files (BadZipFile for a damaged .npz).
_LOAD_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def load_array_file(path: str | os.PathLike[str]) -> Dataset:
    """Load a data set from a ``.npy``, ``.npz`` or numeric ``.csv`` file.

    Parameters
    ----------
    path : str or path-like
        - ``.npy``: one 2-D array (examples × features), ``x``; a 1-D array is refused (is it examples or
          features?), with the reshape that says which.
        - ``.npz``: 2-D array ``x`` (required); ``y`` (a 1-D integer-valued ``y`` is read as class
          labels, a 2-D one as the paired output); ``labels``; ``image_shape`` (H, W).
        - ``.csv``: numbers separated by ``,``, ``;``, tabs or whitespace (detected); an optional
          header row (no cell a number) is skipped; blank lines and ``#`` comments are ignored.

    Returns
    -------
    Dataset
        Named after the file's stem. Pickled arrays are never loaded.

    Raises
    ------
    DataFileNotFoundError
        The file does not exist.
    DataError
        Unknown suffix, unreadable file, non-numeric or non-finite values, mismatched rows.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise DataError(f"{path}: unknown data file type {path.suffix!r} (accepted: {', '.join(ARRAY_SUFFIXES)})")
    if not path.exists():
        raise DataFileNotFoundError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    loaders: dict[str, Callable[[Path], Dataset]] = {".npy": _load_npy, ".npz": _load_npz, ".csv": _load_csv}
    return loaders[suffix](path)


def _load_npy(path: Path) -> Dataset:
    try:
        arr = np.load(path, allow_pickle=False)
    except _LOAD_ERRORS as exc:
        raise DataError(f"{path}: cannot be read as a .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):  # np.load sniffs content: a .npz renamed to .npy
        arr.close()
        raise DataError(f"{path}: holds an .npz archive, not a single array; rename it to .npz")
    _refuse_1d(path, arr)
    # Validated here under the file's name so the message says which file has the bad row.
    return Dataset(x=as_2d_finite(str(path), arr), name=path.stem)


def _refuse_1d(name: Path | str, arr: np.ndarray) -> None:
    """A file's 1-D array is ambiguous (n examples of one feature, or one example of n features): refuse it,
    suggesting the reshape that says which."""
    if arr.ndim == 1:
        n = arr.shape[0]
        raise DataError(f"{name}: a 1-D array of {n} values; collapsekit reads 2-D arrays (examples × features): "
                        f"save x.reshape(-1, 1) for {n} examples of one feature, or x.reshape(1, -1) for one "
                        f"example of {n} features")


def _is_integer_valued(arr: np.ndarray) -> bool:
    if np.issubdtype(arr.dtype, np.integer):
        return True
    if np.issubdtype(arr.dtype, np.floating):
        return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    return False


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: holds a single array, not an .npz archive; rename it to .npy")
            unknown = [key for key in archive.files if key not in _NPZ_KEYS]
            if unknown:
                raise DataError(f"{path}: unexpected array {unknown[0]!r} (accepted: {', '.join(_NPZ_KEYS)})")
            if "x" not in archive.files:
                found = ", ".join(archive.files) or "none"
                raise DataError(f"{path}: no array named 'x' (found: {found})")
            arrays = {key: archive[key] for key in archive.files}
    except DataError:  # a ValueError too: keep our own messages out of the generic wrapper below
        raise
    except _LOAD_ERRORS as exc:
        raise DataError(f"{path}: cannot be read as an .npz archive ({exc})") from None

    _refuse_1d(f"{path}[x]", arrays["x"])
    x = as_2d_finite(f"{path}[x]", arrays["x"])
    y = arrays.get("y")
    labels = arrays.get("labels")
    if y is not None and y.ndim == 1 and _is_integer_valued(y):
        if labels is not None:
            raise DataError(f"{path}: has both 'labels' and a 1-D integer 'y' (read as labels); keep one")
        y, labels = None, y
    if y is not None:
        y = as_2d_finite(f"{path}[y]", y)
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{path}: x has {x.shape[0]} rows but y has {y.shape[0]}")
    if labels is not None and labels.ndim == 1 and labels.shape[0] != x.shape[0]:
        raise DataError(f"{path}: x has {x.shape[0]} rows but labels has {labels.shape[0]} entries")
    image_shape = arrays.get("image_shape")
    shape: tuple[int, int] | None = None
    if image_shape is not None:
        if image_shape.shape != (2,) or not np.issubdtype(image_shape.dtype, np.integer):
            raise DataError(f"{path}: 'image_shape' must hold two integers, got {image_shape!r}")
        shape = (int(image_shape[0]), int(image_shape[1]))
    return Dataset(x=x, y=y, labels=labels, image_shape=shape, name=path.stem)


def _split_function(delimiter: str | None) -> Callable[[str], list[str]]:
    if delimiter is None:
        return str.split  # any run of whitespace
    return lambda line: [cell.strip() for cell in line.split(delimiter)]


def _parses_as_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_csv(path: Path) -> Dataset:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drop a spreadsheet's byte-order mark
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # (1-based line number, text) of every line that carries data or a header.
    # ``#`` starts a comment, as for np.loadtxt.
    lines = [
        (number, line.split("#", 1)[0])
        for number, line in enumerate(text.splitlines(), start=1)
        if line.split("#", 1)[0].strip()
    ]
    if not lines:
        raise DataError(f"{path}: no data rows")

    # Numbers never contain ';' or tabs, so those win over ','; whitespace is the fallback.
    head = " ".join(line for _, line in lines[:5])
    delimiter = next((d for d in (";", "\t", ",") if d in head), None)
    split = _split_function(delimiter)

    if not any(_parses_as_number(cell) for cell in split(lines[0][1])):
        lines = lines[1:]  # a header row: no cell is a number
        if not lines:
            raise DataError(f"{path}: a header row but no data rows")

    try:
        # Fast path (C parser); any failure or non-finite value is re-parsed below for a precise
        # message naming the line and column.
        values = np.loadtxt([line for _, line in lines], delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        values = _parse_csv_rows(path, lines, split)
    return Dataset(x=values, name=path.stem)


def _parse_csv_rows(path: Path, lines: list[tuple[int, str]], split: Callable[[str], list[str]]) -> np.ndarray:
    """Cell-by-cell parse that raises :class:`DataError` at the first bad line or cell."""
    first_number, first_line = lines[0]
    width = len(split(first_line))
    rows = np.empty((len(lines), width), dtype=np.float64)
    for i, (number, line) in enumerate(lines):
        cells = split(line)
        if len(cells) != width:
            raise DataError(f"{path} line {number}: {len(cells)} values, expected {width} (as on line {first_number})")
        for column, cell in enumerate(cells, start=1):
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{path} line {number}, column {column}: {cell!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{path} line {number}, column {column}: {cell!r} is not a finite number")
            rows[i, column - 1] = value
    return rows
