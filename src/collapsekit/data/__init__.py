"""Data sources and views: every array entering collapsekit arrives here as a :class:`Dataset`.

Sources: :func:`load_digits`, :func:`load_mnist10k` (both bundled), :func:`load_mnist` (+ :func:`download_mnist`, :func:`read_idx`),
:func:`load_array_file`, and the synthetic :func:`gaussian`, :func:`gaussian_decay`,
:func:`correlated_pairs`. Views (Dataset → Dataset): :func:`quadrant_split`,
:func:`label_condition`, :func:`digit_filter`, :func:`train_test_split`. Spec strings for the
command line: :func:`load`, :func:`apply_views`, :data:`SPEC_HELP`.
"""

from collapsekit.data.arrays import load_array_file
from collapsekit.data.builtin import MNIST10K_CLASS_COUNTS, MNIST10K_DIR, MNIST10K_SHA256, load_mnist10k
from collapsekit.data.dataset import Dataset
from collapsekit.data.digits import load_digits
from collapsekit.data.idx import DEFAULT_MNIST_URL, MNIST_FILES, MNIST_MD5, download_mnist, load_mnist, read_idx
from collapsekit.data.spec import SPEC_HELP, apply_views, load
from collapsekit.data.synthetic import correlated_pairs, gaussian, gaussian_decay
from collapsekit.data.views import digit_filter, label_condition, quadrant_merge, quadrant_split, train_test_split

__all__ = [
    "DEFAULT_MNIST_URL",
    "MNIST10K_CLASS_COUNTS",
    "MNIST10K_DIR",
    "MNIST10K_SHA256",
    "MNIST_FILES",
    "MNIST_MD5",
    "SPEC_HELP",
    "Dataset",
    "apply_views",
    "correlated_pairs",
    "digit_filter",
    "download_mnist",
    "gaussian",
    "gaussian_decay",
    "label_condition",
    "load",
    "load_array_file",
    "load_digits",
    "load_mnist",
    "load_mnist10k",
    "quadrant_merge",
    "quadrant_split",
    "read_idx",
    "train_test_split",
]
