"""Conv2D: a bank of F learned (KH, KW, C) filters slid over the image (cross-correlation)."""

from __future__ import annotations

from minicnn import activations, initializers, regularizers
from minicnn.kernels.dispatch import ops
from minicnn.kernels.geometry import window_2d
from minicnn.layers.base import Layer
from minicnn.validation import check_bool, check_choice, check_int, check_pair


class Conv2D(Layer):
    """2-D convolution, channels-last, with Keras's arguments and weight layout.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (sh, sw).
        padding: 'valid' (no padding) or 'same' (output ceil(H / s); odd pad bottom/right).
        activation: None, 'relu', 'sigmoid', 'tanh', 'softmax', 'linear'.
        use_bias, kernel_initializer, bias_initializer: as Keras.
        kernel_regularizer, bias_regularizer: None, 'l1', 'l2' or a minicnn.regularizers
            object: its penalty joins the loss (kept in ``layer.regularizers``).

    Shapes:
        x (N, H, W, C) -> out (N, Ho, Wo, F); kernel (KH, KW, C, F); bias (F,).

    z[n,i,j,f] = b[f] + sum_{p,q,c} x[n, i*sh+p, j*sw+q, c] * w[p,q,c,f];  out = activation(z).

    Which code runs: forward and backward call the backend's conv ops (kernels/dispatch.py):
    nested loops ('naive'), im2col + BLAS ('numpy') or Numba kernels ('numba'). But on the
    'numba' backend a Conv2D with relu inside a model (not its last layer) is run by the
    model's fused unit, minicnn.fusion.ConvReluPool, together with the MaxPooling2D and
    Dropout/Flatten layers behind it: then this forward and backward do not run in fit,
    evaluate or predict, and the unit computes the same numbers (tested). `minicnn explain
    --trace` shows which ran.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, name=None, dtype=None, kernel_regularizer=None,
                 bias_regularizer=None):
        # every argument is checked before the layer takes a name or anything else
        filters = check_int(filters, "filters", minimum=1)
        kernel_size = check_pair(kernel_size, "kernel_size")
        strides = check_pair(strides, "strides")
        padding = check_choice(padding, "padding", ("valid", "same"))
        activation = activations.get(activation)
        use_bias = check_bool(use_bias, "use_bias")
        inits = initializers.get(kernel_initializer), initializers.get(bias_initializer)
        regs = regularizers.get(kernel_regularizer), regularizers.get(bias_regularizer)
        super().__init__(name=name, input_shape=input_shape, dtype=dtype)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.padding, self.activation, self.use_bias = padding, activation, use_bias
        self.kernel_initializer, self.bias_initializer = inits
        self._init_names = (kernel_initializer, bias_initializer)
        self.regularizers.update(kernel=regs[0], bias=regs[1])

    def _geometry(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects inputs of shape (N, H, W, C), "
                             f"received (None, {', '.join(map(str, input_shape))}).")
        return window_2d(input_shape[:2], self.kernel_size, self.strides, self.padding)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def build(self, input_shape):
        (_, _), self.pads = self._geometry(input_shape)
        shapes = self.weight_shapes(input_shape)
        rng = self._rng or _default_rng()
        self.params["kernel"] = self.kernel_initializer(shapes["kernel"], rng, self.dtype)
        if self.use_bias:
            self.params["bias"] = self.bias_initializer(shapes["bias"], rng, self.dtype)
        self.zero_grads()

    def compute_output_shape(self, input_shape):
        (ho, wo), _ = self._geometry(input_shape)
        return (ho, wo, self.filters)

    def forward(self, x, training=False):
        z = ops().conv2d_forward(x, self.params["kernel"], self.params.get("bias"),
                                 self.strides, self.pads)               # (N, Ho, Wo, F)
        out = self.activation.forward(z)
        self.cache = (x, z, out)
        return out

    def backward(self, dout):
        """dout (N, Ho, Wo, F) -> dx (N, H, W, C), or None when needs_input_grad is off."""
        x, z, out = self.cache
        return self.backward_linear(self.activation.backward(dout, z, out))

    @property
    def preactivation(self):
        """z of the last forward pass (the logits, when the activation is softmax)."""
        return self.cache[1]

    def backward_linear(self, dz):
        """Backward from the pre-activation gradient dz = dL/dz (N, Ho, Wo, F)."""
        x = self.cache[0]
        k = ops()
        self.grads["kernel"] = k.conv2d_backward_weights(dz, x, self.kernel_size, self.strides,
                                                         self.pads)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=(0, 1, 2))
        if not self.needs_input_grad:
            return None
        return k.conv2d_backward_input(dz, self.params["kernel"], x.shape, self.strides,
                                       self.pads)

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "activation": self.activation.name, "use_bias": self.use_bias,
                "kernel_initializer": _init_name(self._init_names[0]),
                "bias_initializer": _init_name(self._init_names[1]),
                "kernel_regularizer": regularizers.serialize(self.regularizers.get("kernel")),
                "bias_regularizer": regularizers.serialize(self.regularizers.get("bias"))}


def _init_name(init):
    return init if isinstance(init, str) else getattr(init, "__name__", "custom")


def _default_rng():
    from minicnn.random import make_rng

    return make_rng()
