"""Small helpers with Keras's names."""

from __future__ import annotations

import numpy as np

from minicnn.validation import ArgumentTypeError


def to_categorical(y, num_classes=None, dtype="float32"):
    """Class indices (N,) -> one-hot (N, num_classes), as keras.utils.to_categorical."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"Invalid dtype for argument y. Expected class indices (ints). "
                                f"Received: y.dtype={y.dtype}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"to_categorical expects class indices of shape (N,), "
                         f"received shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("to_categorical expects integer class indices.")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class indices must be >= 0, received {y.min()}.")
    n = int(num_classes) if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
    if y.size and y.max() >= n:
        raise ValueError(f"to_categorical: index {y.max()} is out of range for "
                         f"num_classes={n}.")
    out = np.zeros((y.shape[0], n), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out
