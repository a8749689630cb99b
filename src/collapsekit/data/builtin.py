"""mnist10k: 10,000 real MNIST digits shipped inside the package (no download).

The two gzip IDX files live in ``collapsekit/data/mnist10k/`` beside their README (provenance,
class counts, checksums) and the data's licence notice (CC BY-SA 3.0, unlike the code). They are
read with the same strict IDX reader as a downloaded MNIST (:func:`~collapsekit.data.idx.read_idx`),
after their SHA-256 sums are checked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from collapsekit.data.dataset import Dataset
from collapsekit.data.idx import load_mnist
from collapsekit.errors import DataError, DataFileNotFoundError

__all__ = ["MNIST10K_CLASS_COUNTS", "MNIST10K_DIR", "MNIST10K_SHA256", "load_mnist10k"]

#: Where the files are installed (package data of ``collapsekit.data``).
MNIST10K_DIR = Path(__file__).resolve().parent / "mnist10k"

#: SHA-256 of each file, as its README lists them.
MNIST10K_SHA256: dict[str, str] = {
    "images-idx3-ubyte.gz": "a5cb71e59ffec2109a8aa2f654218c203af7ae968881f5e45e6a8e4811f3ed01",
    "labels-idx1-ubyte.gz": "f1598df3b2c9dd9b9e1eb9ee55c4f94fc2013d05b1c30da604f404a2791b6461",
}

#: Examples of each digit 0–9 (10,000 in all).
MNIST10K_CLASS_COUNTS: tuple[int, ...] = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)


def _check(path: Path, expected: str) -> None:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise DataFileNotFoundError(f"the bundled mnist10k file {path} is missing: reinstall collapsekit") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if digest != expected:
        raise DataError(f"{path}: SHA-256 {digest} does not match the expected {expected}: reinstall collapsekit")


def load_mnist10k() -> Dataset:
    """The 10,000 MNIST digits bundled with collapsekit (``--data mnist10k``).

    Returns
    -------
    Dataset
        ``x`` 10000×784 float32 in [0, 1] (grey levels 0..255 divided by 255), ``labels`` 0..9
        (:data:`MNIST10K_CLASS_COUNTS` of each), ``image_shape`` (28, 28), name ``"mnist10k"``.
        The rows are shuffled with a fixed seed: the first 29 already hold all ten digits.

    Raises
    ------
    DataError
        A file is missing or does not match its SHA-256 sum (a damaged installation).
    """
    for name, expected in MNIST10K_SHA256.items():
        _check(MNIST10K_DIR / name, expected)
    ds = load_mnist(MNIST10K_DIR, "train")
    return Dataset(x=ds.x, labels=ds.labels, image_shape=ds.image_shape, name="mnist10k")
