"""``keras.metrics``, as far as minicnn computes metrics: accuracy, as functions and classes.

    categorical_accuracy(y_true, y_pred)   # per sample: argmax(y_true) == argmax(y_pred), 0 or 1
    m = CategoricalAccuracy(); m.update_state(y, p); m.result()    # the running mean

``model.compile(metrics=['accuracy'])`` is what fit and evaluate log (for one-hot targets it is
categorical accuracy, for sparse targets sparse categorical accuracy, as Keras resolves the
string). The functions and classes here are for use outside fit, with Keras's semantics
(keras/src/metrics/accuracy_metrics.py): ties in argmax go to the first maximum, as NumPy's and
TensorFlow's argmax.
"""

from __future__ import annotations

import numpy as np

from minicnn import backend
from minicnn.validation import ArgumentTypeError, invalid


def _arrays(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    for arg, a in (("y_true", y_true), ("y_pred", y_pred)):
        if a.dtype.kind not in "biuf":
            raise invalid(arg, "a real array", a, ArgumentTypeError)
    return y_true, y_pred


def accuracy(y_true, y_pred):
    """1.0 where y_true == y_pred element-wise, else 0.0 (keras.metrics.accuracy: for labels
    already decoded, not probabilities)."""
    y_true, y_pred = _arrays(y_true, y_pred)
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    return (y_true == y_pred).astype(backend.floatx())


def categorical_accuracy(y_true, y_pred):
    """Per sample, 1.0 if argmax(y_true) == argmax(y_pred) over the last axis.
    Shapes: y_true, y_pred (N, K) -> (N,)."""
    y_true, y_pred = _arrays(y_true, y_pred)
    return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(backend.floatx())


def sparse_categorical_accuracy(y_true, y_pred):
    """Per sample, 1.0 if the label y_true equals argmax(y_pred).
    Shapes: y_true (N,) or (N, 1), y_pred (N, K) -> (N,)."""
    y_true, y_pred = _arrays(y_true, y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return (y_true == y_pred.argmax(axis=-1)).astype(backend.floatx())


class MeanMetricWrapper:
    """A running, optionally weighted, mean of fn(y_true, y_pred) over every update:
    result = sum(w * values) / sum(w), as Keras's Mean (w = 1 without sample_weight)."""

    def __init__(self, fn, name=None, dtype=None):
        self._fn, self.name = fn, name or fn.__name__
        self.dtype = dtype or backend.floatx()
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self._fn(y_true, y_pred), dtype=np.float64)
        if sample_weight is None:
            w = np.ones_like(values)
        else:
            w = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64).reshape(
                values.shape[:1] + (1,) * (values.ndim - 1)), values.shape)
        self.total += float((values * w).sum())
        self.count += float(w.sum())

    def result(self):
        return np.asarray(self.total / self.count if self.count else 0.0, dtype=self.dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """update_state, then result, as a Keras metric called directly."""
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Accuracy(MeanMetricWrapper):
    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name, dtype)


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name, dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name, dtype)


_BY_NAME = {"accuracy": Accuracy, "Accuracy": Accuracy,
            "categorical_accuracy": CategoricalAccuracy,
            "CategoricalAccuracy": CategoricalAccuracy,
            "sparse_categorical_accuracy": SparseCategoricalAccuracy,
            "SparseCategoricalAccuracy": SparseCategoricalAccuracy}


def get(identifier):
    """A metric object from its name or class, or the object itself."""
    if isinstance(identifier, MeanMetricWrapper):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, MeanMetricWrapper):
        return identifier()
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(f"Could not interpret metric identifier: {identifier}")
