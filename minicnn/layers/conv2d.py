"""Conv2D: a bank of F learned (KH, KW, C) filters slid over the image (cross-correlation)."""

from __future__ import annotations

from minicnn import activations, initializers, regularizers
from minicnn.kernels.dispatch import ops
from minicnn.kernels.geometry import window_2d
from minicnn.layers.base import ActivationAttribute, Layer
from minicnn.validation import ArgumentTypeError, check_bool, is_int


class Conv2D(Layer):
    """2-D convolution, channels-last, with Keras's arguments and weight layout.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (sh, sw).
        padding: 'valid' (no padding) or 'same' (output ceil(H / s); odd pad bottom/right).
        data_format, dilation_rate, groups: Keras's, accepted at 'channels_last', 1 and 1 only
            (minicnn computes channels-last, undilated, ungrouped convolutions).
        activation: None, 'relu', 'sigmoid', 'tanh', 'softmax', 'linear'.
        use_bias, kernel_initializer, bias_initializer: as Keras.
        kernel_regularizer, bias_regularizer: None, 'l1', 'l2' or a minicnn.regularizers
            object: its penalty joins the loss (kept in ``layer.regularizers``).
        activity_regularizer, kernel_constraint, bias_constraint: accepted at None only;
            name, dtype, input_shape: as Keras.

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

    activation = ActivationAttribute()
    keras_only = ("data_format", "dilation_rate", "groups", "kernel_constraint",
                  "bias_constraint", "lora_rank", "lora_alpha")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        # every argument is checked before the layer takes a name or anything else
        if not is_int(filters) or int(filters) <= 0:
            raise (ValueError if is_int(filters) else ArgumentTypeError)(
                f"Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={filters!r}.")
        kernel_size = standardize_tuple(kernel_size, "kernel_size")
        strides = standardize_tuple(strides, "strides")
        padding = standardize_padding(padding)
        activation = activations.get(activation)
        use_bias = check_bool(use_bias, "use_bias")
        inits = initializers.get(kernel_initializer), initializers.get(bias_initializer)
        regs = regularizers.get(kernel_regularizer), regularizers.get(bias_regularizer)
        kwargs.update(data_format=data_format, dilation_rate=dilation_rate, groups=groups)
        super().__init__(**kwargs)
        filters = int(filters)
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

    @property
    def kernel(self):
        """The (KH, KW, C, F) kernel as a Variable (AttributeError before build, as Keras)."""
        return self._variable("kernel")

    @property
    def bias(self):
        """The (F,) bias as a Variable; None with use_bias=False."""
        return self._variable("bias")

    def build(self, input_shape):
        (_, _), self.pads = self._geometry(input_shape[1:])
        shapes = self.weight_shapes(input_shape[1:])
        rng = self._rng or _default_rng()
        self.params["kernel"] = initializers.sample(self.kernel_initializer, shapes["kernel"],
                                                    rng, self.dtype)
        if self.use_bias:
            self.params["bias"] = initializers.sample(self.bias_initializer, shapes["bias"],
                                                      rng, self.dtype)
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
                "kernel_initializer": _init_config(self._init_names[0]),
                "bias_initializer": _init_config(self._init_names[1]),
                "kernel_regularizer": regularizers.serialize(self.regularizers.get("kernel")),
                "bias_regularizer": regularizers.serialize(self.regularizers.get("bias"))}


def _init_config(init):
    """An initializer as its config says it: the name given, Keras's serialised dict for an
    Initializer object, or 'custom' for a function (which JSON cannot hold; loading a saved
    model rebuilds it with the default, then overwrites the weights)."""
    if isinstance(init, (str, dict)):
        return init
    if isinstance(init, initializers.Initializer):
        return initializers.serialize(init)
    if isinstance(init, type) and issubclass(init, initializers.Initializer):
        return init.__name__
    return "custom"


def standardize_tuple(value, name):
    """A positive int or 2 positive ints -> (int, int), with Keras's messages
    (keras/src/utils/argument_validation.py); NumPy integers are accepted."""
    error = f"The `{name}` argument must be a tuple of 2 integers. Received {name}={value!r}"
    if is_int(value):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            raise ArgumentTypeError(error) from None
        if isinstance(value, (str, bytes)) or len(pair) != 2:
            raise ArgumentTypeError(error)
        for v in pair:
            if not is_int(v):
                raise ArgumentTypeError(f"{error}including element {v!r} of type {type(v)}")
    pair = tuple(int(v) for v in pair)
    bad = {v for v in pair if v <= 0}
    if bad:
        raise ValueError(f"{error}, including values {bad} that do not satisfy `value > 0`")
    return pair


def standardize_padding(value):
    """'valid' or 'same', any case, as Keras; its message otherwise."""
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        cls = ValueError if isinstance(value, str) else ArgumentTypeError
        raise cls(f"The `padding` argument must be a list/tuple or one of {{'valid', 'same'}}. "
                  f"Received: padding={value!r}")
    return value.lower()


def _default_rng():
    from minicnn.random import make_rng

    return make_rng()
