"""IDX reading, MNIST directory loading and the MNIST download helper."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import collapsekit.data.builtin as builtin
from collapsekit.data import (
    MNIST10K_CLASS_COUNTS,
    MNIST10K_DIR,
    MNIST10K_SHA256,
    MNIST_FILES,
    apply_views,
    download_mnist,
    load,
    load_mnist,
    load_mnist10k,
    read_idx,
)
from collapsekit.errors import DataError, DataFileNotFoundError

_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` in the IDX format (big-endian), independently of the reader under test."""
    code = _CODES[arr.dtype.kind + str(arr.dtype.itemsize)]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, compress: bool) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def random_digits(n: int, seed: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


# --- read_idx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, dtype: type, compress: bool) -> None:
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=(5, 3, 4), endpoint=True).astype(dtype)
    else:
        arr = rng.standard_normal((5, 3, 4)).astype(dtype)
    back = read_idx(write_idx(tmp_path / "a.idx", arr, compress=compress))
    assert back.dtype == np.dtype(dtype)  # native byte order, same kind
    np.testing.assert_array_equal(back, arr)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    gz_without_suffix = write_idx(tmp_path / "plain-name", arr, compress=True)
    raw_with_gz_suffix = write_idx(tmp_path / "looks.gz", arr, compress=False)
    np.testing.assert_array_equal(read_idx(gz_without_suffix), arr)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), arr)


def test_read_idx_one_dimensional(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l", labels, compress=False)), labels)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated_file(tmp_path: Path, compress: bool) -> None:
    data = idx_bytes(np.zeros((4, 5, 5), dtype=np.uint8))[:-1]
    path = tmp_path / "short.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=r"short\.idx.*truncated"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 2), dtype=np.uint8)) + b"\0")
    with pytest.raises(DataError, match="trailing"):
        read_idx(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\x01\x00\x08\x01", "not an IDX file"),
        (b"\x00\x00\x07\x01", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00", "only 2 bytes"),
    ],
)
def test_read_idx_bad_header(tmp_path: Path, header: bytes, message: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(header)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert "bad.idx" in str(info.value)


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 50), dtype=np.uint8)))[:-10])
    with pytest.raises(DataError, match=r"broken\.gz.*gzip"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFoundError, match=r"nothing\.idx"):
        read_idx(tmp_path / "nothing.idx")


# --- load_mnist ----------------------------------------------------------------------------------


def make_mnist_dir(directory: Path, *, names: str = "standard", n_train: int = 12, n_test: int = 7) -> dict:
    """Write train (gzip) and t10k (raw) IDX files under the given naming scheme."""
    directory.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = random_digits(n_train, seed=2)
    test_images, test_labels = random_digits(n_test, seed=3)
    if names == "standard":
        write_idx(directory / "train-images-idx3-ubyte.gz", train_images, compress=True)
        write_idx(directory / "train-labels-idx1-ubyte.gz", train_labels, compress=True)
        write_idx(directory / "t10k-images-idx3-ubyte", test_images, compress=False)
        write_idx(directory / "t10k-labels-idx1-ubyte", test_labels, compress=False)
    elif names == "torchvision":
        write_idx(directory / "train-images.idx3-ubyte", train_images, compress=False)
        write_idx(directory / "train-labels.idx1-ubyte", train_labels, compress=False)
    elif names == "generic":
        write_idx(directory / "images-idx3-ubyte.gz", train_images, compress=True)
        write_idx(directory / "labels-idx1-ubyte.gz", train_labels, compress=True)
    return {"train": (train_images, train_labels), "t10k": (test_images, test_labels)}


def assert_matches(ds, images: np.ndarray, labels: np.ndarray | None) -> None:
    n, h, w = images.shape
    assert ds.name == "mnist" and ds.image_shape == (h, w) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x, images.reshape(n, h * w).astype(np.float32) / np.float32(255))
    if labels is None:
        assert ds.labels is None
    else:
        np.testing.assert_array_equal(ds.labels, labels)


def test_load_mnist_standard_names(tmp_path: Path) -> None:
    written = make_mnist_dir(tmp_path)
    assert_matches(load_mnist(tmp_path), *written["train"])
    assert_matches(load_mnist(tmp_path, "t10k"), *written["t10k"])
    assert_matches(load_mnist(str(tmp_path), part="test"), *written["t10k"])


@pytest.mark.parametrize("names", ["torchvision", "generic"])
def test_load_mnist_other_layouts(tmp_path: Path, names: str) -> None:
    written = make_mnist_dir(tmp_path, names=names)
    assert_matches(load_mnist(tmp_path), *written["train"])


def test_load_mnist_generic_layout_is_not_a_test_part(tmp_path: Path) -> None:
    make_mnist_dir(tmp_path, names="generic")
    with pytest.raises(DataFileNotFoundError, match="single unnamed part"):
        load_mnist(tmp_path, "t10k")


def test_load_mnist_without_labels(tmp_path: Path) -> None:
    images, _ = random_digits(5, seed=4, side=6)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=False)
    ds = load_mnist(tmp_path)
    assert_matches(ds, images, None)
    assert ds.image_shape == (6, 6)  # taken from the header, not assumed


def test_load_mnist_label_count_mismatch(tmp_path: Path) -> None:
    images, labels = random_digits(5, seed=5)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:4], compress=False)
    with pytest.raises(DataError, match="4 labels for 5 images"):
        load_mnist(tmp_path)


def test_load_mnist_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):  # DataFileNotFoundError is one
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(DataFileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte[.gz]" in message and "\n" not in message


def test_load_mnist_bad_part(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="part"):
        load_mnist(tmp_path, "validation")


# --- the bundled mnist10k ------------------------------------------------------------------------

#: What the data's README documents, typed here independently of the code's constants.
DOCUMENTED_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def readme_sha256s() -> dict[str, str]:
    """The file → SHA-256 pairs the README beside the files lists (its table rows)."""
    found = {}
    for line in (MNIST10K_DIR / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].endswith(".gz"):
            found[cells[0]] = cells[2]
    return found


def test_bundled_mnist10k() -> None:
    ds = load("mnist10k")
    assert ds.name == "mnist10k" and ds.x.shape == (10000, 784) and ds.x.dtype == np.float32
    assert ds.image_shape == (28, 28)
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    # 8-bit grey levels: every value is a byte divided by 255
    np.testing.assert_array_equal(np.round(ds.x * 255) / np.float32(255), ds.x)
    assert np.bincount(ds.labels, minlength=10).tolist() == DOCUMENTED_COUNTS == list(MNIST10K_CLASS_COUNTS)
    # the README documents the counts too
    readme = (MNIST10K_DIR / "README.md").read_text(encoding="utf-8")
    assert "| count | " + " | ".join(map(str, DOCUMENTED_COUNTS)) + " |" in readme
    # Real digits, not noise: most pixels are background and each image has some ink.
    assert (ds.x == 0).mean() > 0.7
    assert (ds.x.max(axis=1) > 0.5).all()
    # shuffled: the first 29 examples already hold every digit
    assert set(ds.labels[:29].tolist()) == set(range(10))
    # the same bytes as the IDX files read by the MNIST directory loader
    np.testing.assert_array_equal(load_mnist(MNIST10K_DIR).x, ds.x)
    np.testing.assert_array_equal(load_mnist10k().labels, ds.labels)
    # digit data: a one-digit subset keeps ten one-hot classes (like digits and mnist)
    sevens = apply_views(ds, digit=7, condition="label")
    assert sevens.n == DOCUMENTED_COUNTS[7] and sevens.x.shape[1] == 10 and (sevens.x[:, 7] == 1).all()


def test_bundled_mnist10k_checksums_match_the_readme() -> None:
    documented = readme_sha256s()
    assert set(documented) == {"images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"} == set(MNIST10K_SHA256)
    for name, digest in documented.items():
        assert hashlib.sha256((MNIST10K_DIR / name).read_bytes()).hexdigest() == digest == MNIST10K_SHA256[name]
    # the data's licence travels with it
    notice = (MNIST10K_DIR / "LICENSE").read_text(encoding="utf-8")
    assert "Attribution-ShareAlike 3.0 Unported" in notice and "LeCun" in notice and "Copyright (c) 2015" in notice


def test_bundled_mnist10k_refuses_a_damaged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MNIST10K_SHA256:
        (tmp_path / name).write_bytes((MNIST10K_DIR / name).read_bytes())
    monkeypatch.setattr(builtin, "MNIST10K_DIR", tmp_path)
    assert load("mnist10k").n == 10000                     # an intact copy loads
    labels = tmp_path / "labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(raw[:-1] + bytes([(raw[-1] + 1) % 10]), mtime=0))   # one label changed
    with pytest.raises(DataError, match="SHA-256 .* does not match") as info:
        load("mnist10k")
    assert "\n" not in str(info.value)
    labels.unlink()
    with pytest.raises(DataFileNotFoundError, match="missing") as info:
        load("mnist10k")
    assert "\n" not in str(info.value)


def test_mnist_spec_forms(tmp_path: Path) -> None:
    written = make_mnist_dir(tmp_path / "with:colon")
    directory = tmp_path / "with:colon"
    assert_matches(load(f"mnist:{directory}"), *written["train"])
    assert_matches(load(f"mnist:{directory}:train"), *written["train"])
    assert_matches(load(f"mnist:{directory}:t10k"), *written["t10k"])
    assert_matches(load(f"mnist:{directory}:test"), *written["t10k"])
    with pytest.raises(DataFileNotFoundError):
        load(f"mnist:{tmp_path / 'absent'}")


# --- download_mnist ------------------------------------------------------------------------------


@pytest.fixture()
def mirror(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A file:// "mirror" holding the four standard gz files, and their MD5 sums."""
    source = tmp_path / "mirror"
    source.mkdir()
    train_images, train_labels = random_digits(9, seed=6)
    test_images, test_labels = random_digits(4, seed=7)
    arrays = [train_images, train_labels, test_images, test_labels]
    for name, arr in zip(MNIST_FILES, arrays, strict=True):
        write_idx(source / name, arr, compress=True)
    sums = {name: hashlib.md5((source / name).read_bytes()).hexdigest() for name in MNIST_FILES}
    return source.as_uri() + "/", sums


def test_download_mnist_from_file_url(tmp_path: Path, mirror: tuple[str, dict[str, str]]) -> None:
    base_url, sums = mirror
    dest = download_mnist(tmp_path / "dest" / "nested", base_url, checksums=sums, progress=False)
    assert dest == tmp_path / "dest" / "nested"
    assert sorted(p.name for p in dest.iterdir()) == sorted(MNIST_FILES)  # no temporaries left
    source = Path(base_url.removeprefix("file://"))
    for name in MNIST_FILES:
        assert (dest / name).read_bytes() == (source / name).read_bytes()
    assert load_mnist(dest).n == 9 and load_mnist(dest, "t10k").n == 4


def test_download_mnist_base_url_without_slash_and_progress(tmp_path: Path, mirror: tuple[str, dict[str, str]]) -> None:
    base_url, _ = mirror
    dest = download_mnist(tmp_path / "dest", base_url.rstrip("/"), checksums=None, progress=True)
    assert load_mnist(dest).n == 9


def test_download_mnist_checksum_mismatch(tmp_path: Path, mirror: tuple[str, dict[str, str]]) -> None:
    base_url, sums = mirror
    wrong = dict(sums, **{"t10k-images-idx3-ubyte.gz": "0" * 32})
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: MD5"):
        download_mnist(dest, base_url, checksums=wrong, progress=False)
    # The files before the bad one were kept; the bad one and any temporary are gone.
    assert sorted(p.name for p in dest.iterdir()) == sorted(MNIST_FILES[:2])


def test_download_mnist_skips_present_files_unless_forced(tmp_path: Path, mirror: tuple[str, dict[str, str]]) -> None:
    base_url, sums = mirror
    dest = tmp_path / "dest"
    download_mnist(dest, base_url, checksums=sums, progress=False)
    target = dest / MNIST_FILES[0]
    good = target.read_bytes()
    old = 1_000_000_000  # 2001: any rewrite would move the mtime
    os.utime(target, (old, old))
    download_mnist(dest, base_url, checksums=sums, progress=False)
    assert target.stat().st_mtime == old and target.read_bytes() == good
    target.write_bytes(b"stale")
    download_mnist(dest, base_url, checksums=None, progress=False)
    assert target.read_bytes() == b"stale"  # present: not fetched again
    download_mnist(dest, base_url, checksums=sums, force=True, progress=False)
    assert target.read_bytes() == good and target.stat().st_mtime != old


@pytest.mark.parametrize("base_url", ["missing", "nosuchscheme://host/mnist/"])
def test_download_mnist_network_errors(tmp_path: Path, base_url: str) -> None:
    if base_url == "missing":
        base_url = (tmp_path / "no-mirror").as_uri() + "/"
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"download of .*train-images-idx3-ubyte\.gz failed") as info:
        download_mnist(dest, base_url, checksums=None, progress=False)
    assert "\n" not in str(info.value)
    assert list(dest.iterdir()) == []
