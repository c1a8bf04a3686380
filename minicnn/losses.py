"""Crossentropy losses, as Keras computes them (on TensorFlow by default; on JAX and PyTorch
with ``clip_probabilities=True``).

Keras's loss is the batch mean ('sum_over_batch_size'). Two paths, chosen by the model:

* fused: the output layer is softmax, so the loss is computed from its logits z and the gradient
  is dL/dz = (softmax(z) - y) / N. This is what Keras on TensorFlow does (the softmax output
  carries its logits to ``softmax_cross_entropy_with_logits``): no clipping.
* on probabilities: p is renormalised, clipped to [1e-7, 1 - 1e-7], and
  L = -1/N sum y log p, with the clip's gradient zero outside that range (as tf.clip_by_value).
  Keras on JAX and PyTorch always take this path, softmax output or not
  (keras/src/backend/{jax,torch}/nn.py, categorical_crossentropy); so does minicnn with
  ``CategoricalCrossentropy(clip_probabilities=True)``. The two agree to rounding until a
  probability saturates past 1 - 1e-7 (a confident sample then has loss 1.2e-7 and gradient 0
  instead of ~0 and ~p - 1), and differ outright on a sigmoid output, whose logits TensorFlow
  also hands to *softmax* crossentropy.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # keras.config.epsilon()


def log_softmax(z):
    """log softmax over the last axis, stable for any z.  z (N, K) -> (N, K)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class CategoricalCrossentropy:
    """-1/N sum_n sum_k y[n,k] log p[n,k] for one-hot (or soft) targets y (N, K).

    Args:
        clip_probabilities: False (default) computes what Keras on TensorFlow computes: from a
            softmax (or sigmoid) output's logits, unclipped. True computes what Keras on JAX
            and PyTorch compute: always from the probabilities, clipped to [1e-7, 1 - 1e-7].
    """

    name = "categorical_crossentropy"

    def __init__(self, clip_probabilities: bool = False):
        if not isinstance(clip_probabilities, bool):
            raise ValueError(f"Invalid value for argument clip_probabilities. Expected True or "
                             f"False. Received: clip_probabilities={clip_probabilities!r}")
        self.clip_probabilities = clip_probabilities

    def get_config(self) -> dict:
        return {"clip_probabilities": self.clip_probabilities}

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
        """Targets as a float (N, K) array."""
        return y.astype(dtype, copy=False)

    def from_logits(self, y, z, sample_weight=None):
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

    def from_probabilities(self, y, p, sample_weight=None):
        """Keras's clipped path.  y, p (N, K), sample_weight (N,) or None
        -> (loss, dL/dp (N, K))."""
        y = self.one_hot(y, p.dtype, p.shape[-1])
        s = p.sum(axis=-1, keepdims=True)
        pn = p / s
        pc = np.clip(pn, EPSILON, 1 - EPSILON)
        n = p.shape[0]
        if sample_weight is not None:
            y = y * np.asarray(sample_weight, dtype=p.dtype).reshape(n, 1)  # w_n l_n, linear in y
        loss = -(y * np.log(pc)).sum() / n
        g = -y / pc / n * ((pn >= EPSILON) & (pn <= 1 - EPSILON))     # clip passes inside only
        dp = (g - (g * pn).sum(axis=-1, keepdims=True)) / s           # through p / sum(p)
        return float(loss), dp.astype(p.dtype, copy=False)

    def __call__(self, y_true, y_pred):
        """The loss value on probabilities, as keras.losses.categorical_crossentropy + mean."""
        y_pred = np.asarray(y_pred)
        return self.from_probabilities(self.check_targets(y_true, y_pred.shape[-1]), y_pred)[0]


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """The same loss with integer class targets y (N,) or (N, 1)."""

    name = "sparse_categorical_crossentropy"

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


_BY_NAME = {"categorical_crossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}

categorical_crossentropy = CategoricalCrossentropy()
sparse_categorical_crossentropy = SparseCategoricalCrossentropy()


def get(identifier):
    """A loss object from its Keras name, class or instance."""
    if isinstance(identifier, CategoricalCrossentropy):
        return type(identifier)(**identifier.get_config())
    if isinstance(identifier, type) and issubclass(identifier, CategoricalCrossentropy):
        return identifier()
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(f"Invalid value for argument loss. Expected one of {sorted(_BY_NAME)}. "
                     f"Received: loss={identifier!r}")
