"""Flatten: (N, H, W, C) -> (N, H*W*C) in C order, so Keras weights drop straight in."""

from __future__ import annotations

import math

from minicnn.layers.base import Layer


class Flatten(Layer):
    """Reshape each sample to a vector.  Shapes: x (N, d1, d2, ...) -> (N, d1*d2*...).

    Args: data_format: Keras's, accepted at 'channels_last' (or None) only; name, dtype,
    input_shape: as Keras.
    """

    keras_only = ("data_format",)

    def __init__(self, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self.cache)
