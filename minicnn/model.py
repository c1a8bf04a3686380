"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

One training step, the whole of backprop in four lines (see ``_train_step``):

    out = forward(x, training=True)          # each unit caches what its backward needs
    loss, dout = loss_and_gradient(y, out)   # fused softmax + crossentropy: (p - y) / N
    backward(dout)                           # each layer fills layer.grads
    optimizer.apply(params, grads)           # in place
"""

from __future__ import annotations

import functools
import sys
import time

import numpy as np

from minicnn import config, fusion, losses, optimizers
from minicnn.callbacks import CallbackList, History
from minicnn.layers.base import Layer, unique_name
from minicnn.progbar import Progbar
from minicnn.random import draw_seed
from minicnn.summary import summary_lines


def _check_x(x, name="x"):
    """A finite, real-valued array (checked before any work, so nothing is half-done)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"Invalid dtype for argument {name}. Expected a real numeric array. "
                        f"Received: {name}.dtype={x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"Argument {name} contains {bad} NaN or inf value(s).")
    return x


def _in_compute_scope(method):
    """Run method inside the backend's compute scope (fusion.compute_scope)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with fusion.compute_scope(config.get_backend()):
            return method(self, *args, **kwargs)

    return wrapper


class Sequential:
    """A linear stack of layers, as keras.Sequential.

    Args:
        layers: list of Layer instances (the first may carry input_shape=).
        name: model name ('sequential', 'sequential_1', ... by default).
    """

    def __init__(self, layers=None, name=None):
        self.name = name or unique_name("sequential")
        self._layers: list[Layer] = []
        self.loss = None
        self.optimizer = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.history = None
        self.input_shape: tuple[int, ...] | None = None
        self._units_cache: tuple[str, list] | None = None
        for layer in layers or []:
            self.add(layer)

    # --- building ----------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Only minicnn Layer instances can be added to a Sequential model. "
                            f"Received: {layer!r}")
        self._layers.append(layer)
        self._units_cache = None
        if len(self._layers) == 1 and layer.input_shape is not None:
            self.build(layer.input_shape)
        elif self.input_shape is not None:
            # build the new layer at once, as Keras does, so summary() works before fit
            self.build(self.input_shape)

    @property
    def built(self) -> bool:
        return self.input_shape is not None and all(layer.built for layer in self._layers)

    def build(self, input_shape) -> None:
        """Create every layer's weights for per-sample input_shape, e.g. (28, 28, 1)."""
        if not self._layers:
            raise ValueError("Cannot build an empty Sequential model: add layers first.")
        shape = tuple(int(d) for d in input_shape)
        self.input_shape = shape
        for layer in self._layers:
            layer.build_for(shape)
            shape = layer.compute_output_shape(shape)
        self._set_input_grad_flags()

    def _set_input_grad_flags(self):
        # The first layer's input is data: computing its gradient would be wasted work.
        for i, layer in enumerate(self._layers):
            if hasattr(layer, "needs_input_grad"):
                layer.needs_input_grad = i > 0

    def output_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer."""
        if self.input_shape is None:
            raise ValueError("The model is not built yet: call build(input_shape), fit or "
                             "predict first, or give the first layer input_shape=.")
        shapes, shape = [], self.input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
            shapes.append(tuple(shape))
        return shapes

    def _ensure_built(self, x):
        if not self.built:
            self.build(x.shape[1:])
        elif tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"Input 0 of model {self.name!r} is incompatible: expected shape "
                             f"{(None, *self.input_shape)}, received {tuple(x.shape)}.")

    # --- compile -----------------------------------------------------------------------------
    def compile(self, loss="categorical_crossentropy", optimizer="adam", metrics=None):
        """Choose the loss, the optimizer and the metrics ('accuracy' is the one supported)."""
        self.loss = losses.get(loss)
        self.optimizer = optimizers.get(optimizer)
        metrics = list(metrics or [])
        for m in metrics:
            if m not in ("accuracy", "acc"):
                raise ValueError(f"Unsupported metric {m!r}: minicnn computes 'accuracy'.")
        self.metrics = ["accuracy"] if metrics else []

    def _require_compiled(self, what):
        if self.loss is None or self.optimizer is None:
            raise ValueError(f"You must call `compile()` before using the model for {what}.")

    # --- forward and backward ----------------------------------------------------------------
    def _units(self):
        backend = config.get_backend()
        if self._units_cache is None or self._units_cache[0] != backend:
            self._units_cache = (backend, fusion.plan(self._layers, backend))
        return self._units_cache[1]

    def forward(self, x, training=False):
        """Run x (N, *input_shape) through every layer; returns the last layer's output."""
        for unit in self._units():
            x = unit.forward(x, training=training)
        return x

    def _fused_loss(self) -> bool:
        """True when the last layer is softmax and the loss a crossentropy: use its logits.

        Keras on TensorFlow also attaches logits to a *sigmoid* output, and its crossentropy
        then applies softmax crossentropy to them (backend/tensorflow/nn.py, _get_logits):
        matched here on purpose, checked by the parity suite's 'sigmoid output' case.
        """
        last = self._layers[-1]
        if getattr(self.loss, "clip_probabilities", False):  # Keras on JAX / PyTorch: no logits
            return False
        return (getattr(getattr(last, "activation", None), "name", None) in ("softmax", "sigmoid")
                and hasattr(last, "preactivation"))

    def loss_and_gradient(self, y, out):
        """(loss, gradient to feed backward) for targets y and the model's output."""
        last = self._layers[-1]
        if self._fused_loss():
            return self.loss.from_logits(y, last.preactivation)
        return self.loss.from_probabilities(y, out)

    def backward(self, dout):
        """Backprop dout from the loss through every unit, filling each layer's grads."""
        units = self._units()
        if self._fused_loss():  # dout is already dL/dlogits: skip the softmax Jacobian
            dout = self._layers[-1].backward_linear(dout)
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

    def _train_step(self, x, y):
        out = self.forward(x, training=True)
        loss, dout = self.loss_and_gradient(y, out)
        self.backward(dout)
        loss += self.regularization_loss()
        self.optimizer.apply(*self.trainable_params())
        return loss, out

    def _test_step(self, x, y):
        out = self.forward(x, training=False)
        loss, _ = self.loss_and_gradient(y, out)
        return loss + self.regularization_loss(), out

    @staticmethod
    def _accuracy_count(y, out) -> int:
        pred = out.argmax(axis=-1)
        true = y.argmax(axis=-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
        return int(np.count_nonzero(pred == true))

    # --- checks ------------------------------------------------------------------------------
    def _prepare(self, x, y=None):
        x = _check_x(x)
        if x.ndim < 2:
            raise ValueError(f"Argument x must be a batch of samples (ndim >= 2), received "
                             f"shape {x.shape}.")
        self._ensure_built(x)
        x = x.astype(self._layers[0].dtype, copy=False)
        if y is None:
            return x, None
        y = _check_x(y, "y")
        if len(y) != len(x):
            raise ValueError(f"x and y must have the same number of samples, received "
                             f"{len(x)} and {len(y)}.")
        n_out = self.output_shapes()[-1][-1]
        return x, self.loss.check_targets(y, n_out)

    # --- the Keras API -----------------------------------------------------------------------
    @_in_compute_scope
    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, validation_data=None,
            validation_split=0.0, shuffle=True, callbacks=None, seed=None, initial_epoch=0):
        """Train for `epochs` passes over (x, y) in mini-batches; returns a History.

        Shapes: x (N, *input_shape); y (N, K) one-hot, or (N,) for the sparse loss.
        As in Keras, training runs epochs initial_epoch .. epochs - 1. Epoch e is shuffled by
        a generator seeded with (seed, e), so a run resumed with the same seed and
        initial_epoch=e sees exactly the batches the uninterrupted run would have.
        The epoch's loss and accuracy are running means over its batches, each weighted by its
        size and taken before that batch's update (what Keras logs). Validation runs at the end
        of each epoch with dropout off.
        """
        self._require_compiled("fit")
        for arg, value in (("batch_size", batch_size), ("epochs", epochs)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Invalid value for argument {arg}. Expected a positive int. "
                                 f"Received: {arg}={value!r}")
        if not isinstance(initial_epoch, (int, np.integer)) or not 0 <= initial_epoch < epochs:
            raise ValueError(f"Invalid value for argument initial_epoch. Expected an int in "
                             f"[0, epochs). Received: initial_epoch={initial_epoch!r}")
        if not 0 <= validation_split < 1:
            raise ValueError(f"Invalid value for argument validation_split. Expected a float "
                             f"in [0, 1). Received: validation_split={validation_split!r}")
        x, y = self._prepare(x, y)
        if validation_split and validation_data is None:
            # Keras holds out the *last* fraction of the samples, before any shuffling
            cut = int(len(x) * (1 - validation_split))
            if cut in (0, len(x)):  # Keras's check (trainers/data_adapters/array_slicing.py)
                raise ValueError(f"Training data contains {len(x)} samples, which is not "
                                 f"sufficient to split it into a validation and training set "
                                 f"as specified by validation_split={validation_split}.")
            x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
        if validation_data is not None:
            vx, vy = self._prepare(*validation_data)
        n = len(x)
        steps = -(-n // batch_size)
        base_seed = draw_seed(seed)
        history = History()
        cbs = CallbackList([history, *(callbacks or [])], self,
                           {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        self.epoch_times: list[float] = []
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
                loss, out = self._train_step(x[idx], y[idx])
                if not np.isfinite(loss):
                    raise FloatingPointError(f"Loss became {loss} at epoch {epoch + 1}, step "
                                             f"{step + 1}: lower the learning rate.")
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
            if validation_data is not None:
                val = self.evaluate(vx, vy, batch_size=batch_size, verbose=0, return_dict=True)
                logs.update({f"val_{k}": v for k, v in val.items()})
            bar.update(steps, logs, finalize=True)
            cbs.on_epoch_end(epoch, dict(sorted(logs.items())))
            if self.stop_training:
                break
        cbs.on_train_end()
        history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        history.model = self
        self.history = history
        return history

    @_in_compute_scope
    def evaluate(self, x, y, batch_size=32, verbose=1, return_dict=False):
        """Loss (and accuracy) on (x, y) with dropout off: [loss, accuracy], or loss alone."""
        self._require_compiled("evaluate")
        x, y = self._prepare(x, y)
        n = len(x)
        steps = -(-n // batch_size)
        bar = Progbar(steps, verbose=verbose)
        loss_sum, correct = 0.0, 0
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            loss, out = self._test_step(x[sl], y[sl])
            loss_sum += loss * len(out)
            correct += self._accuracy_count(y[sl], out)
            logs = {"loss": loss_sum / min((step + 1) * batch_size, n)}
            if self.metrics:
                logs["accuracy"] = correct / min((step + 1) * batch_size, n)
            bar.update(step + 1, logs)
        result = {"loss": loss_sum / n}
        if self.metrics:
            result["accuracy"] = correct / n
        if return_dict:
            return result
        return [result["loss"], result["accuracy"]] if self.metrics else result["loss"]

    @_in_compute_scope
    def predict(self, x, batch_size=32, verbose=0):
        """Output of the last layer (class probabilities for the seed model), dropout off.

        Shapes: x (N, *input_shape) -> (N, *output_shape).
        """
        x, _ = self._prepare(x)
        n = len(x)
        out = np.empty((n, *self.output_shapes()[-1]), dtype=x.dtype)
        steps = -(-n // batch_size)
        bar = Progbar(steps, verbose=verbose)
        for step in range(steps):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            out[sl] = self.forward(x[sl], training=False)
            bar.update(step + 1, {})
        return out

    def __call__(self, x, training=False):
        x, _ = self._prepare(x)
        return self.forward(x, training=training)

    @_in_compute_scope
    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns [loss, accuracy] before the update."""
        self._require_compiled("train_on_batch")
        x, y = self._prepare(x, y)
        loss, out = self._train_step(x, y)
        return [loss, self._accuracy_count(y, out) / len(x)] if self.metrics else loss

    @_in_compute_scope
    def test_on_batch(self, x, y):
        """Loss (and accuracy) of one batch, no update."""
        self._require_compiled("test_on_batch")
        x, y = self._prepare(x, y)
        loss, out = self._test_step(x, y)
        return [loss, self._accuracy_count(y, out) / len(x)] if self.metrics else loss

    # --- weights and summary -----------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Every layer's weights in order, Keras's shapes: [conv kernel, conv bias, ...]."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Load get_weights()-ordered arrays; all shapes are checked before any is written."""
        weights = list(weights)
        expected = sum(len(layer.weight_names) for layer in self._layers)
        if len(weights) != expected:
            raise ValueError(f"Model {self.name!r} expects {expected} weight arrays, received "
                             f"{len(weights)}.")
        i = 0
        staged = []
        for layer in self._layers:
            k = len(layer.weight_names)
            for key, w in zip(layer.weight_names, weights[i : i + k]):
                if np.shape(w) != layer.params[key].shape:
                    raise ValueError(f"Layer {layer.name!r} weight {key!r} has shape "
                                     f"{layer.params[key].shape}, received {np.shape(w)}.")
            staged.append((layer, weights[i : i + k]))
            i += k
        for layer, ws in staged:
            layer.set_weights(ws)

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._layers)

    def optimizer_param_count(self) -> tuple[int, int]:
        """(count, bytes) of the optimizer's variables once built; Keras counts its iteration
        counter and learning rate too."""
        if self.optimizer is None or self.optimizer.iterations == 0:
            return 0, 0
        slots = self.optimizer.variables()
        return (sum(s.size for s in slots) + 2,
                sum(s.nbytes for s in slots) + 8 + 4)  # int64 iterations + float32 lr

    def summary(self, print_fn=None) -> None:
        """Print the Keras 3 summary table: layers, output shapes, parameter counts."""
        print_fn = print_fn or (lambda line: print(line, file=sys.stdout))
        for line in summary_lines(self):
            print_fn(line)

    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": self.input_shape,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self._layers]}

    # --- saving (the file format is documented in minicnn/saving.py) --------------------------
    def save(self, path) -> None:
        """Write architecture, weights, compile and optimizer state to one .npz file."""
        from minicnn import saving

        saving.save_model(self, path)

    def save_weights(self, path) -> None:
        """Write only the weights to an .npz file (read back with load_weights)."""
        from minicnn import saving

        saving.save_weights(self, path)

    def load_weights(self, path) -> None:
        """Set the weights from save_weights()/save() output; all checked before any is set."""
        from minicnn import saving

        saving.load_weights(self, path)
