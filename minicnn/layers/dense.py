"""Dense: every input unit connected to every output unit, out = activation(x @ w + b)."""

from __future__ import annotations

from minicnn import activations, initializers, regularizers
from minicnn.kernels.dispatch import ops
from minicnn.layers.base import ActivationAttribute, Layer
from minicnn.layers.conv2d import _default_rng, _init_config
from minicnn.validation import ArgumentTypeError, check_bool, is_int


class Dense(Layer):
    """Fully connected layer, Keras's arguments (in Keras's order) and weight layout.

    Args:
        units: number of outputs K.
        activation, use_bias, kernel_initializer, bias_initializer: as Keras.
        kernel_regularizer, bias_regularizer: None, 'l1', 'l2' or a minicnn.regularizers
            object: its penalty joins the loss (kept in ``layer.regularizers``).
        activity_regularizer, kernel_constraint, bias_constraint: Keras's, accepted at None
            only (not implemented); name, dtype, input_shape, input_dim: as Keras.

    Shapes:
        x (N, D) -> out (N, K); kernel (D, K); bias (K,). Inputs with more axes are treated as
        Keras does: the product acts on the last axis.

    z = x @ w + b;  out = activation(z).
    """

    activation = ActivationAttribute()
    keras_only = ("kernel_constraint", "bias_constraint", "lora_rank", "lora_alpha",
                  "quantization_config")

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 **kwargs):
        # every argument is checked before the layer takes a name or anything else
        if not is_int(units) or int(units) <= 0:
            raise (ValueError if is_int(units) else ArgumentTypeError)(
                f"Received an invalid value for `units`, expected a positive integer. "
                f"Received: units={units!r}")
        activation = activations.get(activation)
        use_bias = check_bool(use_bias, "use_bias")
        inits = initializers.get(kernel_initializer), initializers.get(bias_initializer)
        regs = regularizers.get(kernel_regularizer), regularizers.get(bias_regularizer)
        super().__init__(**kwargs)
        self.units, self.activation, self.use_bias = int(units), activation, use_bias
        self.kernel_initializer, self.bias_initializer = inits
        self._init_names = (kernel_initializer, bias_initializer)
        self.regularizers.update(kernel=regs[0], bias=regs[1])

    @property
    def kernel(self):
        """The (D, K) kernel as a Variable (AttributeError before build, as Keras)."""
        return self._variable("kernel")

    @property
    def bias(self):
        """The (K,) bias as a Variable; None with use_bias=False."""
        return self._variable("bias")

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def build(self, input_shape):
        shapes = self.weight_shapes(input_shape[1:])
        rng = self._rng or _default_rng()
        self.params["kernel"] = initializers.sample(self.kernel_initializer, shapes["kernel"],
                                                    rng, self.dtype)
        if self.use_bias:
            self.params["bias"] = initializers.sample(self.bias_initializer, shapes["bias"],
                                                      rng, self.dtype)
        self.zero_grads()

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False):
        x2 = x.reshape(-1, x.shape[-1])                                  # (N*, D)
        z = ops().dense_forward(x2, self.params["kernel"], self.params.get("bias"))
        z = z.reshape(*x.shape[:-1], self.units)                         # (N, ..., K)
        out = self.activation.forward(z)
        self.cache = (x, z, out)
        return out

    def backward(self, dout):
        """dout (N, K) -> dx (N, D)."""
        x, z, out = self.cache
        return self.backward_linear(self.activation.backward(dout, z, out))

    @property
    def preactivation(self):
        """z of the last forward pass (the logits, when the activation is softmax)."""
        return self.cache[1]

    def backward_linear(self, dz):
        """Backward from the pre-activation gradient dz = dL/dz (N, K)."""
        x = self.cache[0]
        dz2 = dz.reshape(-1, self.units)
        dx, dw, db = ops().dense_backward(dz2, x.reshape(-1, x.shape[-1]), self.params["kernel"])
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx.reshape(x.shape) if self.needs_input_grad else None

    def get_config(self):
        return {"name": self.name, "units": self.units, "activation": self.activation.name,
                "use_bias": self.use_bias,
                "kernel_initializer": _init_config(self._init_names[0]),
                "bias_initializer": _init_config(self._init_names[1]),
                "kernel_regularizer": regularizers.serialize(self.regularizers.get("kernel")),
                "bias_regularizer": regularizers.serialize(self.regularizers.get("bias"))}
