"""The contract every layer keeps.

A layer holds its parameters and their gradients under the same keys (``params['kernel']``,
``grads['kernel']``), overwritten each step, and one ``cache`` of what backward needs:

    out = layer.forward(x, training=False)      # fills layer.cache
    dx  = layer.backward(dout)                  # fills layer.grads, returns dL/dx

Shapes exclude the batch axis in ``build(input_shape)`` and ``compute_output_shape``, as Keras.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from minicnn import config, regularizers

_NAME_COUNTS: defaultdict[str, int] = defaultdict(int)


def unique_name(base: str) -> str:
    """'dense', then 'dense_1', 'dense_2', ... per process, as Keras names layers."""
    n = _NAME_COUNTS[base]
    _NAME_COUNTS[base] += 1
    return base if n == 0 else f"{base}_{n}"


def clear_session() -> None:
    """Restart layer and model naming from 'conv2d', 'dense', 'sequential', as Keras's."""
    _NAME_COUNTS.clear()


def snake_case(name: str) -> str:
    """'MaxPooling2D' -> 'max_pooling2d', Keras's rule for default layer names."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def as_pair(value, arg: str) -> tuple[int, int]:
    """An int or a 2-tuple of positive ints, as Keras accepts for kernel_size and strides."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"Invalid value for argument {arg}. Expected a positive int or a tuple "
                         f"of 2 positive ints. Received: {arg}={value!r}")
    return int(pair[0]), int(pair[1])


class Layer:
    """Base class: naming, building on first call, weights I/O and input checks."""

    def __init__(self, name: str | None = None, input_shape=None, dtype=None):
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.dtype = np.dtype(dtype).name if dtype is not None else None
        self.params: dict[str, np.ndarray] = {}
        self.non_trainable: set[str] = set()   # keys of params the optimizer never touches
        self.grads: dict[str, np.ndarray] = {}
        self.regularizers: dict = {}  # param key -> weight penalty (minicnn.regularizers)
        self.cache = None
        self.built = False
        self.built_input_shape: tuple[int, ...] | None = None

    # --- to override -------------------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create parameters for inputs of shape (batch,) + input_shape."""

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def get_config(self) -> dict:
        """Constructor arguments, enough to rebuild the layer (saving uses this)."""
        return {"name": self.name}

    # --- shared machinery --------------------------------------------------------------------
    def build_for(self, input_shape, rng=None) -> None:
        """Build once for per-sample input_shape, in the configured float dtype."""
        input_shape = tuple(int(d) for d in input_shape)
        if self.built:
            if input_shape != self.built_input_shape:
                raise ValueError(f"Layer {self.name!r} was built for inputs of shape "
                                 f"{(None,) + self.built_input_shape}, received "
                                 f"{(None,) + input_shape}.")
            return
        self.dtype = self.dtype or config.floatx()
        self._rng = rng
        self.build(input_shape)
        self.built_input_shape = input_shape
        self.built = True

    def __call__(self, x, training: bool = False):
        """Build on first use (as Keras), check the input, and run forward."""
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"Layer {self.name!r} expects a batch of inputs (ndim >= 2), "
                             f"received shape {x.shape}.")
        self.build_for(x.shape[1:])
        self.check_input(x)
        return self.forward(x.astype(self.dtype, copy=False), training=training)

    def check_input(self, x) -> None:
        if tuple(x.shape[1:]) != self.built_input_shape:
            raise ValueError(f"Input 0 of layer {self.name!r} is incompatible with the layer: "
                             f"expected shape {(None,) + self.built_input_shape}, "
                             f"received {tuple(x.shape)}.")

    @property
    def weight_names(self) -> list[str]:
        """Parameter keys in Keras's get_weights() order."""
        return list(self.params)

    def get_weights(self) -> list[np.ndarray]:
        return [self.params[k].copy() for k in self.weight_names]

    def set_weights(self, weights) -> None:
        """Replace every parameter; shapes must match exactly (checked before any is written)."""
        weights = list(weights)
        names = self.weight_names
        if len(weights) != len(names):
            raise ValueError(f"Layer {self.name!r} expects {len(names)} weights "
                             f"({', '.join(names) or 'none'}), received {len(weights)}.")
        arrays = []
        for key, value in zip(names, weights):
            value = np.asarray(value)
            if value.shape != self.params[key].shape:
                raise ValueError(f"Layer {self.name!r} weight {key!r} has shape "
                                 f"{self.params[key].shape}, received {value.shape}.")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"Layer {self.name!r} weight {key!r}: received NaN or inf.")
            arrays.append(value.astype(self.params[key].dtype))
        for key, value in zip(names, arrays):
            self.params[key][...] = value

    @property
    def trainable_names(self) -> list[str]:
        return [k for k in self.params if k not in self.non_trainable]

    def count_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def penalty(self) -> float:
        """Sum of this layer's weight penalties (0 without regularizers)."""
        return regularizers.total_penalty(self) if self.regularizers else 0.0

    def add_penalty_gradients(self) -> None:
        """grads[k] += d penalty / d params[k]; the model calls it after backward."""
        if self.regularizers:
            regularizers.add_penalty_gradients(self)

    def zero_grads(self) -> None:
        for k in self.trainable_names:
            self.grads[k] = np.zeros_like(self.params[k])

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"
