"""The array helpers of ``keras.utils``: to_categorical, normalize (minicnn.utils re-exports them,
and so does Keras 2's np_utils)."""

from __future__ import annotations

import numpy as np

from minicnn.validation import ArgumentTypeError


def to_categorical(y, num_classes=None, dtype="float32"):
    """Class indices -> one-hot, as keras.utils.to_categorical.

    Shapes: y (N,) or (N, 1) -> (N, num_classes); more generally y (...) -> (..., num_classes),
    a trailing axis of 1 dropped first (Keras 3's rule). dtype is Keras 2's argument
    (float32 by default; Keras 3 returns float64 for NumPy input).
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"Invalid dtype for argument y. Expected class indices (ints). "
                                f"Received: y.dtype={y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.ndim == 0:
        raise ValueError(f"to_categorical expects an array of class indices, received a "
                         f"scalar of shape {y.shape}.")
    shape = y.shape
    y = y.reshape(-1)
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
    return out.reshape(*shape, n)


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along axis (zero norms left as 1), as keras.utils.normalize."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis if axis is not None else -1)
