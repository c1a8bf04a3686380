"""Weight penalties (ridge / LASSO): a term added to the loss that pulls weights toward zero.

    Dense(128, kernel_regularizer=L2(1e-4))      # or 'l2', 'l1', L1(0.01), L1L2(l1, l2)

Keras's definitions (keras/src/regularizers/regularizers.py), no 1/2 in front of the square:

    L1(l1)      penalty = l1 * sum|w|              gradient l1 * sign(w)   (sign(0) = 0)
    L2(l2)      penalty = l2 * sum w^2             gradient 2 * l2 * w
    L1L2(l1,l2) both

The model adds every layer's penalty to the loss it reports (fit's running mean, evaluate,
train_on_batch: Keras's ``compute_loss`` adds ``sum(model.losses)``), and each penalty's gradient
to its weight's gradient after backprop (``Sequential.backward``). sign(0) = 0 is TensorFlow's
gradient of ``abs`` at 0.
"""

from __future__ import annotations

import math

import numpy as np


def _factor(value, name) -> float:
    """A finite non-negative float, as Keras's validate_float_arg."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"Invalid value for argument {name}: expected a non-negative float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


class Regularizer:
    """Base class: ``penalty = reg(w)`` (a float) and ``reg.gradient(w)`` (shaped like w)."""

    def __call__(self, w) -> float:
        return 0.0

    def gradient(self, w) -> np.ndarray:
        return np.zeros_like(w)

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        """The regularizer get_config() describes (as Keras: cls(**config))."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class L1L2(Regularizer):
    """l1 * sum|w| + l2 * sum w^2.  Shapes: w (any) -> float; gradient (same shape as w).

    Args: l1, l2: non-negative factors (default 0, as Keras: ``L1L2(l2=0.1)`` is L2 only).
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, w) -> float:
        w = np.asarray(w)
        total = 0.0
        # each factor cast to w's dtype and the sum taken in it, as Keras does (float32 in training)
        if self.l1:
            total += float(w.dtype.type(self.l1) * np.abs(w).sum())
        if self.l2:
            total += float(w.dtype.type(self.l2) * np.square(w).sum())
        return total

    def gradient(self, w) -> np.ndarray:
        w = np.asarray(w)
        g = np.zeros_like(w)
        if self.l1:
            g += w.dtype.type(self.l1) * np.sign(w)  # np.sign(0) = 0, TF's d|w|/dw at 0
        if self.l2:
            g += w.dtype.type(2 * self.l2) * w
        return g

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum|w|; ``'l1'`` is L1(0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum w^2 (no 1/2: the gradient is 2 * l2 * w); ``'l2'`` is L2(0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}


# Keras 3's string names: the class names and their snake case. Keras's docstring says
# 'l1_l2' means L1L2(0.01, 0.01), but the code rejects 'l1_l2' and maps 'l1l2' to L1L2() with
# both factors 0: the code is what runs, so minicnn does the same.
_BY_NAME = {"l1": L1, "L1": L1, "l2": L2, "L2": L2, "l1l2": L1L2, "L1L2": L1L2}

# keras.regularizers.l1, l2 and l1_l2 are the classes themselves
l1, l2, l1_l2 = L1, L2, L1L2


def get(identifier) -> Regularizer | None:
    """None, a name ('l1', 'l2', 'L1L2', ...), a serialised dict or a Regularizer -> Regularizer.

    Dicts are what ``serialize`` writes: ``{'class_name': 'L2', 'config': {'l2': 0.01}}``.
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, type) and identifier in _BY_NAME.values():
        return identifier()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        return deserialize(identifier)
    raise ValueError(
        f"Could not interpret regularizer identifier: {identifier!r}. Expected None, one of "
        f"{sorted(_BY_NAME)}, a dict from serialize(), or a minicnn Regularizer "
        f"(it needs a gradient, so a plain function will not do)."
    )


def serialize(regularizer) -> dict | None:
    """JSON-ready form of a regularizer, Keras's dict (None stays None); ``get`` reads it
    back."""
    if regularizer is None:
        return None
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}


def deserialize(config) -> Regularizer:
    """The regularizer a serialize() dict (minicnn's or Keras's) describes."""
    if not isinstance(config, dict) or config.get("class_name") not in _BY_NAME:
        raise ValueError(f"Could not interpret regularizer identifier: {config!r}")
    inner = config.get("config") or {}
    if not isinstance(inner, dict):
        raise ValueError(f"Could not interpret regularizer identifier: {config!r}")
    return _BY_NAME[config["class_name"]].from_config(inner)


def total_penalty(layer) -> float:
    """Sum of reg(w) over the layer's ``regularizers`` {param key: Regularizer}."""
    return float(
        sum(
            reg(layer.params[k])
            for k, reg in layer.regularizers.items()
            if reg is not None and k in layer.params
        )
    )


def add_penalty_gradients(layer) -> None:
    """grads[k] += reg.gradient(params[k]) for each regularized parameter (in place: backward
    has just written fresh gradients for this step)."""
    for k, reg in layer.regularizers.items():
        if reg is not None and k in layer.params:
            layer.grads[k] += reg.gradient(layer.params[k])
