"""The `Dataset` record every loader returns, its warnings and errors, and the array checks."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class OfflineSampleWarning(UserWarning):
    """The full dataset was not found, so a small offline sample is being used instead."""


class CorruptFileWarning(UserWarning):
    """A cached file failed its integrity check and was skipped."""


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset was found anywhere minicnn looked, and none could be downloaded."""


# eq=False: dataclass equality would compare arrays elementwise and raise on `bool(...)`.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of 28x28 grayscale images, with where it came from.

    Shapes:
        x_train: (N_train, 28, 28) uint8, pixels 0..255
        y_train: (N_train,) uint8, labels 0..9
        x_test:  (N_test, 28, 28) uint8
        y_test:  (N_test,) uint8

    `source` is the file, folder or description actually read; `is_sample` is True when the
    data is the small offline sample rather than the full set, and `note` then says so.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str
    is_sample: bool = False
    note: str = ""

    def describe(self) -> str:
        """One line: `mnist: 60,000 train / 10,000 test from /root/.keras/datasets/mnist.npz`."""
        n_train, n_test = len(self.y_train), len(self.y_test)
        line = f"{self.name}: {n_train:,} train / {n_test:,} test from {self.source}"
        return line + (" (a sample, not the full set)" if self.is_sample else "")

    def as_keras_tuples(self):
        """`((x_train, y_train), (x_test, y_test))`, exactly what Keras's `load_data()` returns."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)


def check_arrays(x_train, y_train, x_test, y_test, where) -> None:
    """Raise ValueError naming `where` unless the four arrays look like Keras's MNIST.

    Expects x_* uint8 of shape (N, 28, 28), y_* uint8 of shape (N,) with values 0..9, and
    matching image/label counts per split.
    """
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise ValueError(
                f"{where}: x_{split} and y_{split} must be uint8 as in Keras. "
                f"Received: x_{split}.dtype={x.dtype}, y_{split}.dtype={y.dtype}"
            )
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(
                f"{where}: x_{split} must have shape (N, 28, 28). Received: shape={x.shape}"
            )
        if y.ndim != 1:
            raise ValueError(f"{where}: y_{split} must have shape (N,). Received: shape={y.shape}")
        if len(x) != len(y):
            raise ValueError(
                f"{where}: {len(x)} {split} images but {len(y)} {split} labels; counts must match"
            )
        if len(y) and y.max() >= NUM_CLASSES:
            raise ValueError(
                f"{where}: y_{split} holds labels outside 0..9 (max is {int(y.max())})"
            )


def warn(message: str, category: type[Warning]) -> None:
    """`warnings.warn`, pointed at the first caller outside minicnn.datasets.

    The loaders nest (`load_data` -> `load` -> ...), so a fixed stacklevel would blame a line
    in this package instead of the user's call.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
