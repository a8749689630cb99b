"""Dataset validation, array files, synthetic generators, views and spec strings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collapsekit.data import (
    SPEC_HELP,
    Dataset,
    apply_views,
    correlated_pairs,
    digit_filter,
    gaussian,
    gaussian_decay,
    label_condition,
    load,
    load_array_file,
    load_digits,
    quadrant_merge,
    quadrant_split,
    train_test_split,
)
from collapsekit.errors import DataError, DataFileNotFoundError


def images_dataset(n: int = 6, side: int = 4, seed: int = 0, name: str = "imgs") -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(x=rng.random((n, side * side)), labels=np.arange(n) % 3, image_shape=(side, side), name=name)


# --- Dataset -------------------------------------------------------------------------------------


def test_dataset_normalises_and_validates() -> None:
    ds = Dataset(x=np.arange(6).reshape(3, 2), labels=np.array([0.0, 2.0, 1.0]))
    assert ds.x.dtype == np.float64 and ds.labels.dtype == np.int64 and ds.n == 3 and ds.d_x == 2
    assert Dataset(x=np.ones((2, 3), dtype=np.float32)).x.dtype == np.float32
    assert Dataset(x=np.arange(4.0)).x.shape == (4, 1)  # 1-D is one column
    with pytest.raises(DataError, match="x has 100 rows but y has 99"):
        Dataset(x=np.zeros((100, 2)), y=np.zeros((99, 2)))
    with pytest.raises(DataError, match="labels"):
        Dataset(x=np.zeros((3, 2)), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="not an integer"):
        Dataset(x=np.zeros((3, 2)), labels=np.array([0, 1.5, 2]))
    with pytest.raises(DataError, match="image_shape"):
        Dataset(x=np.zeros((3, 16)), image_shape=(4, 5))
    with pytest.raises(DataError, match="x: row 1 contains NaN"):
        Dataset(x=np.array([[0.0, 1.0], [np.nan, 2.0]]))
    with pytest.raises(DataError, match="y: row 0 contains an infinite"):
        Dataset(x=np.zeros((1, 1)), y=np.array([[np.inf]]))


def test_dataset_is_frozen_and_has_short_repr() -> None:
    ds = images_dataset()
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]
    assert repr(ds) == "Dataset(name='imgs', n=6, d_x=16, labels, image_shape=(4, 4))"


# --- digits --------------------------------------------------------------------------------------


def test_load_digits() -> None:
    ds = load_digits()
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert set(np.unique(ds.labels)) == set(range(10))
    assert ds.image_shape == (8, 8) and ds.name == "digits"
    # Grey levels were 0..16: every value is a multiple of 1/16.
    np.testing.assert_array_equal(ds.x * 16, np.round(ds.x * 16))


# --- array files ---------------------------------------------------------------------------------


def test_npy_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((7, 3))
    np.save(tmp_path / "m.npy", x)
    ds = load_array_file(tmp_path / "m.npy")
    np.testing.assert_array_equal(ds.x, x)
    assert ds.name == "m" and ds.y is None and ds.labels is None


def test_a_1d_npy_is_refused_with_the_reshape_that_says_which(tmp_path: Path) -> None:
    """Five values are five examples of one feature or one example of five: the file must say (issue 10 §3)."""
    np.save(tmp_path / "v.npy", np.arange(5.0))
    with pytest.raises(DataError, match=r"v\.npy: a 1-D array of 5 values.*x\.reshape\(-1, 1\).*x\.reshape\(1, -1\)"):
        load_array_file(str(tmp_path / "v.npy"))
    np.savez(tmp_path / "v.npz", x=np.arange(5.0))
    with pytest.raises(DataError, match=r"v\.npz\[x\]: a 1-D array of 5 values"):
        load_array_file(tmp_path / "v.npz")


def test_npy_nan_row_is_named(tmp_path: Path) -> None:
    x = np.ones((6, 2))
    x[4, 1] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(DataError, match=r"bad\.npy: row 4 contains NaN"):
        load_array_file(tmp_path / "bad.npy")


def test_npy_pickled_objects_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy"):
        load_array_file(tmp_path / "obj.npy")


def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, y, labels = rng.random((5, 4)), rng.random((5, 2)), np.array([0, 1, 1, 0, 2])
    np.savez(tmp_path / "pair.npz", x=x, y=y, labels=labels, image_shape=np.array([2, 2]))
    ds = load_array_file(tmp_path / "pair.npz")
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.image_shape == (2, 2)


@pytest.mark.parametrize("y", [np.array([3, 1, 2]), np.array([3.0, 1.0, 2.0])])
def test_npz_integer_valued_1d_y_is_labels(tmp_path: Path, y: np.ndarray) -> None:
    np.savez(tmp_path / "lab.npz", x=np.zeros((3, 2)), y=y)
    ds = load_array_file(tmp_path / "lab.npz")
    assert ds.y is None
    np.testing.assert_array_equal(ds.labels, [3, 1, 2])


def test_npz_real_valued_1d_y_is_output(tmp_path: Path) -> None:
    np.savez(tmp_path / "reg.npz", x=np.zeros((3, 2)), y=np.array([0.5, 1.0, 2.0]))
    ds = load_array_file(tmp_path / "reg.npz")
    assert ds.labels is None and ds.y.shape == (3, 1)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 2)), "y": np.zeros((3, 2))}, "x has 4 rows but y has 3"),
        ({"x": np.zeros((4, 2)), "labels": np.zeros(5, dtype=int)}, "x has 4 rows but labels has 5"),
        ({"y": np.zeros((3, 2))}, "no array named 'x'"),
        ({"x": np.zeros((3, 2)), "X2": np.zeros(3)}, "unexpected array 'X2'"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_array_file(tmp_path / "bad.npz")


@pytest.mark.parametrize(("delimiter", "sep"), [(",", ","), (";", ";"), ("\t", "\t"), (" ", "   ")])
def test_csv_round_trip(tmp_path: Path, delimiter: str, sep: str) -> None:
    x = np.random.default_rng(2).standard_normal((6, 3))
    lines = [sep.join(repr(float(v)) for v in row) for row in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(load_array_file(tmp_path / "t.csv").x, x)


def test_csv_header_comments_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("\ufeffa, b ,c\n# a comment\n1, 2, 3\n\n4,5,6  # trailing note\n")
    ds = load_array_file(tmp_path / "h.csv")
    np.testing.assert_array_equal(ds.x, [[1, 2, 3], [4, 5, 6]])
    assert ds.name == "h"


def test_csv_header_with_a_number_is_data_and_fails(tmp_path: Path) -> None:
    # A first row mixing names and numbers is not a header: its text cell is an error.
    (tmp_path / "m.csv").write_text("a,1,2\n3,4,5\n")
    with pytest.raises(DataError, match=r"line 1, column 1: 'a' is not a number"):
        load_array_file(tmp_path / "m.csv")


def test_csv_non_numeric_cell_names_line_and_column(tmp_path: Path) -> None:
    rows = ["x,y,z"] + [f"{i},{i},{i}" for i in range(5)] + ["1,2,abc", "7,8,9"]
    path = tmp_path / "file.csv"
    path.write_text("\n".join(rows))
    with pytest.raises(DataError) as info:
        load_array_file(path)
    assert str(info.value) == f"{path} line 7, column 3: 'abc' is not a number"


def test_csv_ragged_and_nan_rows(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(DataError, match=r"r\.csv line 2: 2 values, expected 3"):
        load_array_file(tmp_path / "r.csv")
    (tmp_path / "n.csv").write_text("1 2\n3 nan\n")
    with pytest.raises(DataError, match=r"n\.csv line 2, column 2: 'nan' is not a finite number"):
        load_array_file(tmp_path / "n.csv")
    (tmp_path / "e.csv").write_text("# only a comment\n\n")
    with pytest.raises(DataError, match="no data rows"):
        load_array_file(tmp_path / "e.csv")


def test_array_file_missing_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFoundError, match=r"gone\.npy") as info:
        load_array_file(tmp_path / "gone.npy")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataError)
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(DataError, match=r"unknown data file type '\.txt'"):
        load_array_file(tmp_path / "data.txt")


# --- synthetic -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rotate", [True, False])
@pytest.mark.parametrize("n", [4, 500])
def test_gaussian_exact_second_moment(rotate: bool, n: int) -> None:
    eigs = np.array([9.0, 4.0, 1.0, 0.25])
    ds = gaussian(eigs, n, seed=3, rotate=rotate, exact=True)
    moment = ds.x.T @ ds.x / n
    np.testing.assert_allclose(np.linalg.eigvalsh(moment)[::-1], eigs, rtol=0, atol=1e-10)
    if not rotate:
        np.testing.assert_allclose(moment, np.diag(eigs), rtol=0, atol=1e-10)
    else:
        assert np.abs(moment - np.diag(eigs)).max() > 0.1  # the basis really is rotated


def test_gaussian_sampled_second_moment() -> None:
    eigs = np.array([9.0, 4.0, 1.0, 0.25])
    ds = gaussian(eigs, 100_000, seed=4)
    assert ds.x.dtype == np.float64 and ds.x.shape == (100_000, 4)
    got = np.linalg.eigvalsh(ds.x.T @ ds.x / ds.n)[::-1]
    np.testing.assert_allclose(got, eigs, rtol=0.05)  # sampling sd ≈ λ·√(2/n) ≈ 0.45 %


def test_gaussian_is_seeded_and_validated() -> None:
    np.testing.assert_array_equal(gaussian([1, 2], 10, seed=5).x, gaussian([1, 2], 10, seed=5).x)
    assert not np.array_equal(gaussian([1, 2], 10, seed=5).x, gaussian([1, 2], 10, seed=6).x)
    for bad in ([1, -1], [1, np.nan], [], [[1, 2]], ["a"]):
        with pytest.raises(DataError, match="eigenvalues"):
            gaussian(bad, 10)
    with pytest.raises(DataError, match="n must be ≥ 1"):
        gaussian([1.0], 0)
    with pytest.raises(DataError, match="n ≥ d"):
        gaussian([1.0, 1.0, 1.0], 2, exact=True)


def test_gaussian_decay_spectrum() -> None:
    ds = gaussian_decay(6, 50, decay=0.5, scale=2.0, seed=1, exact=True)
    expected = 2.0 * 0.5 ** np.arange(6)
    np.testing.assert_allclose(np.linalg.eigvalsh(ds.x.T @ ds.x / 50)[::-1], expected, atol=1e-10)
    with pytest.raises(DataError, match="scale"):
        gaussian_decay(3, 10, scale=0)


def test_correlated_pairs() -> None:
    ds = correlated_pairs(1.0, 50, 6, seed=1)
    np.testing.assert_array_equal(ds.x, ds.y)
    ds = correlated_pairs(0.5, 20_000, 8, seed=2)
    assert ds.name == "correlated(rho=0.5)" and ds.x.shape == ds.y.shape == (20_000, 8)
    cross = ds.x.T @ ds.y / ds.n
    np.testing.assert_allclose(cross, 0.5 * np.eye(8), atol=0.04)  # entry sd ≈ 0.008
    np.testing.assert_allclose(ds.x.T @ ds.x / ds.n, np.eye(8), atol=0.06)
    uncorrelated = correlated_pairs(0.0, 20_000, 4, seed=3)
    np.testing.assert_allclose(uncorrelated.x.T @ uncorrelated.y / 20_000, 0, atol=0.04)
    for rho in (-0.1, 1.5, float("nan")):
        with pytest.raises(DataError, match="rho"):
            correlated_pairs(rho, 10, 2)


# --- views ---------------------------------------------------------------------------------------


def test_quadrant_split_4x4_by_hand() -> None:
    image = np.arange(16.0)  # row-major 4×4: row r holds 4r .. 4r+3
    ds = Dataset(x=np.stack([image, 100 + image]), labels=np.array([7, 1]), image_shape=(4, 4), name="pic")
    split = quadrant_split(ds)
    expected_x = np.array([[8, 9, 12, 13], [108, 109, 112, 113]], dtype=float)  # bottom-left
    expected_y = np.array(
        [
            [0, 1, 4, 5, 2, 3, 6, 7, 10, 11, 14, 15],  # top-left, top-right, bottom-right
            [100, 101, 104, 105, 102, 103, 106, 107, 110, 111, 114, 115],
        ],
        dtype=float,
    )
    np.testing.assert_array_equal(split.x, expected_x)
    np.testing.assert_array_equal(split.y, expected_y)
    np.testing.assert_array_equal(split.labels, [7, 1])
    assert split.image_shape is None and split.name == "pic/quadrants"


def test_quadrant_split_28x28_matches_slicing_and_merge_inverts() -> None:
    ds = images_dataset(n=5, side=28, seed=9)
    split = quadrant_split(ds)
    images = ds.x.reshape(5, 28, 28)
    assert split.x.shape == (5, 196) and split.y.shape == (5, 588)
    np.testing.assert_array_equal(split.x, images[:, 14:, :14].reshape(5, -1))
    np.testing.assert_array_equal(quadrant_merge(split.x, split.y, 28), ds.x)
    np.testing.assert_array_equal(quadrant_merge(split.x[2], split.y[2], 28), ds.x[2:3])  # one sample
    with pytest.raises(DataError, match="expected 196"):
        quadrant_merge(split.y, split.y, 28)
    with pytest.raises(DataError, match="even"):
        quadrant_merge(split.x, split.y, 27)


@pytest.mark.parametrize(("shape", "message"), [((3, 3), "even"), ((2, 8), "square"), (None, "image_shape")])
def test_quadrant_split_preconditions(shape: tuple[int, int] | None, message: str) -> None:
    d = 16 if shape is None else shape[0] * shape[1]
    with pytest.raises(DataError, match=message):
        quadrant_split(Dataset(x=np.zeros((2, d)), image_shape=shape))
    with pytest.raises(DataError, match="paired output"):
        quadrant_split(Dataset(x=np.zeros((2, 16)), y=np.zeros((2, 1)), image_shape=(4, 4)))


def test_label_condition() -> None:
    ds = images_dataset()  # labels 0,1,2,0,1,2
    cond = label_condition(ds)
    np.testing.assert_array_equal(cond.x, np.eye(3)[[0, 1, 2, 0, 1, 2]])
    np.testing.assert_array_equal(cond.y, ds.x)
    assert cond.name == "imgs/label-condition"
    assert label_condition(ds, num_classes=5).x.shape == (6, 5)
    # Digit data keeps ten classes even when a subset lacks some digits.
    digits = Dataset(x=np.zeros((2, 4)), labels=np.array([3, 1]), name="mnist/train")
    np.testing.assert_array_equal(label_condition(digits).x, np.eye(10)[[3, 1]])
    with pytest.raises(DataError, match="num_classes"):
        label_condition(ds, num_classes=2)
    with pytest.raises(DataError, match="labels"):
        label_condition(Dataset(x=np.zeros((2, 2))))


def test_digit_filter() -> None:
    ds = images_dataset()
    three = digit_filter(ds, 1)
    np.testing.assert_array_equal(three.x, ds.x[[1, 4]])
    assert (three.labels == 1).all() and three.image_shape == (4, 4) and three.name == "imgs/digit=1"
    with pytest.raises(DataError, match=r"no row .* label 7"):
        digit_filter(ds, 7)
    with pytest.raises(DataError, match="labels"):
        digit_filter(Dataset(x=np.zeros((2, 2))), 0)


def test_train_test_split_is_a_seeded_partition() -> None:
    ds = Dataset(x=np.arange(50.0), labels=np.arange(50) % 10, name="d")
    train, test = train_test_split(ds, test_fraction=0.2, seed=3)
    assert (train.n, test.n) == (40, 10) and (train.name, test.name) == ("d/train", "d/test")
    train_ids, test_ids = train.x[:, 0].astype(int), test.x[:, 0].astype(int)
    assert set(train_ids).isdisjoint(test_ids) and set(train_ids) | set(test_ids) == set(range(50))
    np.testing.assert_array_equal(train.labels, train_ids % 10)  # rows stay aligned
    again, _ = train_test_split(ds, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again.x, train.x)
    other, _ = train_test_split(ds, test_fraction=0.2, seed=4)
    assert not np.array_equal(other.x, train.x)
    for fraction in (0.0, 1.0, -0.5, float("nan")):
        with pytest.raises(DataError, match="test_fraction"):
            train_test_split(ds, test_fraction=fraction)
    with pytest.raises(DataError, match="empty part"):
        train_test_split(Dataset(x=np.zeros((3, 1))), test_fraction=0.1)


def test_apply_views_order_and_exclusivity() -> None:
    ds = images_dataset(n=30, side=4, seed=2, name="mnist")
    out = apply_views(ds, digit=2, part="test", test_fraction=0.3, seed=1, split="quadrants")
    assert out.name == "mnist/digit=2/test/quadrants" and out.n == 3 and (out.labels == 2).all()
    cond = apply_views(ds, condition="label")
    assert cond.x.shape == (30, 10) and cond.y.shape == (30, 16)
    assert apply_views(ds) is ds
    with pytest.raises(DataError, match="choose one"):
        apply_views(ds, split="quadrants", condition="label")
    with pytest.raises(DataError, match="split"):
        apply_views(ds, split="halves")
    with pytest.raises(DataError, match="part"):
        apply_views(ds, part="validation")


# --- spec strings --------------------------------------------------------------------------------


def test_spec_digits_and_files(tmp_path: Path) -> None:
    assert load("digits").name == "digits" and load("  digits ").n == 1797
    x = np.random.default_rng(3).random((4, 2))
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=x[:, :1])
    np.savetxt(tmp_path / "c.csv", x, delimiter=",", fmt="%.17g")
    np.testing.assert_array_equal(load(str(tmp_path / "a.npy")).x, x)
    np.testing.assert_array_equal(load(str(tmp_path / "b.npz")).y, x[:, :1])
    np.testing.assert_array_equal(load(str(tmp_path / "c.csv")).x, x)
    np.testing.assert_array_equal(load(f"file:{tmp_path / 'a.npy'}").x, x)
    np.testing.assert_array_equal(load(tmp_path / "a.npy").x, x)  # a Path works too
    with pytest.raises(DataFileNotFoundError):
        load(str(tmp_path / "missing.csv"))


def test_spec_gaussian() -> None:
    ds = load("gaussian:eigs=9:4:1:0.25,n=500,seed=0,exact=1,rotate=0")
    np.testing.assert_allclose(ds.x.T @ ds.x / 500, np.diag([9, 4, 1, 0.25]), atol=1e-10)
    np.testing.assert_array_equal(ds.x, gaussian([9, 4, 1, 0.25], 500, seed=0, rotate=False, exact=True).x)
    decay = load("gaussian:d=20,decay=0.7,n=300,scale=1")
    np.testing.assert_array_equal(decay.x, gaussian_decay(20, 300, decay=0.7, scale=1.0).x)
    assert load("gaussian:d=3").n == 1000  # default n
    assert load("gaussian:eigs=1/4:1/8,n=5").x.shape == (5, 2)


def test_spec_correlated() -> None:
    ds = load("correlated:rho=1/8,n=1000,d=128,seed=4")
    assert ds.name == "correlated(rho=0.125)"
    np.testing.assert_array_equal(ds.x, correlated_pairs(0.125, 1000, 128, seed=4).x)
    np.testing.assert_array_equal(load("correlated:rho=1,d=3,n=10").x, load("correlated:rho=1,d=3,n=10").y)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("cifar", "unknown data spec 'cifar' .*accepted: digits, mnist"),
        ("digits:extra", "no parameters"),
        ("mnist10k:t10k", "mnist10k takes no parameters"),
        ("mnist:", "needs a directory"),
        ("file:", "needs a path"),
        ("gaussian:eigs=1:2,d=2", "exactly one of"),
        ("gaussian:n=10", "exactly one of"),
        ("gaussian:d=4,colour=red", r"unknown key 'colour' \(accepted: eigs, d"),
        ("gaussian:d=4,n=10,n=20", "given twice"),
        ("gaussian:d=4,n", "expected key=value"),
        ("gaussian:d=2.5", "d='2.5' must be an integer"),
        ("gaussian:d=4,n=-3", "n='-3' must be an integer ≥ 1"),
        ("gaussian:d=4,decay=fast", "decay='fast' is not a number"),
        ("gaussian:d=4,decay=1/0", "is not a number"),
        ("gaussian:d=4,exact=maybe", "exact='maybe' must be 1/0"),
        ("gaussian:eigs=1:-1", "eigenvalues must be finite and ≥ 0"),
        ("gaussian:eigs=1:x", "eigs='x' is not a number"),
        ("gaussian:eigs=1,decay=0.5", "decay applies only with d="),
        ("gaussian:d=4,n=2,exact=1", "n ≥ d"),
        ("correlated:rho=2,d=3", r"rho must be in \[0, 1\]"),
        ("correlated:d=3", "needs rho="),
        ("correlated:rho=0.5,d=3,seed=-1", "seed='-1' must be an integer ≥ 0"),
        ("data.txt", "unknown data spec"),
    ],
)
def test_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        load(spec)
    assert "\n" not in str(info.value)


def test_spec_help_mentions_every_scheme() -> None:
    for word in ("digits", "mnist10k", "mnist:", ".npz", "file:", "gaussian:", "correlated:", "1/8"):
        assert word in SPEC_HELP
