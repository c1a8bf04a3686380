"""Element-wise activations: forward y = f(z) and backward dz = dy * f'(z).

Each backward takes both z (the input) and y (the output) so it can use whichever is cheaper:
relu needs z, sigmoid and tanh reuse y. Softmax is the one that is not element-wise.
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


def get(identifier) -> Activation:
    """An activation from its Keras name ('relu', 'softmax', 'sigmoid', 'tanh', 'linear'/None)."""
    if identifier is None:
        return Activation()
    if isinstance(identifier, Activation):
        return identifier
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(f"Invalid value for argument activation. Expected one of "
                     f"{sorted(_BY_NAME)} or None. Received: activation={identifier!r}")
