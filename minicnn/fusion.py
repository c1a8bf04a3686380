"""How the model groups its layers into execution units, and the fused conv unit itself.

A unit has ``forward(x, training)`` and ``backward(dout)`` like a layer. Without fusion every
layer is its own unit. A backend whose table has a fused conv + pool kernel
(``ops().conv_pool_forward``: the 'numba' backend) runs each

    Conv2D(activation='relu') [-> MaxPooling2D(padding='valid')] [-> Dropout | Flatten ...]

as one ``ConvReluPool`` unit: one pass over memory each way, the same numbers the layers
compute (tested against them, NaN included), the same parameter gradients written into the
same ``conv.grads``, and the same dropout counters advanced. The model's last layer is
absorbed only by ConvReluPoolDense, which then answers for it (its logits, backward from them).

This is the one place that knows both layers and kernels: the layers hold weights and state,
the kernels (kernels/numba_conv_pool.py) take arrays only. When a unit fuses, Conv2D.forward
and MaxPooling2D.forward do not run during training or predict: ``minicnn explain --trace``
shows which kernel ran for each unit and pass. For the seed model's layers the unit also takes
in the model's last layer, the Dense after the Flatten (ConvReluPoolDense): then one unit is
the whole network, and the Dense's forward and backward do not run either.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.activations import ReLU
from minicnn.kernels.dispatch import ops
from minicnn.kernels.dropout_mask import keep_threshold, mask_key
from minicnn.kernels.geometry import conv_geometry
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

_MAX_WINDOW = 127  # the winner's index is stored in an int8


def plan(layers, backend: str) -> list:
    """Units covering ``layers`` in order; the last layer ends the last unit (ConvReluPoolDense
    includes it, every other unit stops before it)."""
    if ops(backend).conv_pool_forward is None:
        return list(layers)
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
            if j == last and _dense_fits(layers[i], pool, tail, layers[j], backend):
                units.append(ConvReluPoolDense(layers[i], pool, tail, layers[j], backend))
                i = j + 1
                continue
            units.append(ConvReluPool(layers[i], pool, tail, backend))
            i = j
        else:
            units.append(layers[i])
            i += 1
    return units


def _relu_conv(layer) -> bool:
    return (
        type(layer) is Conv2D
        and type(layer.activation) is ReLU
        and layer.built
        and layer.dtype in ("float32", "float64")
    )


def _dense_fits(conv, pool, tail, dense, backend) -> bool:
    """Can the unit take in the model's last layer too? The backend has the kernels for the
    seed's layers: a first-layer 3x3 stride-1 conv on one channel, a 2x2 stride-2 pool, a
    Flatten, then a Dense on the flat output."""
    return (
        ops(backend).conv_pool_dense_forward is not None
        and type(dense) is Dense
        and dense.built
        and dense.dtype == conv.dtype
        and pool is not None
        and (pool.pool_size, pool.strides) == ((2, 2), (2, 2))
        and (conv.kernel_size, conv.strides) == ((3, 3), (1, 1))
        and conv.built_input_shape[-1] == 1
        and not conv.needs_input_grad
        and any(type(layer) is Flatten for layer in tail)
    )


def _valid_pool(layer) -> bool:
    return (
        type(layer) is MaxPooling2D
        and layer.padding == "valid"
        and layer.pool_size[0] * layer.pool_size[1] <= _MAX_WINDOW
    )


def _draw_dropouts(dropouts, dtype):
    """(keys, thresholds, scales): what each Dropout.forward would use, in order, for the
    kernel to hash the same masks; each layer's mask counter advances as its forward's would."""
    keys = np.array([mask_key(d.seed, d.counter) for d in dropouts], dtype=np.uint64)
    thresholds = np.array([keep_threshold(d.rate) for d in dropouts], dtype=np.uint64)
    scales = np.array([1.0 / (1.0 - d.rate) for d in dropouts], dtype=dtype)
    for d in dropouts:
        d.counter += 1
    return keys, thresholds, scales


class ConvReluPool:
    """Conv2D(relu) [-> MaxPooling2D('valid')] [-> Dropout | Flatten ...] as one unit.

    Args: conv, pool (or None: pooling 1x1, i.e. conv + relu only), tail (Dropout and Flatten
    layers, in order), backend (whose table has the fused kernels).
    Shapes: x (N, H, W, C) -> out (N, Hq, Wq, F), or (N, Hq*Wq*F) after a Flatten.
    Writes conv.grads['kernel'] and ['bias'] as Conv2D.backward_linear does, and leaves the
    caches the layers would leave (the Flatten's shape; none for the others).

    The dropout masks are the layers' own hash of (seed, counter, index), computed inside the
    kernel from the same keys in the same order, so each Dropout's counter advances exactly as
    it would. If a Dropout has an injected ``mask_source`` (the Keras parity suite sets one),
    the unit runs the layers one by one instead. Memory: the unit owns its output, byte-code
    and input-gradient buffers and reuses them while the batch shape allows.
    """

    def __init__(self, conv, pool, tail, backend="numba"):
        self.conv, self.pool, self.tail = conv, pool, list(tail)
        self.layers = [conv] + ([pool] if pool is not None else []) + self.tail
        self.backend = backend
        self._buffers: dict[str, np.ndarray] = {}
        self._layerwise = False

    def __repr__(self):
        return f"<{type(self).__name__} {' -> '.join(layer.name for layer in self.layers)}>"

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

    def _layerwise_forward(self, x, training):
        """The tail's active dropouts, and, when one has an injected mask (parity), each layer
        run on its own so that it draws its own (self._layerwise): the output, else None."""
        dropouts = [d for d in self.tail if type(d) is Dropout and training and d.rate > 0]
        self._layerwise = any(d.mask_source is not None for d in dropouts)
        if not self._layerwise:
            return dropouts, None
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return dropouts, x

    def _conv_operands(self, x):
        """What the fused kernels read and write: x contiguous in the kernel's dtype, w, b
        (zeros without a bias), the geometry, and the buffers out and code (N, Hq, Wq, F)."""
        conv = self.conv
        w = conv.params["kernel"]
        x = np.ascontiguousarray(x, dtype=w.dtype)
        b = conv.params["bias"] if conv.use_bias else np.zeros(w.shape[3], w.dtype)
        g = conv_geometry(x.shape[1:3], conv.kernel_size, conv.strides, conv.pads,
                          *self._pooling())
        shape = (x.shape[0], g.Hq, g.Wq, w.shape[3])
        return x, w, b, g, self._buffer("out", shape, w.dtype), self._buffer("code", shape,
                                                                             np.int8)

    def forward(self, x, training=False):
        """x (N, H, W, C) -> the last fused layer's output."""
        dropouts, y = self._layerwise_forward(x, training)
        if self._layerwise:
            return y
        x, w, b, g, out, code = self._conv_operands(x)
        keys, thresholds, scales = _draw_dropouts(dropouts, w.dtype)
        ops(self.backend).conv_pool_forward(x, w, b, g, keys, thresholds, scales, out, code)
        self._x, self._code, self._scales, self._g = x, code, scales, g
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
        dw = np.empty_like(w)
        db = np.empty(w.shape[3], w.dtype)
        dx = self._buffer("dx", x.shape, w.dtype) if conv.needs_input_grad else None
        ops(self.backend).conv_pool_backward(dout, code, x, w, self._scales, self._g, dw, db,
                                             dx)
        conv.grads["kernel"] = dw
        if conv.use_bias:
            conv.grads["bias"] = db
        return dx


class ConvReluPoolDense(ConvReluPool):
    """ConvReluPool whose tail ends in a Flatten, followed by the model's last layer, a Dense:
    the seed model's whole network as one unit (minicnn.kernels.numba_conv_pool's *_dense
    kernels). It stands in for the last layer too: ``preactivation`` is the Dense's (its cache
    holds the logits), and ``backward_linear(dz)`` takes dL/dlogits, as Dense's does.

    Shapes: x (N, H, W, 1) -> the Dense's output (N, K).
    Writes conv.grads and dense.grads (the Dense's weight gradient, (flat output).T @ dz, on
    numba_dense's kernels); the gradient at the flat output is never stored for the batch.
    """

    def __init__(self, conv, pool, tail, dense, backend="numba"):
        super().__init__(conv, pool, tail, backend)
        self.dense = dense
        self.layers = [*self.layers, dense]

    def forward(self, x, training=False):
        """x (N, H, W, 1) -> activation(logits) (N, K)."""
        dense = self.dense
        dropouts, y = self._layerwise_forward(x, training)
        if self._layerwise:
            return y
        x, w, b, g, out, code = self._conv_operands(x)
        N, K = x.shape[0], dense.units
        z = np.empty((N, K), w.dtype)  # the logits: kept by the Dense's cache, so not reused
        keys, thresholds, scales = _draw_dropouts(dropouts, w.dtype)
        wt = np.ascontiguousarray(dense.params["kernel"].T)  # (K, M)
        bd = dense.params["bias"] if dense.use_bias else np.zeros(K, w.dtype)
        ops(self.backend).conv_pool_dense_forward(x, w, b, g, keys, thresholds, scales, wt, bd,
                                                  out, code, z)
        self._x, self._code, self._scales, self._g, self._wt = x, code, scales, g, wt
        h = self._through_tail(out)  # (N, M), and the caches the layers would leave
        probs = dense.activation.forward(z)
        dense.cache = (h, z, probs)  # what Dense.forward leaves: preactivation is z
        return probs

    @property
    def preactivation(self):
        return self.dense.preactivation

    def backward(self, dout):
        """dout = dL/d(the Dense's output) (N, K) -> None (the unit starts the model)."""
        h, z, probs = self.dense.cache
        return self.backward_linear(self.dense.activation.backward(dout, z, probs))

    def backward_linear(self, dz):
        """dz = dL/dlogits (N, K) -> None; fills dense.grads and conv.grads."""
        dense, conv = self.dense, self.conv
        if self._layerwise:
            dout = dense.backward_linear(dz)
            for layer in reversed(self.layers[:-1]):
                dout = layer.backward(dout)
            return dout
        h = dense.cache[0]
        dz = np.ascontiguousarray(dz, dtype=h.dtype)
        w = conv.params["kernel"]
        dw, db = np.empty_like(w), np.empty(w.shape[3], w.dtype)
        dwd = np.empty_like(dense.params["kernel"])  # (M, K)
        dbd = np.empty(dense.units, w.dtype)
        ops(self.backend).conv_pool_dense_backward(dz, self._wt, h, self._code, self._x,
                                                   self._scales, self._g, dw, db, dwd, dbd)
        dense.grads["kernel"] = dwd
        if dense.use_bias:
            dense.grads["bias"] = dbd
        conv.grads["kernel"] = dw
        if conv.use_bias:
            conv.grads["bias"] = db
        return None
