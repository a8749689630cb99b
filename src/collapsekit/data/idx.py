"""MNIST in the IDX format: a strict reader, a directory loader and a download helper."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from collapsekit.data.dataset import Dataset
from collapsekit.errors import DataError, DataFileNotFoundError

__all__ = ["DEFAULT_MNIST_URL", "MNIST_FILES", "MNIST_MD5", "download_mnist", "load_mnist", "read_idx"]

DEFAULT_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# IDX type codes (third header byte); multi-byte values are big-endian.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it starts with the gzip magic (whatever its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileNotFoundError(f"IDX file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into an array of its header's type and shape.

    Parameters
    ----------
    path : str or path-like
        The file. Compression is detected from the gzip magic bytes, not from the name.

    Returns
    -------
    np.ndarray
        Shape from the header; dtype uint8, int8 or the native-endian form of int16, int32,
        float32 or float64. ubyte data is a read-only view of the file's bytes (no copy).

    Raises
    ------
    DataFileNotFoundError
        The file does not exist.
    DataError
        Bad magic, unknown type code, or a size that does not match the header.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic starts with {data[:2].hex()}, expected 0000)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_TYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02X}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, need {header_len})")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(f"{path}: {what}: header shape {shape} needs {expected} data bytes, file has {actual}")
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    if dtype.byteorder == ">":
        # One copy to native order so that later arithmetic is not byte-swapping on every access.
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _candidates(part: str) -> list[tuple[str, str]]:
    """(images, labels) base names to try for ``part``, in order; each also tried with ``.gz``."""
    prefix = "train" if part == "train" else "t10k"
    pairs = [
        (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"),
        # torchvision and some mirrors use a dot before "idx".
        (f"{prefix}-images.idx3-ubyte", f"{prefix}-labels.idx1-ubyte"),
    ]
    if part == "train":
        # Directories holding a single unnamed part (like the bundled mnist10k). Not offered for
        # t10k: returning the only part when the test part was asked for would mix up the two.
        pairs.append(("images-idx3-ubyte", "labels-idx1-ubyte"))
    return pairs


def _first_existing(directory: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def load_mnist(directory: str | os.PathLike[str], part: str = "train") -> Dataset:
    """Load MNIST (or any IDX image set laid out like it) from a directory.

    Parameters
    ----------
    directory : str or path-like
        Holds ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` (and/or the
        ``t10k-`` pair); torchvision's ``train-images.idx3-ubyte`` names are accepted too. For
        the training part, a directory with only ``images-idx3-ubyte[.gz]`` /
        ``labels-idx1-ubyte[.gz]`` is accepted as well.
    part : {"train", "t10k", "test"}
        Which part to read; ``"test"`` is an alias of ``"t10k"``.

    Returns
    -------
    Dataset
        ``x`` float32 pixels in [0, 1] (``/255``), ``labels`` when a labels file is present,
        ``image_shape`` from the IDX header (28×28 for MNIST), name ``"mnist"``.
    """
    directory = Path(directory).expanduser()
    if part not in ("train", "t10k", "test"):
        raise DataError(f"MNIST part must be 'train', 't10k' or 'test', got {part!r}")
    part = "t10k" if part == "test" else part
    if not directory.is_dir():
        raise DataFileNotFoundError(f"MNIST directory not found: {directory}")
    pairs = _candidates(part)
    for images_base, labels_base in pairs:
        images_path = _first_existing(directory, images_base)
        if images_path is not None:
            labels_path = _first_existing(directory, labels_base)
            break
    else:
        tried = ", ".join(f"{base}[.gz]" for base, _ in pairs)
        hint = ""
        if part == "t10k" and _first_existing(directory, "images-idx3-ubyte") is not None:
            hint = "; its images-idx3-ubyte file is a single unnamed part, loaded as part 'train'"
        raise DataFileNotFoundError(f"no MNIST {part} images in {directory} (tried {tried}){hint}")

    images = read_idx(images_path)
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected unsigned-byte pixels, got IDX type {images.dtype}")
    if images.ndim not in (2, 3):
        raise DataError(f"{images_path}: expected images of shape (n, H, W) or (n, d), got {images.shape}")
    n = images.shape[0]
    x = images.reshape(n, -1).astype(np.float32)
    x /= 255.0  # in place on the fresh float copy: no second large temporary
    image_shape = (int(images.shape[1]), int(images.shape[2])) if images.ndim == 3 else None

    labels = None
    if labels_path is not None:
        labels = read_idx(labels_path)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{labels_path}: expected a 1-D integer IDX array, got {labels.dtype} {labels.shape}")
        if labels.shape[0] != n:
            raise DataError(f"{labels_path}: {labels.shape[0]} labels for {n} images in {images_path.name}")
    return Dataset(x=x, labels=labels, image_shape=image_shape, name="mnist")


def _progress_bar(enabled: bool) -> tuple[Callable[[str, int | None], None], Callable[[int], None], Callable[[], None]]:
    """(start, advance, stop) callbacks drawing a rich progress bar on stderr, or no-ops."""
    if enabled:
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:  # rich is a dependency, but the bar is cosmetic: never fail over it
            enabled = False
    if not enabled:
        return (lambda name, total: None), (lambda k: None), (lambda: None)
    bar = Progress(console=Console(stderr=True), transient=True)
    state: dict[str, object] = {}

    def start(name: str, total: int | None) -> None:
        if not state:
            bar.start()
        state["task"] = bar.add_task(name, total=total)

    def advance(k: int) -> None:
        bar.advance(state["task"], k)  # type: ignore[arg-type]

    def stop() -> None:
        if state:
            bar.stop()

    return start, advance, stop


def _fetch(
    url: str, target: Path, md5: str | None, start: Callable[[str, int | None], None], advance: Callable[[int], None]
) -> None:
    """Download ``url`` into ``target`` atomically, checking ``md5`` when given."""
    digest = hashlib.md5()
    # A temporary in the target directory, so that os.replace is an atomic rename.
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    length = response.headers.get("Content-Length")
                    start(target.name, int(length) if length and length.isdigit() else None)
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        advance(len(chunk))
            except urllib.error.HTTPError as exc:
                raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise DataError(f"download of {url} failed: {exc.reason}") from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # ValueError: a malformed URL; OSError: timeouts, resets, disk full.
                raise DataError(f"download of {url} failed: {exc}") from None
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise DataError(f"{target.name}: MD5 {digest.hexdigest()} does not match the expected {md5}")
        os.replace(tmp, target)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a partial file behind.
        tmp.unlink(missing_ok=True)
        raise


def download_mnist(
    directory: str | os.PathLike[str],
    base_url: str = DEFAULT_MNIST_URL,
    *,
    force: bool = False,
    checksums: Mapping[str, str] | None = MNIST_MD5,
    progress: bool = True,
) -> Path:
    """Download the four standard MNIST ``.gz`` files into ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Created if missing.
    base_url : str
        Prefix each file name is appended to; any scheme urllib opens works (``file://`` too).
    force : bool
        Download files that are already present again.
    checksums : mapping of str to str or None
        Expected MD5 hex digest per file name; ``None`` (or a missing entry) skips the check.
    progress : bool
        Draw a progress bar on stderr.

    Returns
    -------
    Path
        ``directory``, ready for :func:`load_mnist`.

    Raises
    ------
    DataError
        A network error or an MD5 mismatch; the partial download is removed.
    """
    directory = Path(directory).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create MNIST directory {directory}: {exc.strerror or exc}") from None
    if not base_url.endswith("/"):
        base_url += "/"
    start, advance, stop = _progress_bar(progress)
    try:
        for name in MNIST_FILES:
            target = directory / name
            if target.is_file() and not force:
                continue
            md5 = None if checksums is None else checksums.get(name)
            _fetch(base_url + name, target, md5, start, advance)
    finally:
        stop()
    return directory
