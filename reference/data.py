"""The data the parity suite runs on: the best dataset available, and batches cut from it."""

from __future__ import annotations

import warnings

import numpy as np

from minicnn import datasets
from minicnn.utils import to_categorical


def best_dataset():
    """Full MNIST when it is found, else Fashion-MNIST, else the offline MNIST sample.

    Returns a minicnn.datasets.Dataset (its ``describe()`` says which and from where).
    """
    with warnings.catch_warnings():
        # the sample's warning is for users who asked for MNIST; here the fallback is deliberate
        warnings.simplefilter("ignore", datasets.OfflineSampleWarning)
        mnist = datasets.load("mnist")
    if not mnist.is_sample:
        return mnist
    try:
        return datasets.load("fashion_mnist")
    except (datasets.DatasetNotFoundError, OSError, ValueError):
        return mnist


def image_batch(ds, n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n training images as the seed tutorial prepares them (x / 255).

    Returns: x (n, 28, 28, 1) float32 in [0, 1], y (n, 10) one-hot float32.
    """
    if offset + n > len(ds.y_train):
        raise ValueError(
            f"Dataset {ds.name!r} has {len(ds.y_train)} training images; "
            f"asked for {n} from index {offset}."
        )
    x = ds.x_train[offset : offset + n, :, :, None].astype(np.float32) / np.float32(255)
    return x, to_categorical(ds.y_train[offset : offset + n], 10)


def random_batch(input_shape, n_classes: int, n: int, seed: int = 0):
    """Continuous random inputs and random one-hot targets: what the forward and gradient
    sections compare on.

    Why not images: their flat backgrounds make max-pool windows whose values differ by a few
    ulps only (after the deep model's second conv, 0.05328164 vs 0.05328166). Which of them
    wins then depends on rounding, each library sends the window's gradient to a different
    pixel, and the max-pool input gradient differs by O(1) there: a true near-tie, not a bug.
    Uniform inputs vary by O(1) across a window, so such near-ties practically never occur.
    Images are used where divergence is expected anyway: the trajectory and the statistics.

    Returns: x (n, *input_shape) float32 in [0, 1), y (n, n_classes) float32.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((n, *input_shape), dtype=np.float32)
    return x, to_categorical(rng.integers(0, n_classes, n), n_classes)
