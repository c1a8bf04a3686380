"""Fused units for the Numba backend: Conv2D(relu) -> MaxPooling2D -> dropouts in one pass.

``fuse(layers)`` (called by minicnn.fusion.plan) returns the units the model runs. It groups

    Conv2D(activation='relu') [-> MaxPooling2D(padding='valid')] [-> Dropout | Flatten ...]

into one ``ConvReluPool`` unit and leaves every other layer as it is; the model's last layer is
never absorbed (the model reads its logits for the fused softmax + crossentropy). The unit
computes exactly what the layers compute, with one pass over memory each way:

* forward: per sample, the convolution (for a 3x3 conv and a 2x2 pool, window by window in
  registers; otherwise into a thread-local tile), then max-pool, relu and the dropout masks
  straight into the output, plus one byte per output: the winner's index in its window, or -1
  where no gradient flows back (relu off, or dropped). Pooling before relu is the same as
  after: relu(max z) = max relu(z).
* backward: that byte sends each output gradient to its winner, straight into the weight
  gradient or through a thread-local tile (each thread its own dW, summed at the end) and,
  unless the conv is the model's first layer, into the input gradient. With several input
  channels behind a pool (the deep model's second conv) only the winners are visited at all:
  each adds its gradient times its input window to dW and times its filter to dX, at most a
  quarter of the dense products (numba_conv._winners_sample). The full-size conv gradient
  never exists.

The dropout masks are the layers' own hash (dropout_mask.py), computed inside the kernel from
the same keys in the same order, so each Dropout's counter advances exactly as it would and the
bits match the NumPy path's (numba_dropout holds the standalone twin; both are tested).
If a Dropout has an injected ``mask_source`` (the Keras parity suite sets one), the unit runs
the layers one by one instead. Memory: the unit owns its output, byte-code and input-gradient
buffers and reuses them while the batch shape allows.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.activations import ReLU
from minicnn.kernels import numba_conv
from minicnn.kernels.dropout_mask import keep_threshold, mask_key
from minicnn.kernels.numba_config import chunks_for
from minicnn.layers import Conv2D, Dropout, Flatten, MaxPooling2D

_MAX_WINDOW = 127  # the winner's index is stored in an int8


def _relu_conv(layer) -> bool:
    return (
        type(layer) is Conv2D
        and type(layer.activation) is ReLU
        and layer.built
        and layer.dtype in ("float32", "float64")
    )


def _valid_pool(layer) -> bool:
    return (
        type(layer) is MaxPooling2D
        and layer.padding == "valid"
        and layer.pool_size[0] * layer.pool_size[1] <= _MAX_WINDOW
    )


def fuse(layers) -> list:
    """Units covering layers in order: ConvReluPool where the layers allow it, else the layer."""
    units, i, last = [], 0, len(layers) - 1
    while i < len(layers):
        if i < last and _relu_conv(layers[i]):
            j = i + 1
            pool = None
            if j < last and _valid_pool(layers[j]):
                pool, j = layers[j], j + 1
            tail = []
            while j < last and type(layers[j]) in (Dropout, Flatten):
                tail.append(layers[j])
                j += 1
            units.append(ConvReluPool(layers[i], pool, tail))
            i = j
        else:
            units.append(layers[i])
            i += 1
    return units


class ConvReluPool:
    """Conv2D(relu) [-> MaxPooling2D('valid')] [-> Dropout | Flatten ...] as one unit.

    Args: conv, pool (or None: pooling 1x1, i.e. conv + relu only), tail (Dropout and Flatten
    layers, in order).
    Shapes: x (N, H, W, C) -> out (N, Hq, Wq, F), or (N, Hq*Wq*F) after a Flatten.
    Writes conv.grads['kernel'] and ['bias'] as Conv2D.backward_linear does.
    """

    def __init__(self, conv, pool, tail):
        self.conv, self.pool, self.tail = conv, pool, list(tail)
        self.layers = [conv] + ([pool] if pool is not None else []) + self.tail
        self._buffers: dict[str, np.ndarray] = {}
        self._layerwise = False

    def __repr__(self):
        return f"<ConvReluPool {' -> '.join(layer.name for layer in self.layers)}>"

    def _buffer(self, name, shape, dtype):
        """A reusable array of this shape: a view of the first rows of a kept buffer."""
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.dtype != dtype
            or buf.shape[1:] != tuple(shape[1:])
            or buf.shape[0] < shape[0]
        ):
            buf = self._buffers[name] = np.empty(shape, dtype)
        return buf[: shape[0]]

    def _pooling(self):
        """(pool_size, strides) of the pool, or 1x1 windows when there is none."""
        pool = self.pool
        return (pool.pool_size, pool.strides) if pool is not None else ((1, 1), (1, 1))

    def _geom(self, x_shape):
        """The kernels' geometry tuple (numba_conv.geometry) for inputs of x_shape."""
        return numba_conv.geometry(
            x_shape[1:3], self.conv.strides, self.conv.pads, *self._pooling()
        )

    def _out_shape(self, x_shape):
        """(N, Hq, Wq, F): the pooled output, before any Flatten."""
        Ho, Wo, F = self.conv.compute_output_shape(x_shape[1:])
        (PH, PW), (psh, psw) = self._pooling()
        return (x_shape[0], (Ho - PH) // psh + 1, (Wo - PW) // psw + 1, F)

    def forward(self, x, training=False):
        """x (N, H, W, C) -> the last fused layer's output."""
        dropouts = [d for d in self.tail if type(d) is Dropout and training and d.rate > 0]
        self._layerwise = any(d.mask_source is not None for d in dropouts)
        if self._layerwise:  # injected masks: let each layer draw its own
            for layer in self.layers:
                x = layer.forward(x, training=training)
            return x
        conv = self.conv
        w = conv.params["kernel"]
        x = np.ascontiguousarray(x, dtype=w.dtype)
        b = conv.params["bias"] if conv.use_bias else np.zeros(w.shape[3], w.dtype)
        shape = self._out_shape(x.shape)  # (N, Hq, Wq, F)
        N = shape[0]
        out = self._buffer("out", shape, w.dtype)
        code = self._buffer("code", shape, np.int8)
        # the keys, counters and scales each Dropout.forward would use, in order
        keys = np.array([mask_key(d.seed, d.counter) for d in dropouts], dtype=np.uint64)
        thresholds = np.array([keep_threshold(d.rate) for d in dropouts], dtype=np.uint64)
        scales = np.array([1.0 / (1.0 - d.rate) for d in dropouts], dtype=w.dtype)
        for d in dropouts:
            d.counter += 1
        if N:
            geom, T = self._geom(x.shape), chunks_for(N)
            numba_conv.conv_forward(x, w, b, geom, True, keys, thresholds, scales, out, code, T)
        self._x, self._code, self._scales = x, code, scales
        return self._through_tail(out)

    def _through_tail(self, out):
        """Reshape as the tail's Flatten layers do and leave the caches they would leave."""
        self.conv.cache = None  # the unit holds what backward needs
        if self.pool is not None:
            self.pool.cache = None
        for layer in self.tail:
            if type(layer) is Flatten:
                layer.cache = out.shape
                out = out.reshape(out.shape[0], math.prod(out.shape[1:]))
            else:
                layer.cache = None
        return out

    def backward(self, dout):
        """dout (shape of forward's output) -> dx (N, H, W, C), or None for the first layer."""
        if self._layerwise:
            for layer in reversed(self.layers):
                dout = layer.backward(dout)
            return dout
        conv, x, code = self.conv, self._x, self._code
        w = conv.params["kernel"]
        dout = np.ascontiguousarray(dout, dtype=w.dtype).reshape(code.shape)
        N = x.shape[0]
        need_dx = bool(conv.needs_input_grad)
        dw = np.empty_like(w)
        db = np.empty(w.shape[3], w.dtype)
        w_flip, w_t = numba_conv.flipped_kernels(w)
        dx = self._buffer("dx", x.shape, w.dtype) if need_dx else np.empty((0, 0, 0, 0), w.dtype)
        if N:
            geom, T = self._geom(x.shape), chunks_for(N)
            numba_conv.conv_backward(
                dout, code, x, w_flip, w_t, self._scales, geom, True, need_dx, dw, db, dx, T
            )
        else:
            dw[...] = 0
            db[...] = 0
        conv.grads["kernel"] = dw
        if conv.use_bias:
            conv.grads["bias"] = db
        return dx if need_dx else None
