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

The math runs on x seen as a matrix (M, C) (one row per pixel of every image, one column per
channel): kernels/naive.py has it in NumPy (batchnorm_forward_train, _infer, _backward), the
lesson and what the 'naive' and 'numpy' backends run; kernels/numba_batchnorm.py is its
compiled twin, which the 'numba' backend runs (kernels/dispatch.py).
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels.dispatch import ops
from minicnn.layers.base import Layer
from minicnn.validation import check_bool, check_float, check_int


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
        k = ops()
        eps = x2.dtype.type(self.epsilon)
        if training:
            out, mean, var = k.batchnorm_forward_train(x2, gamma, beta, self.epsilon)
            # Keras's update, in the weights' dtype: moving * momentum + batch * (1 - momentum)
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.params[key]
                moving[...] = moving * self.momentum + batch * (1.0 - self.momentum)
            inv = 1.0 / np.sqrt(var + eps)  # (C,)
        else:
            mean = self.params["moving_mean"]
            inv = 1.0 / np.sqrt(self.params["moving_variance"] + eps)  # (C,)
            scale = gamma * inv
            out = k.batchnorm_forward_infer(x2, scale, beta - mean * scale)
        self.cache = (x2, mean.copy(), inv, bool(training), x.shape)
        return out.reshape(x.shape)

    def backward(self, dout):
        """dout (N, ..., C) -> dx (N, ..., C), or None when needs_input_grad is off."""
        x2, mean, inv, training, shape = self.cache
        C = shape[-1]
        dout2 = np.ascontiguousarray(dout, dtype=x2.dtype).reshape(-1, C)
        gamma, _ = self._gamma_beta(C, x2.dtype)
        dx, dgamma, dbeta = ops().batchnorm_backward(dout2, x2, gamma, mean, inv, training)
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
