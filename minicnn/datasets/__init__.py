"""Keras-shaped datasets that work online or offline.

    from minicnn.datasets import mnist
    (x_train, y_train), (x_test, y_test) = mnist.load_data()   # as keras.datasets.mnist

`load(name)` returns the same arrays as a `Dataset` that also says where they came from.
"""

from . import fashion_mnist, mnist
from ._dataset import (
    CorruptFileWarning,
    Dataset,
    DatasetNotFoundError,
    OfflineSampleWarning,
)

__all__ = [
    "NAMES",
    "CorruptFileWarning",
    "Dataset",
    "DatasetNotFoundError",
    "OfflineSampleWarning",
    "fashion_mnist",
    "load",
    "mnist",
]

NAMES = ("mnist", "fashion_mnist")
_LOADERS = {"mnist": mnist.load, "fashion_mnist": fashion_mnist.load}


def load(name: str, path=None) -> Dataset:
    """Load a dataset by name ('mnist' or 'fashion_mnist'; 'fashion-mnist' also accepted).

    Args:
        name: which dataset.
        path: optional file or folder to read instead of searching (see each module).

    Returns:
        A `Dataset`: x_train (N_train, 28, 28) uint8, y_train (N_train,) uint8, x_test
        (N_test, 28, 28) uint8, y_test (N_test,) uint8, plus `source`, `is_sample`, `note`.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in _LOADERS:
        raise ValueError(f"Unknown dataset. Expected one of {list(NAMES)}. Received: name={name!r}")
    return _LOADERS[key](path)
