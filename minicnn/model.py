"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

One training step, the whole of backprop in four lines (see ``_train_step``):

    out = forward(x, training=True)          # each unit caches what its backward needs
    loss, dout = loss_and_gradient(y, out)   # fused softmax + crossentropy: (p - y) / N
    backward(dout)                           # each layer fills layer.grads
    optimizer.update(params, grads)          # in place

Off the happy path (README, "Reliability"):

* every public method checks all of its arguments before it changes anything, so a rejected
  call leaves weights, optimizer state, layers, compile state and dropout counters as they were;
* inputs are checked finite after the cast to the model's float dtype;
* a training step whose loss or update would be NaN or inf raises FloatingPointError and
  leaves the model as it was before that step (the optimizer checks every new value before it
  writes any; dropout counters and moving statistics are put back);
* predict and evaluate raise FloatingPointError rather than return NaN or inf;
* the methods that run the layers hold the model's lock, so one model may be used from several
  threads (calls take turns: the kernels already use every core).
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
import warnings

import numpy as np

from minicnn import coldstart, config, fusion, losses, optimizers, saving
from minicnn.callbacks import Callback, CallbackList, History
from minicnn.kernels.dispatch import ops
from minicnn.layers.base import Layer, check_shape, unique_name
from minicnn.layers.input_layer import InputLayer
from minicnn.progbar import Progbar
from minicnn.random import draw_seed
from minicnn.summary import summary_lines
from minicnn.validation import (
    ArgumentTypeError,
    check_bool,
    check_float,
    check_int,
    check_name,
    check_seed,
    invalid,
)

DEFAULT_BATCH_SIZE = 32  # Keras's batch_size=None


def as_float_array(value, arg: str, dtype) -> np.ndarray:
    """value as a real array of dtype, all finite; checked after the cast.

    The cast is where float64 data above float32's range (|x| > 3.4e38) turns into inf, so the
    check comes after it. Raises ArgumentTypeError for non-numeric data, ValueError for NaN/inf.
    """
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # a ragged nested list, say
        raise invalid(arg, "an array of numbers", value, ArgumentTypeError) from e
    if a.dtype.kind not in "biuf":
        raise ArgumentTypeError(
            f"Invalid dtype for argument {arg}. Expected a real numeric array. "
            f"Received: {arg}.dtype={a.dtype}"
        )
    if a.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            cast = a.astype(dtype)
    else:
        cast = a
    if not _all_finite(cast):
        bad = int(cast.size - np.count_nonzero(np.isfinite(cast)))
        if _all_finite(a):
            raise ValueError(
                f"Argument {arg} holds {bad} value(s) beyond the range of {np.dtype(dtype).name} "
                f"(largest {float(np.abs(a).max()):.3g}): they would become inf when cast."
            )
        raise ValueError(f"Argument {arg} contains {bad} NaN or inf value(s).")
    return cast


def _all_finite(a) -> bool:
    # min and max propagate NaN: two reductions and no temporary the size of a
    if a.dtype.kind not in "fc" or a.size == 0:
        return True
    return bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def _batch_size(value, arg="batch_size") -> int:
    """Keras's batch_size: None means 32."""
    return DEFAULT_BATCH_SIZE if value is None else check_int(value, arg, minimum=1)


def _verbose(value) -> int:
    """Keras's verbose: 'auto' (= 1), 0 (silent), 1 (progress bar) or 2 (one line per epoch)."""
    if isinstance(value, str):
        if value == "auto":
            return 1
        raise invalid("verbose", "'auto', 0, 1 or 2", value)
    return check_int(value, "verbose", minimum=0, maximum=2)


def _guarded(method):
    """Run method holding the model's lock, inside the backend's compute scope."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock, ops().compute_scope():
            return method(self, *args, **kwargs)

    return wrapper


class Sequential:
    """A linear stack of layers, as keras.Sequential.

    Args:
        layers: list of Layer instances; the first may be an ``Input(shape=...)`` or carry
            ``input_shape=``.
        trainable: Keras's; True only (minicnn does not freeze models).
        name: model name ('sequential', 'sequential_1', ... by default).
    """

    def __init__(self, layers=None, trainable=True, name=None):
        name = check_name(name)
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise invalid("layers", "a list of Layer instances or None", layers,
                          ArgumentTypeError)
        if trainable is not True:
            raise invalid("trainable", "True (minicnn does not freeze models)", trainable)
        self.name = name or unique_name("sequential")
        self._lock = threading.RLock()
        self._layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self.loss = None
        self.optimizer = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.history = None
        self.input_shape: tuple[int, ...] | None = None
        self._units_cache: tuple[str, list] | None = None
        for layer in layers or []:
            self.add(layer)

    def __getstate__(self):  # copy.deepcopy and pickle: a lock cannot be copied
        state = self.__dict__.copy()
        del state["_lock"]
        state["_units_cache"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # --- building ----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def add(self, layer: Layer) -> None:
        """Append a layer; built at once if the model's input shape is known (as Keras).

        ``add(Input(shape=...))`` first declares the input shape instead (no layer is added).
        The layer must accept the current output: if it cannot (a Conv2D after a Flatten,
        say), ValueError is raised and the model is unchanged.
        """
        if isinstance(layer, InputLayer):
            self._add_input_layer(layer)
            return
        if not isinstance(layer, Layer):
            raise ArgumentTypeError(f"Only instances of `minicnn.layers.Layer` can be added to "
                                    f"a Sequential model. Received: {layer!r} "
                                    f"(of type {type(layer)})")
        if any(layer is other for other in self._layers):
            raise ValueError(f"Layer {layer.name!r} is already in model {self.name!r}: a layer "
                             f"object can appear once (create a new layer).")
        with self._lock:
            shape = self.input_shape
            if shape is None and not self._layers and self._input_layer is not None:
                shape = self._input_layer.shape
            elif shape is None and not self._layers and layer.input_shape is not None:
                shape = layer.input_shape
            if shape is not None:
                self._infer_shapes(shape, [*self._layers, layer])  # raises before any change
            self._layers.append(layer)
            self._units_cache = None
            if shape is not None:
                self.build(shape)

    def _add_input_layer(self, input_layer: InputLayer) -> None:
        """Keras's Sequential([Input(shape), ...]): the input shape, declared before layers."""
        if self._input_layer is not None or self.input_shape is not None:
            shape = (None, *(self.input_shape or self._input_layer.shape))
            raise ValueError(f"Sequential model '{self.name}' has already been configured to "
                             f"use input shape {shape}. You cannot add a different Input "
                             f"layer to it.")
        if self._layers:
            raise ValueError(f"An Input layer must come first in Sequential model "
                             f"'{self.name}', before its {len(self._layers)} layer(s).")
        with self._lock:
            self._input_layer = input_layer

    def add_input_shape(self, shape) -> None:
        """Declare the per-sample input shape, as ``add(Input(shape=shape))``."""
        self._add_input_layer(InputLayer(shape=shape))

    def pop(self):
        """Remove and return the last layer (Keras's pop); the model stays built."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")  # Keras's words
        with self._lock:
            layer = self._layers.pop()
            self._units_cache = None
            return layer

    @property
    def built(self) -> bool:
        return self.input_shape is not None and all(layer.built for layer in self._layers)

    def _infer_shapes(self, input_shape, layers=None) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer for input_shape, without building anything;
        ValueError naming the first layer that cannot take its input."""
        shapes, shape = [], tuple(input_shape)
        for layer in self._layers if layers is None else layers:
            if layer.built and shape != layer.built_input_shape:
                raise ValueError(f"Layer {layer.name!r} was built for inputs of shape "
                                 f"{(None, *layer.built_input_shape)}, but here it would "
                                 f"receive {(None, *shape)}.")
            try:
                shape = tuple(layer.compute_output_shape(shape))
            except ValueError as e:
                raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) cannot take "
                                 f"inputs of shape {(None, *shape)}: {e}") from e
            if not all(d > 0 for d in shape):
                raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) would output "
                                 f"an empty shape {(None, *shape)} from inputs of shape "
                                 f"{(None, *tuple(input_shape))}.")
            shapes.append(shape)
        return shapes

    def build(self, input_shape=None) -> None:
        """Create every layer's weights for per-sample input_shape, e.g. (28, 28, 1), or
        Keras's form with the batch axis as None, (None, 28, 28, 1).

        All shapes are checked first; if a layer cannot take its input, nothing is built.
        """
        if not self._layers:
            raise ValueError("Cannot build an empty Sequential model: add layers first.")
        if input_shape is None and self._input_layer is not None:
            input_shape = self._input_layer.shape
        if isinstance(input_shape, (tuple, list)) and len(input_shape) > 1 and \
                input_shape[0] is None:
            input_shape = input_shape[1:]  # Keras's (None, *sample)
        input_shape = shape = check_shape(input_shape)
        with self._lock:
            self._infer_shapes(shape)
            for layer in self._layers:
                layer.build_for(shape)
                shape = layer.compute_output_shape(shape)
            self.input_shape = input_shape
            self._set_input_grad_flags()

    def _set_input_grad_flags(self):
        # The first layer's input is data: computing its gradient would be wasted work.
        for i, layer in enumerate(self._layers):
            layer.needs_input_grad = i > 0

    def output_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer."""
        if self.input_shape is None:
            raise ValueError("The model is not built yet: call build(input_shape), fit or "
                             "predict first, or give the first layer input_shape=.")
        return self._infer_shapes(self.input_shape)

    # --- compile -----------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="categorical_crossentropy", metrics=None):
        """Choose the optimizer, the loss and the metrics ('accuracy' is the one computed).

        Keras's order (optimizer, loss, metrics); the defaults are the seed's (Keras's are
        'rmsprop', which minicnn does not have, and no loss). Everything is resolved and
        checked before anything is replaced: a compile() that fails leaves the previous one in
        force. metrics may be a list, or one string (Keras 2 accepted that; Keras 3 does not).
        """
        new_loss = losses.get(loss)
        new_optimizer = optimizers.get(optimizer)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str):
            metrics = [metrics]
        elif not isinstance(metrics, (list, tuple)):
            raise invalid("metrics", "a list of metric names such as ['accuracy']", metrics,
                          ArgumentTypeError)
        for m in metrics:
            if m not in ("accuracy", "acc"):
                raise invalid("metrics", "a list holding 'accuracy' (the metric minicnn "
                              "computes)", metrics)
        with self._lock:
            self.loss, self.optimizer = new_loss, new_optimizer
            self.metrics = ["accuracy"] if metrics else []

    def _require_compiled(self, what):
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"You must call `compile()` before using the model for {what}.")

    def _check_optimizer_fits(self):
        """The optimizer's slots, if it has any yet, belong to this model's parameters (an
        optimizer object reused from another model would otherwise fail mid-step)."""
        held = [a.shape for a in self.optimizer.slots.get(
            self.optimizer.slot_names[0], [])] if self.optimizer.slot_names else []
        if not held:
            return
        mine = [p.shape for p in self.trainable_params()[0]] if self.built else None
        if mine != held:
            raise ValueError(f"The optimizer holds state for {len(held)} parameters that are "
                             f"not this model's {'(unbuilt)' if mine is None else len(mine)} "
                             f"trainable parameters: compile with a new optimizer.")

    # --- forward and backward ----------------------------------------------------------------
    def _units(self):
        # the plan depends on the backend and on the activations, which Keras lets a user
        # change after construction (layer.activation = None)
        key = (config.get_backend(),
               tuple(type(getattr(layer, "activation", None)) for layer in self._layers))
        if self._units_cache is None or self._units_cache[0] != key:
            self._units_cache = (key, fusion.plan(self._layers, key[0]))
        return self._units_cache[1]

    def forward(self, x, training=False):
        """Run x (N, *input_shape) through every layer; returns the last layer's output.

        The raw pass, for teaching and tests: no checks, no lock (predict has both).
        """
        for unit in self._units():
            x = unit.forward(x, training=training)
        return x

    def _fused_loss(self, loss=None) -> bool:
        """True when the last layer is softmax and the loss a crossentropy on probabilities:
        use its logits.

        Keras on TensorFlow also attaches logits to a *sigmoid* output, and its crossentropy
        then applies softmax crossentropy to them (backend/tensorflow/nn.py, _get_logits):
        matched here on purpose, checked by the parity suite's 'sigmoid output' case. A loss
        with from_logits=True takes the output itself as the logits, as Keras does (even after
        a softmax, where Keras warns), so it is never fused.
        """
        if getattr(loss or self.loss, "from_logits", False) is True:
            return False
        last = self._layers[-1]
        if getattr(self.loss, "clip_probabilities", False):  # Keras on JAX / PyTorch: no logits
            return False
        return (getattr(getattr(last, "activation", None), "name", None) in ("softmax", "sigmoid")
                and hasattr(last, "preactivation"))

    def loss_and_gradient(self, y, out, sample_weight=None, loss=None):
        """(loss, gradient to feed backward) for targets y and the model's output, with the
        compiled loss or ``loss``."""
        loss = loss or self.loss
        last = self._layers[-1]
        if self._fused_loss(loss):
            return loss.with_logits(y, last.preactivation, sample_weight)
        if loss.from_logits:  # Keras's from_logits=True: the output is z
            return loss.with_logits(y, out, sample_weight)
        return loss.with_probabilities(y, out, sample_weight)

    def backward(self, dout, loss=None):
        """Backprop dout from the loss (the compiled one, or ``loss``) through every unit,
        filling each layer's grads."""
        units = self._units()
        if self._fused_loss(loss):  # dout is already dL/dlogits: skip the softmax Jacobian
            # the last unit is the last layer, or a fused unit that answers for it
            dout = units[-1].backward_linear(dout)
            units = units[:-1]
        for unit in reversed(units):
            dout = unit.backward(dout)
        # Weight penalties: their gradients join the data gradients here, once, after every
        # unit (layer-by-layer or fused) has written its layers' grads.
        for layer in self._layers:
            if hasattr(layer, "add_penalty_gradients"):
                layer.add_penalty_gradients()
        return dout

    def regularization_loss(self) -> float:
        """Sum of the layers' weight penalties (0 without regularizers)."""
        return float(sum(layer.penalty() for layer in self._layers if hasattr(layer, "penalty")))

    def trainable_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Parallel lists (params, grads) in layer order, as the optimizer sees them."""
        params, grads = [], []
        for layer in self._layers:
            for k in layer.trainable_names:
                params.append(layer.params[k])
                grads.append(layer.grads[k])
        return params, grads

    # --- Keras's variables -------------------------------------------------------------------
    def _variables(self, which) -> list:
        from minicnn.variables import layer_variable

        keys = {"all": lambda layer: layer.weight_names,
                "trainable": lambda layer: layer.trainable_names,
                "non_trainable": lambda layer: [k for k in layer.weight_names
                                                if k in layer.non_trainable]}[which]
        return [layer_variable(layer, k, self.name) for layer in self._layers
                for k in keys(layer)]

    @property
    def weights(self) -> list:
        """Every weight as a Variable (minicnn.variables), layer by layer, get_weights() order."""
        return self._variables("all")

    variables = weights

    @property
    def trainable_weights(self) -> list:
        """The weights the optimizer updates, as Variables, in the order of
        compute_gradients' gradients: ``apply_gradients(zip(grads, model.trainable_weights))``.
        """
        return self._variables("trainable")

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list:
        """BatchNormalization's moving statistics, as Variables."""
        return self._variables("non_trainable")

    non_trainable_variables = non_trainable_weights

    @_guarded
    def compute_gradients(self, x, y, sample_weight=None, training=True, loss=None):
        """(loss, gradients) of one batch, for a training loop written by hand.

        What a Keras loop gets from ``tf.GradientTape`` (or ``jax.grad``), with the same
        forward pass ``fit`` runs::

            loss, grads = model.compute_gradients(x, y)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        Args:
            x, y, sample_weight: one batch, as for train_on_batch.
            training: True runs dropout and updates BatchNormalization's moving statistics,
                as Keras's ``model(x, training=True)`` inside a tape.
            loss: the loss to differentiate (a name, class or object from minicnn.losses);
                None: the compiled one.

        Returns:
            (loss as a float, including weight penalties; a list of gradient arrays, copies,
            aligned with ``model.trainable_variables``). Nothing is updated: the optimizer
            step is the caller's. Raises FloatingPointError, and leaves dropout counters and
            moving statistics as they were, when the loss is NaN or inf.
        """
        training = check_bool(training, "training")
        if loss is None:
            if self.loss is None:
                raise ValueError("compute_gradients needs a loss: call `compile()` first, or "
                                 "pass loss= (e.g. minicnn.losses.CategoricalCrossentropy()).")
            loss_object = self.loss
        else:
            loss_object = losses.get(loss)
        x, y, sample_weight = self._check_xy(x, y, sample_weight, loss=loss_object)
        if len(x) == 0:
            raise ValueError("Argument x holds 0 samples: there is nothing to differentiate.")
        self._ensure_built(x)
        before = [layer.state_snapshot() for layer in self._layers]
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                out = self.forward(x, training=training)
                value, dout = self.loss_and_gradient(y, out, sample_weight, loss_object)
                value += self.regularization_loss()
                if not math.isfinite(value):
                    raise FloatingPointError(f"compute_gradients: the loss is {value}; "
                                             f"dropout counters and moving statistics are "
                                             f"left as they were.")
                self.backward(dout, loss_object)
        except FloatingPointError:
            for layer, state in zip(self._layers, before):
                layer.restore_state(state)
            raise
        _, grads = self.trainable_params()
        return value, [g.copy() for g in grads]

    def _param_name(self, index: int) -> str:
        """'conv2d.kernel' for the index-th trainable parameter."""
        names = [f"{layer.name}.{k}" for layer in self._layers for k in layer.trainable_names]
        return names[index] if 0 <= index < len(names) else f"parameter {index}"

    def _train_step(self, x, y, sample_weight=None, before_backward=None):
        """One step; on a non-finite loss or update, the model is put back as it was before the
        step (dropout counters and moving statistics included) and FloatingPointError raised.
        ``before_backward()``, if given, runs between the loss and the backward pass (fit's
        first step: wait for the cold-start helper, minicnn.coldstart)."""
        before = [layer.state_snapshot() for layer in self._layers]
        try:
            # overflow warnings would only repeat what the checks below raise
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss, out = self._checked_step(x, y, sample_weight, before_backward)
        except FloatingPointError as e:
            for layer, state in zip(self._layers, before):
                layer.restore_state(state)
            raise FloatingPointError(
                f"{e}; the step was not applied: the model keeps its weights and optimizer "
                f"state from before it (iterations={self.optimizer.iterations}). Lower the "
                f"learning rate or check the data."
            ) from None
        return loss, out

    def _checked_step(self, x, y, sample_weight, before_backward=None):
        out = self.forward(x, training=True)
        loss, dout = self.loss_and_gradient(y, out, sample_weight)
        loss += self.regularization_loss()
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss}")
        for layer in self._layers:  # moving statistics, updated by the forward pass
            for k in layer.non_trainable:
                if not _all_finite(layer.params[k]):
                    raise FloatingPointError(f"{layer.name}.{k} became non-finite")
        if before_backward is not None:
            before_backward()
        self.backward(dout)
        try:
            self.optimizer.update(*self.trainable_params())
        except optimizers.NonFiniteUpdateError as e:
            raise FloatingPointError(
                f"the update of {self._param_name(e.index)} would be non-finite "
                f"({e.reason})"
            ) from None
        return loss, out

    def _test_step(self, x, y, sample_weight=None):
        out = self.forward(x, training=False)
        loss, _ = self.loss_and_gradient(y, out, sample_weight)
        return loss + self.regularization_loss(), out

    @staticmethod
    def _accuracy_count(y, out) -> int:
        pred = out.argmax(axis=-1)
        true = y.argmax(axis=-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
        return int(np.count_nonzero(pred == true))

    def _non_finite_output(self, what: str) -> FloatingPointError:
        """The error for NaN/inf coming out of the layers, naming non-finite weights if any."""
        bad = [f"{layer.name}.{k}" for layer in self._layers for k, w in layer.params.items()
               if not _all_finite(w)]
        why = (f"the weights {', '.join(bad)} hold NaN or inf" if bad else
               "a value overflowed the float range inside the model")
        return FloatingPointError(f"{what} produced NaN or inf: {why}.")

    # --- checks (nothing in this section changes the model) -----------------------------------
    def _dtype(self):
        if self._layers and self._layers[0].dtype is not None:
            return np.dtype(self._layers[0].dtype)
        return np.dtype(config.floatx())

    def _check_x(self, x, arg="x") -> np.ndarray:
        """x as a finite float batch whose sample shape fits the model (built or not)."""
        if not self._layers:
            raise ValueError(f"Model {self.name!r} has no layers: add layers before using it.")
        if x is None:
            raise invalid(arg, "an array of shape (N, *input_shape)", x, ArgumentTypeError)
        x = as_float_array(x, arg, self._dtype())
        if x.ndim < 2:
            raise ValueError(f"Argument {arg} must be a batch of samples (ndim >= 2). "
                             f"Received: {arg}.shape={x.shape}")
        if self.input_shape is not None:
            if tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(f"Input 0 of model {self.name!r} is incompatible: expected "
                                 f"shape {(None, *self.input_shape)}, received {x.shape}.")
        else:
            check_shape(x.shape[1:], f"{arg}.shape[1:]")
            self._infer_shapes(x.shape[1:])
        return x

    def _check_xy(self, x, y, sample_weight=None, prefix="", loss=None):
        """(x, y, sample_weight) checked against the model and its loss (or ``loss``);
        nothing built."""
        x = self._check_x(x, f"{prefix}x")
        if y is None:
            raise invalid(f"{prefix}y", "targets with one row per sample of x", y,
                          ArgumentTypeError)
        y = _check_targets_array(y, f"{prefix}y")
        if y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"Arguments {prefix}x and {prefix}y must have the same number of "
                             f"samples. Received: {prefix}x with {len(x)}, {prefix}y with shape "
                             f"{y.shape}.")
        n_out = (self._infer_shapes(self.input_shape) if self.input_shape is not None
                 else self._infer_shapes(x.shape[1:]))[-1][-1]
        y = (loss or self.loss).check_targets(y, n_out)
        if sample_weight is not None:
            sample_weight = as_float_array(sample_weight, f"{prefix}sample_weight", x.dtype)
            if sample_weight.ndim == 2 and sample_weight.shape[1] == 1:
                sample_weight = sample_weight[:, 0]
            if sample_weight.shape != (len(x),):
                raise ValueError(f"Argument {prefix}sample_weight must have shape ({len(x)},), "
                                 f"one weight per sample. Received: shape "
                                 f"{sample_weight.shape}")
        return x, y, sample_weight

    def _check_validation_data(self, validation_data):
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise invalid("validation_data", "a tuple (x_val, y_val) or (x_val, y_val, "
                          "val_sample_weight)", validation_data, ArgumentTypeError)
        return self._check_xy(*validation_data, prefix="val_") if len(validation_data) == 3 \
            else self._check_xy(*validation_data, None, prefix="val_")

    def _ensure_built(self, x):
        if not self.built:
            self.build(x.shape[1:])

    # --- the Keras API -----------------------------------------------------------------------
    @_guarded
    def fit(self, x, y, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, sample_weight=None,
            initial_epoch=0, seed=None):
        """Train for `epochs` passes over (x, y) in mini-batches; returns a History.

        Keras's arguments, in Keras's order (batch_size None means 32), plus ``seed``.
        Shapes: x (N, *input_shape); y (N, K) one-hot, or (N,) for the sparse loss;
        sample_weight (N,) (the loss becomes sum_n w_n l_n / N, as Keras's).
        As in Keras, training runs epochs initial_epoch .. epochs - 1. Epoch e is shuffled by
        a generator seeded with (seed, e), so a run resumed with the same seed and
        initial_epoch=e sees exactly the batches the uninterrupted run would have.
        The epoch's loss and accuracy are running means over its batches, each weighted by its
        size and taken before that batch's update (what Keras logs). Validation runs at the end
        of each epoch with dropout off.
        Raises FloatingPointError naming the epoch and step when a step's loss or update would
        be NaN or inf; the model then holds the weights and optimizer state of the last good
        step.
        """
        self._require_compiled("fit")
        self._check_optimizer_fits()
        batch_size = _batch_size(batch_size)
        epochs = check_int(epochs, "epochs", minimum=0)
        verbose = _verbose(verbose)
        initial_epoch = check_int(initial_epoch, "initial_epoch", minimum=0)
        validation_split = check_float(validation_split, "validation_split", low=0, high=1,
                                       high_open=True)
        shuffle = check_bool(shuffle, "shuffle")
        seed = check_seed(seed)
        callbacks = _check_callbacks(callbacks)
        x, y, sample_weight = self._check_xy(x, y, sample_weight)
        if len(x) == 0:
            raise ValueError("Argument x holds 0 samples: there is nothing to train on.")
        val = self._check_validation_data(validation_data)
        if validation_split and val is None:
            # Keras holds out the *last* fraction of the samples, before any shuffling
            cut = int(len(x) * (1 - validation_split))
            if cut in (0, len(x)):  # Keras's check (trainers/data_adapters/array_slicing.py)
                raise ValueError(f"Training data contains {len(x)} samples, which is not "
                                 f"sufficient to split it into a validation and training set "
                                 f"as specified by validation_split={validation_split}.")
            val = (x[cut:], y[cut:], None if sample_weight is None else sample_weight[cut:])
            x, y = x[:cut], y[:cut]
            sample_weight = None if sample_weight is None else sample_weight[:cut]
        if val is not None and len(val[0]) == 0:
            raise ValueError("validation_data holds 0 samples.")
        # --- everything is checked: from here on the model changes ---
        self._ensure_built(x)
        n = len(x)
        steps = -(-n // batch_size)
        base_seed = draw_seed(seed)
        history = History()
        cbs = CallbackList([history, *callbacks], self,
                           {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        self.epoch_times: list[float] = []
        # a cold kernel cache: the backward compiles in a helper process meanwhile
        first = slice(0, batch_size)
        helper = None if epochs <= initial_epoch else coldstart.start(
            self, x[first], y[first], None if sample_weight is None else sample_weight[first])
        try:
            self._fit_epochs(x, y, sample_weight, batch_size, epochs, initial_epoch, shuffle,
                             base_seed, steps, verbose, val, cbs, helper)
        finally:
            if helper is not None:
                helper.close()
        cbs.on_train_end()
        history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        history.model = self
        self.history = history
        return history

    def _fit_epochs(self, x, y, sample_weight, batch_size, epochs, initial_epoch, shuffle,
                    base_seed, steps, verbose, val, cbs, helper):
        """fit's loop over epochs and batches (its arguments checked by fit)."""
        n = len(x)
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            bar = Progbar(steps, verbose=verbose)
            rng = np.random.default_rng([base_seed, epoch])
            order = rng.permutation(n) if shuffle else np.arange(n)
            loss_sum, correct, seen = 0.0, 0, 0
            t0 = time.perf_counter()
            for step in range(steps):
                idx = order[step * batch_size : (step + 1) * batch_size]
                if shuffle:
                    idx = np.sort(idx)  # same batch, gathered in memory order
                cbs.on_train_batch_begin(step)
                wb = None if sample_weight is None else sample_weight[idx]
                try:
                    loss, out = self._train_step(x[idx], y[idx], wb,
                                                 None if helper is None else helper.join)
                except FloatingPointError as e:
                    raise FloatingPointError(f"Epoch {epoch + 1}, step {step + 1}/{steps}: "
                                             f"{e}") from None
                if helper is not None:
                    helper.first_step_done()
                    helper = None
                loss_sum += loss * len(idx)
                correct += self._accuracy_count(y[idx], out)
                seen += len(idx)
                logs = {"loss": loss_sum / seen}
                if self.metrics:
                    logs["accuracy"] = correct / seen
                cbs.on_train_batch_end(step, logs)
                if step + 1 < steps:
                    bar.update(step + 1, logs)
            self.epoch_times.append(time.perf_counter() - t0)
            if val is not None:
                scores = self._evaluate(*val, batch_size=batch_size, verbose=0)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            bar.update(steps, logs, finalize=True)
            cbs.on_epoch_end(epoch, dict(sorted(logs.items())))
            if self.stop_training:
                break

    @_guarded
    def evaluate(self, x, y, batch_size=None, verbose="auto", sample_weight=None,
                 return_dict=False):
        """Loss (and accuracy) on (x, y) with dropout off: [loss, accuracy], or loss alone.

        Raises ValueError for 0 samples (a mean over nothing is undefined) and
        FloatingPointError if the loss is NaN or inf.
        """
        self._require_compiled("evaluate")
        batch_size = _batch_size(batch_size)
        verbose = _verbose(verbose)
        return_dict = check_bool(return_dict, "return_dict")
        x, y, sample_weight = self._check_xy(x, y, sample_weight)
        if len(x) == 0:
            raise ValueError("Argument x holds 0 samples: the loss over no samples is "
                             "undefined.")
        self._ensure_built(x)
        result = self._evaluate(x, y, sample_weight, batch_size=batch_size, verbose=verbose)
        if return_dict:
            return result
        return [result["loss"], result["accuracy"]] if self.metrics else result["loss"]

    def _evaluate(self, x, y, sample_weight, batch_size, verbose) -> dict:
        n = len(x)
        steps = -(-n // batch_size)
        bar = Progbar(steps, verbose=verbose)
        loss_sum, correct = 0.0, 0
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            wb = None if sample_weight is None else sample_weight[sl]
            loss, out = self._test_step(x[sl], y[sl], wb)
            if not math.isfinite(loss):
                raise self._non_finite_output(f"evaluate (batch {step + 1}/{steps})")
            loss_sum += loss * len(out)
            correct += self._accuracy_count(y[sl], out)
            logs = {"loss": loss_sum / min((step + 1) * batch_size, n)}
            if self.metrics:
                logs["accuracy"] = correct / min((step + 1) * batch_size, n)
            bar.update(step + 1, logs)
        result = {"loss": loss_sum / n}
        if self.metrics:
            result["accuracy"] = correct / n
        return result

    @_guarded
    def predict(self, x, batch_size=None, verbose=0):
        """Output of the last layer (class probabilities for the seed model), dropout off.

        Shapes: x (N, *input_shape) -> (N, *output_shape); N = 0 gives an empty array.
        Raises FloatingPointError rather than return NaN or inf.
        """
        batch_size = _batch_size(batch_size)
        verbose = _verbose(verbose)
        x = self._check_x(x)
        self._ensure_built(x)
        n = len(x)
        out = np.empty((n, *self.output_shapes()[-1]), dtype=x.dtype)
        steps = -(-n // batch_size)
        bar = Progbar(steps, verbose=verbose)
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            out[sl] = self.forward(x[sl], training=False)
            if not _all_finite(out[sl]):
                raise self._non_finite_output(f"predict (batch {step + 1}/{steps})")
            bar.update(step + 1, {})
        return out

    def predict_proba(self, x, batch_size=32, verbose=1):
        """Keras 2's predict_proba: predict(x), with Keras 2.0's defaults (batch_size=32,
        verbose=1) and its warning when the outputs are not probabilities. Keras 2.6 and 3
        removed it; FutureWarning naming the modern spelling."""
        warnings.warn("predict_proba is Keras 2 API (removed in Keras 2.6 and 3): use "
                      "model.predict(x).", FutureWarning, stacklevel=2)
        preds = self.predict(x, batch_size=batch_size, verbose=verbose)
        if preds.size and (preds.min() < 0.0 or preds.max() > 1.0):
            warnings.warn("Network returning invalid probability values. The last layer might "
                          "not normalize predictions into probabilities (like softmax or "
                          "sigmoid would).", stacklevel=2)
        return preds

    def predict_classes(self, x, batch_size=32, verbose=1):
        """Keras 2's predict_classes: the argmax of predict(x) over the last axis, or, for one
        output unit (a sigmoid), (p > 0.5) as int32 of shape (N, 1). Keras 2.0's defaults
        (batch_size=32, verbose=1); FutureWarning naming the modern spelling."""
        warnings.warn("predict_classes is Keras 2 API (removed in Keras 2.6 and 3): use "
                      "np.argmax(model.predict(x), axis=-1), or (model.predict(x) > 0.5)"
                      ".astype('int32') for one sigmoid unit.", FutureWarning, stacklevel=2)
        proba = self.predict(x, batch_size=batch_size, verbose=verbose)
        if proba.shape[-1] > 1:
            return proba.argmax(axis=-1)
        return (proba > 0.5).astype("int32")

    @_guarded
    def __call__(self, x, training=False):
        training = check_bool(training, "training")
        x = self._check_x(x)
        self._ensure_built(x)
        return self.forward(x, training=training)

    @_guarded
    def train_on_batch(self, x, y, sample_weight=None):
        """One optimizer step on one batch; returns [loss, accuracy] before the update.

        Raises FloatingPointError (and changes nothing) if the step's loss or update would be
        NaN or inf.
        """
        self._require_compiled("train_on_batch")
        self._check_optimizer_fits()
        x, y, sample_weight = self._check_xy(x, y, sample_weight)
        if len(x) == 0:
            raise ValueError("Argument x holds 0 samples: there is nothing to train on.")
        self._ensure_built(x)
        loss, out = self._train_step(x, y, sample_weight)
        return [loss, self._accuracy_count(y, out) / len(x)] if self.metrics else loss

    @_guarded
    def test_on_batch(self, x, y, sample_weight=None):
        """Loss (and accuracy) of one batch, no update."""
        self._require_compiled("test_on_batch")
        x, y, sample_weight = self._check_xy(x, y, sample_weight)
        if len(x) == 0:
            raise ValueError("Argument x holds 0 samples: the loss over no samples is "
                             "undefined.")
        self._ensure_built(x)
        loss, out = self._test_step(x, y, sample_weight)
        if not math.isfinite(loss):
            raise self._non_finite_output("test_on_batch")
        return [loss, self._accuracy_count(y, out) / len(x)] if self.metrics else loss

    # --- weights and summary -----------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Every layer's weights in order, Keras's shapes: [conv kernel, conv bias, ...]."""
        with self._lock:
            return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Load get_weights()-ordered arrays; all are checked (count, shapes, finiteness)
        before any is written."""
        try:
            weights = list(weights)
        except TypeError:
            raise invalid("weights", "a list of arrays", weights, ArgumentTypeError) from None
        expected = sum(len(layer.weight_names) for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"Model {self.name!r} expects {expected} weight arrays, received "
                             f"{len(weights)}.")
        i = 0
        staged = []
        for layer in self._layers:
            k = len(layer.weight_names)
            ws = []
            for key, w in zip(layer.weight_names, weights[i : i + k]):
                ws.append(as_float_array(w, f"weights[{i + len(ws)}] ({layer.name}.{key})",
                                         layer.params[key].dtype))
                if ws[-1].shape != layer.params[key].shape:
                    raise ValueError(f"Layer {layer.name!r} weight {key!r} has shape "
                                     f"{layer.params[key].shape}, received {ws[-1].shape}.")
            staged.append((layer, ws))
            i += k
        with self._lock:
            for layer, ws in staged:
                layer.set_weights(ws)

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._layers)

    def optimizer_param_count(self) -> tuple[int, int]:
        """(count, bytes) of the optimizer's variables once built; Keras counts its iteration
        counter and learning rate too."""
        if self.optimizer is None or self.optimizer.iterations == 0:
            return 0, 0
        slots = self.optimizer.slot_arrays()
        return (sum(s.size for s in slots) + 2,
                sum(s.nbytes for s in slots) + 8 + 4)  # int64 iterations + float32 lr

    def summary(self, print_fn=None) -> None:
        """Print the Keras 3 summary table: layers, output shapes, parameter counts."""
        print_fn = print_fn or (lambda line: print(line, file=sys.stdout))
        for line in summary_lines(self):
            print_fn(line)

    def get_config(self) -> dict:
        """Keras 3's Sequential config: name, layers (an InputLayer first once the input shape
        is known, then each layer as {'module', 'class_name', 'config', 'registered_name'})
        and build_input_shape."""
        from minicnn.serialization import serialize

        shape = self.input_shape or (self._input_layer.shape if self._input_layer else None)
        layers = []
        if shape is not None:
            layers.append(serialize(self._input_layer or InputLayer(shape=shape,
                                                                    dtype=self._dtype().name)))
        layers += [serialize(layer) for layer in self._layers]
        config = {"name": self.name, "trainable": True, "dtype": self._dtype().name,
                  "layers": layers}
        if shape is not None:
            config["build_input_shape"] = [None, *shape]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The model get_config() describes (or Keras 3's Sequential config): same layers,
        built when the config has an input shape, fresh weights, not compiled."""
        from minicnn.serialization import deserialize_layer

        if not isinstance(config, dict) or "layers" not in config:
            raise ValueError(f"A Sequential model configuration must be a dictionary "
                             f"containing the 'name' and 'layers' keys. Received: "
                             f"config={str(config)[:200]}")
        if not isinstance(config["layers"], list):
            raise invalid("config['layers']", "a list of layer dicts", config["layers"],
                          ArgumentTypeError)
        layers = [deserialize_layer(entry, custom_objects) for entry in config["layers"]]
        model = cls(name=config.get("name"))
        for layer in layers:
            model.add(layer)
        shape = config.get("build_input_shape")
        if shape and not model.built and model._layers:
            model.build(shape)
        return model

    def to_json(self, **kwargs) -> str:
        """The config as Keras 3 writes it (``model_from_json`` reads it back; so does
        ``keras.models.model_from_json``). kwargs go to json.dumps."""
        from minicnn.serialization import to_json

        return to_json(self, **kwargs)

    # --- saving (the file format is documented in minicnn/saving.py) --------------------------
    def save(self, path) -> None:
        """Write architecture, weights, compile and optimizer state to one .npz file."""
        with self._lock:
            saving.save_model(self, path)

    def save_weights(self, path) -> None:
        """Write only the weights to an .npz file (read back with load_weights)."""
        with self._lock:
            saving.save_weights(self, path)

    def load_weights(self, path) -> None:
        """Set the weights from save_weights()/save() output; all checked before any is set."""
        with self._lock:
            saving.load_weights(self, path)


def load_model(path, custom_objects=None) -> Sequential:
    """Rebuild a model written by save(): architecture, weights, compile and optimizer state.

    Args:
        path: the .npz file.
        custom_objects: optional {class name: Layer subclass} for layers outside minicnn.layers.

    Returns: the model, compiled if it was compiled when saved; fit() continues exactly where
    the saved model stopped. The global random generator is not touched. A missing, damaged,
    hostile or inconsistent file raises FileNotFoundError or ValueError naming it (see
    minicnn.saving and minicnn.untrusted).
    """
    saved = saving.read_model(path, custom_objects)
    try:
        model = Sequential(saved.layers, name=saved.name)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: cannot rebuild the model: {e}") from e
    model.build(saved.input_shape)
    if saved.optimizer is not None:
        model.compile(optimizer=saved.optimizer, loss=saved.loss, metrics=saved.metrics)
    return model


def _check_targets_array(y, arg) -> np.ndarray:
    """y as a real array in its own dtype (class indices stay integers), finite."""
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as e:
        raise invalid(arg, "an array of numbers", y, ArgumentTypeError) from e
    if y.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"Invalid dtype for argument {arg}. Expected a real numeric "
                                f"array. Received: {arg}.dtype={y.dtype}")
    if not _all_finite(y):
        bad = int(y.size - np.count_nonzero(np.isfinite(y)))
        raise ValueError(f"Argument {arg} contains {bad} NaN or inf value(s).")
    return y


def _check_callbacks(callbacks) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise invalid("callbacks", "a list of Callback instances", callbacks, ArgumentTypeError)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise invalid("callbacks", "a list of Callback instances", callbacks,
                          ArgumentTypeError)
    return list(callbacks)
