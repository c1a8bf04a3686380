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
from minicnn.validation import ArgumentTypeError, check_name, check_pair, invalid, is_int

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
    return check_pair(value, arg)


def check_shape(value, arg: str = "input_shape") -> tuple[int, ...]:
    """A per-sample shape: a non-empty tuple of positive ints (no batch axis).

    A zero-size axis (an image with 0 channels, say) is refused: every output of the layers
    that follow would be a constant, which is never what was meant.
    """
    expected = "a tuple of positive ints (the shape of one sample, without the batch axis)"
    if isinstance(value, (str, bytes)) or is_int(value):
        raise invalid(arg, expected, value, ArgumentTypeError)
    try:
        shape = tuple(value)
    except TypeError:
        raise invalid(arg, expected, value, ArgumentTypeError) from None
    if not shape or not all(is_int(d) for d in shape):
        raise invalid(arg, expected, value, ArgumentTypeError)
    if not all(int(d) > 0 for d in shape):
        raise invalid(arg, expected, value)
    return tuple(int(d) for d in shape)


def check_dtype(value, arg: str = "dtype") -> str | None:
    """None, or a float dtype minicnn computes in: 'float32' or 'float64'."""
    if value is None:
        return None
    try:
        name = np.dtype(value).name
    except TypeError:
        raise invalid(arg, "'float32', 'float64' or None", value, ArgumentTypeError) from None
    if name not in ("float32", "float64"):
        raise invalid(arg, "'float32', 'float64' or None", value)
    return name


class Layer:
    """Base class: naming, building on first call, weights I/O and input checks."""

    def __init__(self, name: str | None = None, input_shape=None, dtype=None):
        name = check_name(name)
        self.input_shape = check_shape(input_shape) if input_shape is not None else None
        self.dtype = check_dtype(dtype)
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.params: dict[str, np.ndarray] = {}
        self.non_trainable: set[str] = set()   # keys of params the optimizer never touches
        self.grads: dict[str, np.ndarray] = {}
        self.regularizers: dict = {}  # param key -> weight penalty (minicnn.regularizers)
        self.cache = None
        self.built = False
        self.built_input_shape: tuple[int, ...] | None = None
        self._rng = None  # the generator build() draws initial weights from (None: global)
        # Whether backward returns dL/dx. The model turns it off for its first layer (its input
        # is data, so that gradient would be wasted work); a layer used on its own keeps it.
        self.needs_input_grad = True

    # --- to override -------------------------------------------------------------------------
    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create parameters for inputs of shape (batch,) + input_shape."""

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for inputs of per-sample input_shape; raises ValueError
        when the layer cannot take such inputs. Pure: allocates and changes nothing."""
        return tuple(input_shape)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter build(input_shape) would create, in get_weights()
        order. Pure, so a file's arrays can be checked against it before anything is built."""
        return {}

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
        input_shape = check_shape(input_shape)
        if self.built:
            if input_shape != self.built_input_shape:
                raise ValueError(f"Layer {self.name!r} was built for inputs of shape "
                                 f"{(None,) + self.built_input_shape}, received "
                                 f"{(None,) + input_shape}.")
            return
        self.compute_output_shape(input_shape)  # raises for inputs the layer cannot take
        dtype = self.dtype
        self.dtype = dtype or config.floatx()
        self._rng = rng
        try:
            self.build(input_shape)
        except BaseException:  # leave the layer unbuilt, as it was (MemoryError included)
            self.params, self.grads, self.dtype = {}, {}, dtype
            raise
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

    def state_snapshot(self) -> dict:
        """What a training step's forward pass changes besides the trainable weights (the
        non-trainable parameters, e.g. BatchNormalization's moving statistics), copied, so a
        failed step can be undone with restore_state."""
        return {k: self.params[k].copy() for k in self.non_trainable if k in self.params}

    def restore_state(self, snapshot: dict) -> None:
        for k, value in snapshot.items():
            self.params[k][...] = value

    def zero_grads(self) -> None:
        for k in self.trainable_names:
            self.grads[k] = np.zeros_like(self.params[k])

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"
