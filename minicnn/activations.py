"""Element-wise activations: forward y = f(z) and backward dz = dy * f'(z).

Each backward takes both z (the input) and y (the output) so it can use whichever is cheaper:
relu needs z, sigmoid and tanh reuse y. Softmax is the one that is not element-wise.

Keras's functional forms are here too, on arrays: ``relu(x)``, ``softmax(x, axis=-1)``,
``sigmoid(x)``, ``tanh(x)``, ``linear(x)``; a layer given one of them
(``Dense(10, activation=activations.softmax)``) uses the matching activation object.
"""

from __future__ import annotations

import numpy as np


class Activation:
    """A named pair of functions: forward(z) -> y and backward(dy, z, y) -> dz."""

    name = "linear"

    def forward(self, z):
        return z

    def backward(self, dy, z, y):
        return dy

    def __repr__(self):
        return f"activations.{self.name}"


class ReLU(Activation):
    """y = max(z, 0); relu'(0) = 0, as TensorFlow's ReluGrad (gradient where z > 0)."""

    name = "relu"

    def forward(self, z):
        return np.maximum(z, 0)

    def backward(self, dy, z, y):
        return np.where(z > 0, dy, 0).astype(dy.dtype, copy=False)


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-z)), dz = dy * y * (1 - y)."""

    name = "sigmoid"

    def forward(self, z):
        # exp of a non-positive number only, so neither branch can overflow
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)

    def backward(self, dy, z, y):
        return dy * y * (1 - y)


class Tanh(Activation):
    """y = tanh(z), dz = dy * (1 - y^2)."""

    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, dy, z, y):
        return dy * (1 - y * y)


class Softmax(Activation):
    """y = exp(z - max z) / sum exp(z - max z) over the last axis.

    Backward is the Jacobian-vector product dz = y * (dy - sum(dy * y)). With crossentropy the
    model skips it and uses the fused gradient (y - target) / N.
    """

    name = "softmax"

    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, dy, z, y):
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


_BY_NAME = {cls.name: cls for cls in (Activation, ReLU, Sigmoid, Tanh, Softmax)}


# --- Keras's functional forms ----------------------------------------------------------------
def linear(x):
    """x, unchanged (as keras.activations.linear)."""
    return np.asarray(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0), with Keras's options: slope below the threshold, a cap at max_value."""
    x = np.asarray(x)
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return ReLU().forward(x)
    out = np.where(x >= threshold, x, negative_slope * (x - threshold)).astype(x.dtype)
    return out if max_value is None else np.minimum(out, max_value).astype(x.dtype)


def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow."""
    return Sigmoid().forward(np.asarray(x))


def tanh(x):
    return np.tanh(np.asarray(x))


def softmax(x, axis=-1):
    """exp(x - max) / sum exp(x - max) along axis."""
    x = np.moveaxis(np.asarray(x), axis, -1)
    return np.moveaxis(Softmax().forward(x), -1, axis)


_BY_FUNCTION = {linear: Activation, relu: ReLU, sigmoid: Sigmoid, tanh: Tanh, softmax: Softmax}


def get(identifier) -> Activation:
    """An activation from its Keras name ('relu', 'softmax', 'sigmoid', 'tanh', 'linear'),
    None (linear), one of the functions above, or an Activation object."""
    if identifier is None:
        return Activation()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    try:
        cls = _BY_FUNCTION.get(identifier) if callable(identifier) else None
    except TypeError:  # an unhashable callable is not one of these functions
        cls = None
    if cls is not None:
        return cls()
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}. "
                     f"minicnn's activations (each with its backward): {sorted(_BY_NAME)} "
                     f"or None.")


def serialize(activation) -> str:
    """An activation's Keras name ('relu')."""
    return get(activation).name


def deserialize(name) -> Activation:
    return get(name)
