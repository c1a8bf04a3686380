"""Deliberately broken Keras twins: each plants one classic bug, and the suite must flag it.

A parity suite that cannot fail proves nothing. ``minicnn parity --quick --mutant NAME`` runs
the comparison against a broken twin and should exit non-zero; tests/test_parity.py checks that
each mutant is caught by the section that should catch it.

    transposed-kernel   conv kernel with KH and KW swapped (a layout bug)
    flipped-kernel      conv kernel rotated 180 degrees (true convolution, not correlation)
    same-pad-top-left   'same' padding with the odd row/column at the top/left (Caffe/PyTorch
                        style) instead of TensorFlow's bottom/right
    unscaled-dropout    dropout without the 1 / (1 - rate) scaling
    textbook-adam       Adam with the paper's epsilon, lr * m_hat / (sqrt(v_hat) + epsilon),
                        instead of Keras's "epsilon hat" form
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from minicnn import layers as mlayers
from reference._keras import keras, ops
from reference.twin import MaskedDropout


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    caught_by: str  # the section expected to flag it
    layer_factory: Callable | None = None
    weight_transform: Callable | None = None
    keras_adam: Callable | None = None


def _transpose_kernel(layer, weights):
    if isinstance(layer, mlayers.Conv2D):
        return [weights[0].transpose(1, 0, 2, 3).copy(), *weights[1:]]
    return weights


def _flip_kernel(layer, weights):
    if isinstance(layer, mlayers.Conv2D):
        return [weights[0][::-1, ::-1].copy(), *weights[1:]]
    return weights


def _top_left_pads(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total - total // 2, total // 2  # the odd pixel *before*: the planted bug


class TopLeftSameConv2D(keras.layers.Layer):
    """Conv2D 'same' that pads the odd row/column at the top/left. Weights: kernel, bias."""

    def __init__(self, filters, kernel_size, strides, activation, use_bias, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(*self.kernel_size, input_shape[-1], self.filters), name="kernel"
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), name="bias")

    def call(self, x):
        (pt, pb), (pl, pr) = (
            _top_left_pads(x.shape[i + 1], self.kernel_size[i], self.strides[i]) for i in range(2)
        )
        x = ops.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
        z = ops.conv(x, self.kernel, strides=self.strides, padding="valid")
        if self.use_bias:
            z = z + self.bias
        return self.activation(z)


class TopLeftSameMaxPool2D(keras.layers.Layer):
    """MaxPooling2D 'same' that pads the odd row/column at the top/left (with -inf)."""

    def __init__(self, pool_size, strides, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides = pool_size, strides

    def call(self, x):
        (pt, pb), (pl, pr) = (
            _top_left_pads(x.shape[i + 1], self.pool_size[i], self.strides[i]) for i in range(2)
        )
        x = ops.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]], constant_values=float("-inf"))
        return ops.max_pool(x, self.pool_size, self.strides, padding="valid")


def _top_left_same(layer):
    if getattr(layer, "padding", None) != "same":
        return None
    if isinstance(layer, mlayers.Conv2D):
        act = None if layer.activation.name == "linear" else layer.activation.name
        return TopLeftSameConv2D(
            layer.filters, layer.kernel_size, layer.strides, act, layer.use_bias, name=layer.name
        )
    if isinstance(layer, mlayers.MaxPooling2D):
        return TopLeftSameMaxPool2D(layer.pool_size, layer.strides, name=layer.name)
    return None


class UnscaledMaskedDropout(MaskedDropout):
    """Dropout that forgets to scale the kept units by 1 / (1 - rate)."""

    def call(self, inputs, training=False, keep=None):
        if not training or keep is None:
            return inputs
        return ops.multiply(inputs, ops.cast(keep, inputs.dtype))


def _unscaled_dropout(layer):
    if isinstance(layer, mlayers.Dropout):
        return UnscaledMaskedDropout(layer.rate, name=layer.name)
    return None


class TextbookAdam(keras.optimizers.Adam):
    """Adam as printed in the paper's Algorithm 1: bias-corrected m_hat and v_hat, epsilon
    added to sqrt(v_hat). Differs from Keras when sqrt(v) is comparable to epsilon.

    (A subclass, so on PyTorch Keras keeps this update_step rather than swapping in its
    torch._foreach Adam, which it does for keras.optimizers.Adam itself only.)"""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * g)
        self.assign(v, self.beta_2 * v + (1 - self.beta_2) * g * g)
        m_hat = m / (1 - ops.power(ops.cast(self.beta_1, dtype), t))
        v_hat = v / (1 - ops.power(ops.cast(self.beta_2, dtype), t))
        self.assign_sub(variable, lr * m_hat / (ops.sqrt(v_hat) + self.epsilon))


MUTANTS = {
    m.name: m
    for m in (
        Mutant(
            "transposed-kernel",
            "conv kernel stored (KW, KH, C, F) instead of (KH, KW, C, F)",
            "forward",
            weight_transform=_transpose_kernel,
        ),
        Mutant(
            "flipped-kernel",
            "conv kernel rotated 180 degrees (convolution, not correlation)",
            "forward",
            weight_transform=_flip_kernel,
        ),
        Mutant(
            "same-pad-top-left",
            "'same' padding puts the odd pixel top/left, not bottom/right",
            "forward",
            layer_factory=_top_left_same,
        ),
        Mutant(
            "unscaled-dropout",
            "training-mode dropout without the 1 / (1 - rate) scaling",
            "gradients",
            layer_factory=_unscaled_dropout,
        ),
        Mutant(
            "textbook-adam",
            "Adam with the paper's epsilon instead of Keras's epsilon-hat",
            "optimizer",
            keras_adam=TextbookAdam,
        ),
    )
}


def get(name: str) -> Mutant:
    if name not in MUTANTS:
        raise ValueError(
            f"Unknown mutant. Expected one of {sorted(MUTANTS)}. Received: mutant={name!r}"
        )
    return MUTANTS[name]
