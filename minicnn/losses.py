"""Crossentropy losses, as Keras computes them (on TensorFlow by default; on JAX and PyTorch
with ``clip_probabilities=True``).

Keras's three spellings, all here:

    categorical_crossentropy(y_true, y_pred, from_logits=False)   # one value per sample (N,)
    CategoricalCrossentropy(from_logits=False, reduction="sum_over_batch_size")(y_true, y_pred,
                            sample_weight=None)                   # reduced: a scalar
    model.compile(loss="categorical_crossentropy")                # or the function or object

The training loss is the batch mean ('sum_over_batch_size'). Two paths, chosen by the model:

* fused: the output layer is softmax, so the loss is computed from its logits z and the gradient
  is dL/dz = (softmax(z) - y) / N. This is what Keras on TensorFlow does (the softmax output
  carries its logits to ``softmax_cross_entropy_with_logits``): no clipping. A loss with
  ``from_logits=True`` on a linear output takes the same path.
* on probabilities: p is renormalised, clipped to [eps, 1 - eps] (eps = backend.epsilon(),
  1e-7), and L = -1/N sum y log p, with the clip's gradient zero outside that range (as
  tf.clip_by_value).

The functional forms compute on NumPy arrays the values Keras's compute on its tensors;
``y_pred`` given as probabilities always takes the clipped path there (a bare array carries no
logits), as in Keras.
  Keras on JAX and PyTorch always take this path, softmax output or not
  (keras/src/backend/{jax,torch}/nn.py, categorical_crossentropy); so does minicnn with
  ``CategoricalCrossentropy(clip_probabilities=True)``. The two agree to rounding until a
  probability saturates past 1 - 1e-7 (a confident sample then has loss 1.2e-7 and gradient 0
  instead of ~0 and ~p - 1), and differ outright on a sigmoid output, whose logits TensorFlow
  also hands to *softmax* crossentropy.
"""

from __future__ import annotations

import warnings

import numpy as np

from minicnn import backend
from minicnn.validation import ArgumentTypeError, check_bool, check_float, invalid, is_int

EPSILON = 1e-7  # keras.config.epsilon(): the default of backend.epsilon()
REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


def log_softmax(z):
    """log softmax over the last axis, stable for any z.  z (N, K) -> (N, K)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check_axis(axis):
    if isinstance(axis, bool) or not is_int(axis):
        # Keras's message for a bool; minicnn's check also covers other non-ints
        raise ArgumentTypeError(f"`axis` must be of type `int`. Received: axis={axis!r} of "
                                f"type {type(axis)}")
    return int(axis)


def _as_pred(y_pred):
    y_pred = np.asarray(y_pred)
    if y_pred.dtype.kind not in "biuf":
        raise invalid("y_pred", "a real array", y_pred, ArgumentTypeError)
    return y_pred if y_pred.dtype.kind == "f" else y_pred.astype(backend.floatx())


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample crossentropy, as keras.losses.categorical_crossentropy.

    Shapes: y_true, y_pred (N, K) (or (..., K) along ``axis``) -> (N,).

    l_n = -sum_k y[n,k] log p[n,k], p = softmax(z) for logits, else y_pred / sum(y_pred)
    clipped to [eps, 1 - eps]; with label smoothing s, y <- y (1 - s) + s / K.
    """
    axis = _check_axis(axis)
    from_logits = check_bool(from_logits, "from_logits")
    label_smoothing = check_float(label_smoothing, "label_smoothing", low=0, high=1)
    y_pred = _as_pred(y_pred)
    y_true = np.asarray(y_true).astype(y_pred.dtype)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={y_true.shape}, "
                         f"output.shape={y_pred.shape}")
    if y_pred.shape[axis] == 1:
        warnings.warn(f"In loss categorical_crossentropy, expected y_pred.shape to be "
                      f"(batch_size, num_classes) with num_classes > 1. Received: "
                      f"y_pred.shape={y_pred.shape}. Consider using 'binary_crossentropy' if "
                      f"you only have 2 classes.", SyntaxWarning, stacklevel=2)
    if label_smoothing:
        k = y_pred.dtype.type(y_true.shape[axis])
        y_true = y_true * (1 - y_pred.dtype.type(label_smoothing)) + \
            y_pred.dtype.type(label_smoothing) / k
    if from_logits:
        z = np.moveaxis(y_pred, axis, -1)
        logp = np.moveaxis(log_softmax(z), -1, axis)
    else:
        eps = y_pred.dtype.type(backend.epsilon())
        p = y_pred / y_pred.sum(axis=axis, keepdims=True)
        logp = np.log(np.clip(p, eps, 1 - eps))
    return -(y_true * logp).sum(axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    """Per-sample crossentropy for integer labels, as keras.losses.
    sparse_categorical_crossentropy.  Shapes: y_true (N,) or (N, 1), y_pred (N, K) -> (N,)."""
    if ignore_class is not None:
        raise invalid("ignore_class", "None (not implemented in minicnn)", ignore_class)
    axis = _check_axis(axis)
    y_pred = _as_pred(y_pred)
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[axis] == 1:
        labels = np.squeeze(labels, axis=axis)
    k = y_pred.shape[axis]
    labels = _SPARSE.check_targets(labels.reshape(-1), k).reshape(labels.shape)
    one_hot = np.moveaxis(np.eye(k, dtype=y_pred.dtype)[labels], -1, axis)
    return categorical_crossentropy(one_hot, y_pred, from_logits=from_logits, axis=axis)


class Loss:
    """Keras's loss base: ``loss(y_true, y_pred, sample_weight=None)`` -> reduced value.

    Args:
        reduction: 'sum_over_batch_size' (= 'mean': sum / number of values), 'sum',
            'mean_with_sample_weight' (sum / sum of the weights), 'none' or None (per sample).
        name: the loss's name.
        dtype: None (backend.floatx()), 'float32' or 'float64': the dtype it computes in.
    """

    name = "loss"

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if not (reduction is None or isinstance(reduction, str)) or reduction not in REDUCTIONS:
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                             f"{set(REDUCTIONS)}. Received: reduction={reduction!r}")
        if name is not None and not isinstance(name, str):
            raise invalid("name", "a string or None", name, ArgumentTypeError)
        if dtype is not None:
            try:
                dtype = np.dtype(dtype).name
            except TypeError:
                raise invalid("dtype", "None, 'float32' or 'float64'", dtype,
                              ArgumentTypeError) from None
            if dtype not in ("float32", "float64"):
                raise invalid("dtype", "None, 'float32' or 'float64'", dtype)
        self.name = name or type(self).name
        self.reduction = reduction
        self.dtype = dtype

    def call(self, y_true, y_pred):
        """The per-sample values."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        dtype = self.dtype or backend.floatx()
        values = np.asarray(self.call(y_true, np.asarray(y_pred, dtype=dtype)), dtype=dtype)
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=dtype)
            if w.ndim == values.ndim + 1 and w.shape[-1] == 1:
                w = w[..., 0]
            values = values * w
        if self.reduction in (None, "none") or values.ndim == 0 or values.shape == (0,):
            return values
        total = values.sum(dtype=dtype)
        if self.reduction == "sum":
            return total
        if self.reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = np.asarray(sample_weight, dtype=dtype).sum()
        else:
            divisor = dtype_type(dtype)(values.size)
        return total / divisor if divisor else dtype_type(dtype)(0)  # Keras's divide_no_nan

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def dtype_type(dtype):
    return np.dtype(dtype).type


class CategoricalCrossentropy(Loss):
    """-1/N sum_n sum_k y[n,k] log p[n,k] for one-hot (or soft) targets y (N, K).

    Args (Keras's): from_logits (y_pred are logits z), label_smoothing (in [0, 1]), axis (the
    class axis; the model trains with -1), reduction, name, dtype.
        clip_probabilities (minicnn's, keyword only): False (default) computes what Keras on
            TensorFlow computes: from a softmax (or sigmoid) output's logits, unclipped. True
            computes what Keras on JAX and PyTorch compute: always from the probabilities,
            clipped to [eps, 1 - eps] (reference/tolerances.py, BACKEND_DIFFERENCES).
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None,
                 *, clip_probabilities=False):
        self.clip_probabilities = check_bool(clip_probabilities, "clip_probabilities")
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_float(label_smoothing, "label_smoothing", low=0, high=1)
        self.axis = _check_axis(axis)
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                        label_smoothing=self.label_smoothing, axis=self.axis)

    def get_config(self):
        config = {**super().get_config(), "from_logits": self.from_logits,
                  "label_smoothing": self.label_smoothing, "axis": self.axis}
        if self.clip_probabilities:  # minicnn's own key, only when it is set
            config["clip_probabilities"] = True
        return config

    # --- the model's training path (fit, evaluate, train_on_batch) ---------------------------

    def check_targets(self, y, n_classes: int):
        """Return y as a float array (N, K); raise if it is not one-hot shaped."""
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != n_classes:
            hint = (" Labels look like class indices: use minicnn.utils.to_categorical(y) or "
                    "loss='sparse_categorical_crossentropy'." if y.ndim == 1 else "")
            raise ValueError(f"{self.name} expects one-hot targets of shape (N, {n_classes}), "
                             f"received shape {y.shape}.{hint}")
        return y

    def one_hot(self, y, dtype, k):
        """Targets as a float (N, K) array (label smoothing applied, if any)."""
        y = y.astype(dtype, copy=False)
        if getattr(self, "label_smoothing", 0.0):
            s = np.dtype(dtype).type(self.label_smoothing)
            y = y * (1 - s) + s / np.dtype(dtype).type(k)
        return y

    def with_logits(self, y, z, sample_weight=None):
        """Fused softmax + crossentropy.  y, z (N, K), sample_weight (N,) or None
        -> (loss, dL/dz (N, K)).

        With weights w the loss is sum_n w_n l_n / N (Keras's sum_over_batch_size: divided by
        the number of samples, not by the sum of the weights), and dL/dz_n = w_n (p_n - y_n) / N.
        """
        y = self.one_hot(y, z.dtype, z.shape[-1])
        logp = log_softmax(z)
        n = z.shape[0]
        if sample_weight is None:
            loss = -(y * logp).sum() / n
            dz = (np.exp(logp) - y) / np.asarray(n, dtype=z.dtype)
            return float(loss), dz
        w = np.asarray(sample_weight, dtype=z.dtype).reshape(n, 1)
        loss = -((y * logp).sum(axis=-1) * w[:, 0]).sum() / n
        dz = (np.exp(logp) - y) * (w / np.asarray(n, dtype=z.dtype))
        return float(loss), dz

    def with_probabilities(self, y, p, sample_weight=None):
        """Keras's clipped path.  y, p (N, K), sample_weight (N,) or None
        -> (loss, dL/dp (N, K))."""
        y = self.one_hot(y, p.dtype, p.shape[-1])
        s = p.sum(axis=-1, keepdims=True)
        pn = p / s
        eps = backend.epsilon()
        pc = np.clip(pn, eps, 1 - eps)
        n = p.shape[0]
        if sample_weight is not None:
            y = y * np.asarray(sample_weight, dtype=p.dtype).reshape(n, 1)  # w_n l_n, linear in y
        loss = -(y * np.log(pc)).sum() / n
        g = -y / pc / n * ((pn >= eps) & (pn <= 1 - eps))             # clip passes inside only
        dp = (g - (g * pn).sum(axis=-1, keepdims=True)) / s           # through p / sum(p)
        return float(loss), dp.astype(p.dtype, copy=False)



class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """The same loss with integer class targets y (N,) or (N, 1).

    Args (Keras's): from_logits, ignore_class (None only), axis, reduction, name, dtype.
    """

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy",
                 dtype=None, *, clip_probabilities=False):
        if ignore_class is not None:
            raise invalid("ignore_class", "None (not implemented in minicnn)", ignore_class)
        super().__init__(from_logits=from_logits, axis=axis, reduction=reduction, name=name,
                         dtype=dtype, clip_probabilities=clip_probabilities)
        self.ignore_class = None

    def call(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                               axis=self.axis)

    def get_config(self):
        # Keras's keys for this class: no label_smoothing, and no axis (it is not saved)
        config = super().get_config()
        del config["label_smoothing"], config["axis"]
        return {**config, "ignore_class": None}

    def check_targets(self, y, n_classes: int):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{self.name} expects integer class targets of shape (N,), "
                             f"received shape {y.shape}. For one-hot targets use "
                             f"loss='categorical_crossentropy'.")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError(f"{self.name} expects integer class labels, received "
                                 f"non-integer values of dtype {y.dtype}.")
            y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{self.name}: labels must lie in [0, {n_classes}), received "
                             f"values from {y.min()} to {y.max()}.")
        return y

    def one_hot(self, y, dtype, k):
        y = np.asarray(y).reshape(-1)
        out = np.zeros((y.shape[0], k), dtype=dtype)
        out[np.arange(y.shape[0]), y] = 1
        return out


_SPARSE = SparseCategoricalCrossentropy()  # its check_targets serves the functional form

_BY_NAME = {"categorical_crossentropy": CategoricalCrossentropy,
            "CategoricalCrossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy}
_BY_FUNCTION = {categorical_crossentropy: CategoricalCrossentropy,
                sparse_categorical_crossentropy: SparseCategoricalCrossentropy}


def get(identifier):
    """A loss object for compile: a Keras name, a functional form (Keras wraps it with the
    default reduction, as here), a class, an instance, or a serialize() dict.

    The model trains with the crossentropies only, on the class axis -1, reduced by the batch
    mean (Keras's default); other settings are refused by name here, before compile changes
    anything.
    """
    if isinstance(identifier, CategoricalCrossentropy):
        loss = identifier
    elif isinstance(identifier, type) and issubclass(identifier, CategoricalCrossentropy):
        loss = identifier()
    elif isinstance(identifier, str) and identifier in _BY_NAME:
        loss = _BY_NAME[identifier]()
    elif callable(identifier) and _lookup(_BY_FUNCTION, identifier) is not None:
        loss = _BY_FUNCTION[identifier]()
    elif isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        loss = _BY_NAME[identifier["class_name"]].from_config(dict(identifier.get("config")
                                                                   or {}))
    else:
        raise ValueError(f"Invalid value for argument loss. Expected one of "
                         f"{sorted(n for n in _BY_NAME if n.islower())}, their functions or "
                         f"classes (minicnn trains with crossentropy). Received: "
                         f"loss={identifier!r}")
    if loss.reduction not in ("sum_over_batch_size", "mean"):
        raise invalid("reduction", "'sum_over_batch_size' for training (the batch mean, "
                      "Keras's default)", loss.reduction)
    if loss.axis != -1:
        raise invalid("axis", "-1 for training (the class axis is the last)", loss.axis)
    return loss


def _lookup(table, key):
    """table[key], or None for a key that is not there or cannot be hashed."""
    try:
        return table.get(key)
    except TypeError:
        return None


def serialize(loss) -> dict:
    return {"module": "keras.losses", "class_name": type(loss).__name__,
            "config": loss.get_config(), "registered_name": None}
