"""The contract every layer keeps.

A layer holds its parameters and their gradients under the same keys (``params['kernel']``,
``grads['kernel']``), overwritten each step, and one ``cache`` of what backward needs:

    out = layer.forward(x, training=False)      # fills layer.cache
    dx  = layer.backward(dout)                  # fills layer.grads, returns dL/dx

``build(input_shape)`` takes Keras's shape, batch axis first (``Dense(2).build((1, 3))`` or
``(None, 3)``). A subclass writes its ``build`` as in Keras; ``Layer.__init_subclass__`` wraps
it (Keras's Layer does the same with its build wrapper) so that every build, by the user, by
the model or by a first call, runs the same bookkeeping: checks, dtype, ``built``. Inside
minicnn, ``build_for``, ``compute_output_shape`` and ``weight_shapes`` take the shape of one
sample, without the batch axis.

Weights are read the Keras way through Variables (minicnn.variables): ``layer.weights``,
``layer.trainable_weights``, ``layer.kernel``, ...; ``get_config()`` / ``from_config()`` round
trip every layer, and ``from_config`` also reads Keras 3's own layer configs.
"""

from __future__ import annotations

import functools

import numpy as np

from minicnn import activations, config, regularizers
from minicnn.naming import clear_session, snake_case, unique_name  # noqa: F401 (re-exported)
from minicnn.validation import ArgumentTypeError, check_name, check_pair, invalid, is_int
from minicnn.variables import layer_variable


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


def check_batch_shape(value, arg: str = "input_shape") -> tuple[int, ...]:
    """Keras's full input shape: the batch axis (None or a positive int), then a sample shape.

    Returns the sample shape (without the batch axis).
    """
    expected = "a shape with the batch axis first, such as (None, 28, 28, 1) or (1, 2)"
    if isinstance(value, (str, bytes)) or is_int(value):
        raise invalid(arg, expected, value, ArgumentTypeError)
    try:
        shape = tuple(value)
    except TypeError:
        raise invalid(arg, expected, value, ArgumentTypeError) from None
    if len(shape) < 2:
        raise invalid(arg, expected, value)
    batch = shape[0]
    if batch is not None and not (is_int(batch) and int(batch) > 0):
        raise invalid(arg, expected, value)
    return check_shape(shape[1:], arg)


# Keras 3 constructor arguments for features minicnn does not compute. Each is accepted at the
# value that switches the feature off (so Keras code and Keras configs that pass the default
# run unchanged) and refused by name otherwise, never silently ignored.
def _is_one(value):
    try:
        return check_pair(value, "dilation_rate") == (1, 1)
    except (TypeError, ValueError):
        return False


_OFF = {
    "trainable": ((True,), "True (minicnn does not freeze layers)"),
    "autocast": ((True, False), "a bool (minicnn computes in one dtype)"),
    "activity_regularizer": ((None,), "None (activity regularizers are not implemented)"),
    "kernel_constraint": ((None,), "None (weight constraints are not implemented)"),
    "bias_constraint": ((None,), "None (weight constraints are not implemented)"),
    "beta_constraint": ((None,), "None (weight constraints are not implemented)"),
    "gamma_constraint": ((None,), "None (weight constraints are not implemented)"),
    "data_format": (lambda v: v is None or (isinstance(v, str) and v.lower() == "channels_last"),
                    "'channels_last' (minicnn is channels-last only)"),
    "dilation_rate": (_is_one, "1 (dilated convolutions are not implemented)"),
    "groups": ((1,), "1 (grouped convolutions are not implemented)"),
    "lora_rank": ((None,), "None (LoRA is not implemented)"),
    "lora_alpha": ((None,), "None (LoRA is not implemented)"),
    "quantization_config": ((None,), "None (quantization is not implemented)"),
    "noise_shape": ((None,), "None (Dropout draws one mask entry per unit)"),
    "synchronized": ((False,), "False (one device only)"),
    "renorm": ((False,), "False (batch renormalization is not implemented)"),
    "renorm_clipping": ((None,), "None (batch renormalization is not implemented)"),
    "renorm_momentum": (lambda v: True, "a float (unused without renorm)"),
    "beta_regularizer": ((None,), "None (BatchNormalization penalties are not implemented)"),
    "gamma_regularizer": ((None,), "None (BatchNormalization penalties are not implemented)"),
    "beta_initializer": (("zeros", "Zeros"), "'zeros'"),
    "gamma_initializer": (("ones", "Ones"), "'ones'"),
    "moving_mean_initializer": (("zeros", "Zeros"), "'zeros'"),
    "moving_variance_initializer": (("ones", "Ones"), "'ones'"),
}


def _is_off(value, allowed) -> bool:
    if callable(allowed):
        return allowed(value)
    if isinstance(value, dict):  # a serialised initializer such as {'class_name': 'Zeros'}
        value = value.get("class_name")
    return any(value is a or (type(value) is type(a) and value == a) for a in allowed)


def check_keras_arguments(cls_name: str, kwargs: dict, accepted=()) -> dict:
    """Check the Keras-only keyword arguments of a layer; returns {} or raises.

    ``input_dim`` (Keras 2 style, ``Dense(32, input_dim=784)``) is returned as
    ``{'input_shape': (input_dim,)}``. A name Keras does not know raises Keras's error:
    ``Unrecognized keyword arguments passed to Dense: {'foo': 1}``.
    """
    out, unknown = {}, {}
    for arg, value in kwargs.items():
        if arg == "input_dim":
            out["input_shape"] = (value,) if is_int(value) else value
        elif arg in _OFF and (arg in accepted or arg in _COMMON):
            _keras_refusal(arg, value)
            allowed, expected = _OFF[arg]
            if not _is_off(value, allowed):
                raise invalid(arg, expected, value)
        else:
            unknown[arg] = value
    if unknown:
        raise ValueError(f"Unrecognized keyword arguments passed to {cls_name}: {unknown}")
    return out


_COMMON = ("trainable", "autocast", "activity_regularizer")


def _keras_refusal(arg, value) -> None:
    """Keras's own error, for the values Keras itself refuses (before minicnn's 'not
    implemented' for the values Keras accepts and minicnn does not compute)."""
    if arg == "trainable" and not isinstance(value, bool):
        raise ValueError(f"Expected `trainable` to be a boolean. Received: trainable={value} "
                         f"(of type {type(value)})")
    if arg == "data_format" and value is not None and (
            not isinstance(value, str) or value.lower() not in ("channels_first", "channels_last")):
        raise ValueError(f"The `data_format` argument must be one of "
                         f"{{'channels_first', 'channels_last'}}. Received: data_format={value}")
    if arg == "groups" and (not is_int(value) or int(value) <= 0):
        raise ValueError(f"The number of groups must be a positive integer. "
                         f"Received: groups={value}.")


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


class ActivationAttribute:
    """``layer.activation``: settable at any time to a name, a function, an activation or None
    (linear), as in Keras (``layer.activation = None``); reads back as a minicnn activation."""

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj, value):
        setattr(obj, self.slot, activations.get(value))


class Layer:
    """Base class: naming, building on first call, weights I/O and input checks.

    Keyword arguments beyond name, input_shape and dtype are Keras's (``input_dim``,
    ``trainable``, ...): see ``check_keras_arguments``; a subclass names the Keras-only ones
    it accepts in ``keras_only``.
    """

    keras_only: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "build" in vars(cls):
            cls.build = _build_wrapper(vars(cls)["build"])

    def __init__(self, name: str | None = None, input_shape=None, dtype=None, **kwargs):
        name = check_name(name)
        extra = check_keras_arguments(type(self).__name__, kwargs, self.keras_only)
        if input_shape is None:
            input_shape = extra.get("input_shape")
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
        """Create the parameters for inputs of Keras's shape (batch, *sample), e.g. (None, 3).

        Called once, by the model, by the first call on data, or by the user; a second call
        with the same sample shape does nothing.
        """

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

    @classmethod
    def from_config(cls, config: dict):
        """The layer get_config() describes; Keras 3's layer configs are read too (their
        'module', dtype-policy and default-valued Keras-only entries are understood)."""

        return cls(**layer_kwargs(cls, config))

    # --- shared machinery --------------------------------------------------------------------
    def build_for(self, input_shape, rng=None) -> None:
        """Build once for per-sample input_shape (no batch axis), in the configured float
        dtype, drawing initial weights from rng (None: minicnn's global stream)."""
        input_shape = check_shape(input_shape)
        self._rng = rng
        try:
            self.build((None, *input_shape))
        finally:
            self._rng = None

    def _run_build(self, build, full_shape) -> None:
        """What every build does around the subclass's own: see _build_wrapper."""
        if getattr(self, "_building", False):  # a subclass's build calling super().build
            build(self, tuple(full_shape))
            return
        input_shape = check_batch_shape(full_shape)
        if self.built:
            if input_shape != self.built_input_shape:
                raise ValueError(f"Layer {self.name!r} was built for inputs of shape "
                                 f"{(None,) + self.built_input_shape}, received "
                                 f"{(None,) + input_shape}.")
            return
        self.compute_output_shape(input_shape)  # raises for inputs the layer cannot take
        dtype = self.dtype
        self.dtype = dtype or config.floatx()
        self._building = True
        try:
            build(self, tuple(full_shape))
        except BaseException:  # leave the layer unbuilt, as it was (MemoryError included)
            self.params, self.grads, self.dtype = {}, {}, dtype
            raise
        finally:
            self._building = False
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

    # --- Keras's variables -------------------------------------------------------------------
    def _variable(self, key):
        """layer.kernel and friends: the Variable, after Keras's check that the layer is built."""
        if not self.built:
            raise AttributeError(f"You must build the layer before accessing `{key}`.")
        return layer_variable(self, key) if key in self.params else None

    @property
    def weights(self) -> list:
        """Every weight as a Variable, in get_weights() order."""
        return [layer_variable(self, k) for k in self.weight_names]

    variables = weights

    @property
    def trainable_weights(self) -> list:
        return [layer_variable(self, k) for k in self.trainable_names]

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list:
        return [layer_variable(self, k) for k in self.weight_names if k in self.non_trainable]

    non_trainable_variables = non_trainable_weights

    def count_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def penalty(self) -> float:
        """Sum of this layer's weight penalties (0 without regularizers)."""
        if not any(r is not None for r in self.regularizers.values()):
            return 0.0
        return regularizers.total_penalty(self)

    def add_penalty_gradients(self) -> None:
        """grads[k] += d penalty / d params[k]; the model calls it after backward."""
        if any(r is not None for r in self.regularizers.values()):
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


def _build_wrapper(build):
    """A subclass's build(input_shape), wrapped: Keras's shape is checked, the dtype set, and
    ``built`` / ``built_input_shape`` recorded, whoever calls it; a failed build leaves the
    layer unbuilt."""

    @functools.wraps(build)
    def wrapper(self, input_shape):
        self._run_build(build, input_shape)

    return wrapper


Layer.build = _build_wrapper(Layer.build)


def dtype_name(value):
    """A dtype from a config: a name, or Keras's DTypePolicy dict {'config': {'name': ...}}."""
    if isinstance(value, dict):
        inner = value.get("config") if isinstance(value.get("config"), dict) else {}
        return inner.get("name", value.get("name"))
    return value


def layer_kwargs(cls, config) -> dict:
    """Constructor arguments for cls from a layer config (minicnn's or Keras's)."""
    if not isinstance(config, dict):
        raise invalid("config", f"a dict from {cls.__name__}.get_config()", config,
                      ArgumentTypeError)
    kwargs = dict(config)
    if "dtype" in kwargs:
        kwargs["dtype"] = dtype_name(kwargs["dtype"])
    return kwargs
