"""Activation as a layer of its own, e.g. Activation('relu'), as in Keras."""

from __future__ import annotations

from minicnn import activations
from minicnn.layers.base import ActivationAttribute, Layer


class Activation(Layer):
    """Apply an element-wise activation (or softmax over the last axis).

    Args: activation: 'relu', 'softmax', 'sigmoid', 'tanh' or 'linear'.
    Shapes: x (any) -> out (same shape).
    """

    activation = ActivationAttribute()

    def __init__(self, activation, **kwargs):
        activation = activations.get(activation)
        super().__init__(**kwargs)
        self.activation = activation

    def forward(self, x, training=False):
        out = self.activation.forward(x)
        self.cache = (x, out)
        return out

    def backward(self, dout):
        z, out = self.cache
        return self.activation.backward(dout, z, out)

    @property
    def preactivation(self):
        """z of the last forward pass (the logits, when the activation is softmax)."""
        return self.cache[0]

    def backward_linear(self, dz):
        """The gradient with respect to this layer's input is the pre-activation gradient."""
        return dz

    def get_config(self):
        return {"name": self.name, "activation": self.activation.name}
