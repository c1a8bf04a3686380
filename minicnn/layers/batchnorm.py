"""BatchNormalization: normalise each channel over the batch, then scale and shift it.

In training each channel c is standardised with the batch's own mean and (biased) variance,
over (N, H, W) for NHWC inputs and over N for (N, C):

    xhat = (x - mean) / sqrt(var + epsilon);   out = gamma * xhat + beta

and the moving statistics inference uses follow the batch ones (Keras's update, the batch
variance as tf.nn.moments computes it, divided by M, not M - 1):

    moving_mean     = moving_mean     * momentum + mean * (1 - momentum)
    moving_variance = moving_variance * momentum + var  * (1 - momentum)

At inference (training=False) the moving statistics stand in for the batch ones, so a sample's
output no longer depends on the rest of its batch.

The functions below are the NumPy lesson, on x seen as a matrix (M, C) (one row per pixel of
every image, one column per channel); kernels/numba_batchnorm.py is their compiled twin, which
the layer calls when the backend in force is 'numba'.
"""

from __future__ import annotations

import numpy as np

from minicnn import config
from minicnn.layers.base import Layer
from minicnn.validation import check_bool, check_float, check_int


# --- the NumPy reference ---------------------------------------------------------------------
def batchnorm_forward_train(x, gamma, beta, eps):
    """Normalise with the batch statistics.

    Shapes: x (M, C), gamma, beta (C,) -> out (M, C), mean (C,), var (C,).
    """
    # statistics summed in float64: M reaches ~10^5 and a float32 running sum loses digits
    mean = x.mean(axis=0, dtype=np.float64)  # (C,)
    var = np.square(x - mean).mean(axis=0)  # (C,) biased, as tf.nn.moments
    xhat = (x - mean) / np.sqrt(var + eps)  # (M, C)
    out = (gamma * xhat + beta).astype(x.dtype)
    return out, mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_forward_infer(x, scale, shift):
    """out = x * scale + shift, with scale = gamma / sqrt(var + eps), shift = beta - mean * scale.

    Shapes: x (M, C), scale, shift (C,) -> out (M, C).
    """
    return x * scale + shift


def batchnorm_backward(dout, x, gamma, mean, inv, training):
    """Gradients of batch normalisation, the compact form.

    Shapes: dout, x (M, C); gamma, mean, inv = 1 / sqrt(var + eps) (C,)
            -> dx (M, C), dgamma (C,), dbeta (C,).

    With batch statistics, mean and var depend on every x[:, c], and the chain rule through
    them collapses to
        dx = gamma * inv / M * (M * dout - sum_m dout - xhat * sum_m(dout * xhat));
    with fixed (moving) statistics dx = gamma * inv * dout.
    """
    M = x.shape[0]
    xhat = (x - mean) * inv  # (M, C)
    dbeta = dout.sum(axis=0, dtype=np.float64)  # (C,)
    dgamma = (dout * xhat).sum(axis=0, dtype=np.float64)  # (C,)
    if training:
        dx = (gamma * inv / M) * (M * dout - dbeta - xhat * dgamma)
    else:
        dx = dout * (gamma * inv)
    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def _numba_kernels():
    """kernels/numba_batchnorm when the backend in force is 'numba', else None."""
    if config.get_backend() != "numba":
        return None
    from minicnn.kernels import numba_available

    if not numba_available():
        return None
    from minicnn.kernels import numba_batchnorm

    return numba_batchnorm


# --- the layer -------------------------------------------------------------------------------
class BatchNormalization(Layer):
    """Batch normalisation of the last (channels) axis, with Keras's arguments and weights.

    Args:
        axis: the axis normalised; minicnn supports the last one only (-1, Keras's default).
        momentum: weight of the old moving statistics in each update, in [0, 1].
        epsilon: added to the variance before the square root (> 0).
        center: learn an offset beta (else beta = 0).
        scale: learn a scale gamma (else gamma = 1).
        Keras's other arguments (initializers, regularizers, constraints, synchronized,
        renorm) are accepted at their defaults only.

    Shapes:
        x (N, ..., C) -> out (same); gamma, beta, moving_mean, moving_variance (C,).
        Weights in Keras's get_weights() order [gamma, beta, moving_mean, moving_variance];
        the moving statistics are non-trainable (the optimizer never sees them).

    out = gamma * (x - mean) / sqrt(var + epsilon) + beta, with the batch's statistics in
    training and the moving ones at inference.
    """

    keras_only = ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                  "moving_variance_initializer", "beta_regularizer", "gamma_regularizer",
                  "beta_constraint", "gamma_constraint", "synchronized", "renorm",
                  "renorm_clipping", "renorm_momentum")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 **kwargs):
        axis = check_int(axis, "axis")
        momentum = check_float(momentum, "momentum", low=0, high=1)
        epsilon = check_float(epsilon, "epsilon", low=0, low_open=True)
        center, scale = check_bool(center, "center"), check_bool(scale, "scale")
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = axis, momentum, epsilon
        self.center, self.scale = center, scale
        self.needs_input_grad = True  # the model turns this off for its first layer

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1  # Keras counts the batch axis in `axis`
        if not -rank <= self.axis < rank or self.axis % rank != rank - 1:
            raise ValueError(
                f"Layer {self.name!r}: minicnn's BatchNormalization normalises the "
                f"last (channels) axis only: axis=-1 or {rank - 1} for inputs of "
                f"shape {(None, *input_shape)}. Received: axis={self.axis}"
            )
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        C = input_shape[-1]
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else [])
        return {k: (C,) for k in [*names, "moving_mean", "moving_variance"]}

    @property
    def gamma(self):
        """gamma (C,) as a Variable; None with scale=False."""
        return self._variable("gamma")

    @property
    def beta(self):
        """beta (C,) as a Variable; None with center=False."""
        return self._variable("beta")

    @property
    def moving_mean(self):
        return self._variable("moving_mean")

    @property
    def moving_variance(self):
        return self._variable("moving_variance")

    def build(self, input_shape):
        C = input_shape[-1]
        if self.scale:
            self.params["gamma"] = np.ones(C, self.dtype)
        if self.center:
            self.params["beta"] = np.zeros(C, self.dtype)
        self.params["moving_mean"] = np.zeros(C, self.dtype)
        self.params["moving_variance"] = np.ones(C, self.dtype)
        self.non_trainable = {"moving_mean", "moving_variance"}
        self.zero_grads()

    def _gamma_beta(self, C, dtype):
        gamma = self.params["gamma"] if self.scale else np.ones(C, dtype)
        beta = self.params["beta"] if self.center else np.zeros(C, dtype)
        return gamma, beta

    def forward(self, x, training=False):
        """x (N, ..., C) -> out (N, ..., C); in training, also updates the moving statistics."""
        C = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, C)  # (M, C)
        gamma, beta = self._gamma_beta(C, x2.dtype)
        nb = _numba_kernels()
        eps = x2.dtype.type(self.epsilon)
        if training:
            train = nb.forward_train if nb else batchnorm_forward_train
            out, mean, var = train(x2, gamma, beta, self.epsilon)
            # Keras's update, in the weights' dtype: moving * momentum + batch * (1 - momentum)
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.params[key]
                moving[...] = moving * self.momentum + batch * (1.0 - self.momentum)
            inv = 1.0 / np.sqrt(var + eps)  # (C,)
        else:
            mean = self.params["moving_mean"]
            inv = 1.0 / np.sqrt(self.params["moving_variance"] + eps)  # (C,)
            scale = gamma * inv
            infer = nb.forward_infer if nb else batchnorm_forward_infer
            out = infer(x2, scale, beta - mean * scale)
        self.cache = (x2, mean.copy(), inv, bool(training), x.shape)
        return out.reshape(x.shape)

    def backward(self, dout):
        """dout (N, ..., C) -> dx (N, ..., C), or None when needs_input_grad is off."""
        x2, mean, inv, training, shape = self.cache
        C = shape[-1]
        dout2 = np.ascontiguousarray(dout, dtype=x2.dtype).reshape(-1, C)
        gamma, _ = self._gamma_beta(C, x2.dtype)
        nb = _numba_kernels()
        grad = nb.backward if nb else batchnorm_backward
        dx, dgamma, dbeta = grad(dout2, x2, gamma, mean, inv, training)
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx.reshape(shape) if self.needs_input_grad else None

    def get_config(self):
        return {
            "name": self.name,
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }
