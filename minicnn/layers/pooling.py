"""MaxPooling2D: keep the largest value of each window; its gradient goes to that one pixel."""

from __future__ import annotations

from minicnn.kernels.dispatch import ops
from minicnn.kernels.geometry import window_2d
from minicnn.layers.base import Layer
from minicnn.layers.conv2d import standardize_padding, standardize_tuple


class MaxPooling2D(Layer):
    """2-D max pooling, channels-last.

    Args:
        pool_size: int or (PH, PW).
        strides: int, (sh, sw) or None (= pool_size, as Keras).
        padding: 'valid' (floor: 26 -> 13, 5 -> 2) or 'same' (ceil(H / s)).
        data_format: Keras's, accepted at 'channels_last' (or None) only.

    Shapes: x (N, H, W, C) -> out (N, Ho, Wo, C).

    out[n,i,j,c] = max_{p,q} x[n, i*sh+p, j*sw+q, c]. Backward routes dout to the first maximum
    of each window in row-major order (TensorFlow's MaxPoolGrad rule, so ties match Keras); a
    NaN in a window wins, so it propagates (as np.max).

    Which code runs: forward and backward call the backend's pool ops (kernels/dispatch.py).
    On the 'numba' backend a 'valid' MaxPooling2D right after a Conv2D(relu) is run inside the
    model's fused unit (minicnn.fusion.ConvReluPool): this forward and backward then do not run,
    and the unit pools in registers and keeps one byte per output saying which pixel won.
    `minicnn explain --trace` shows which ran.
    """

    keras_only = ("data_format",)

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 name=None, **kwargs):
        pool_size = standardize_tuple(pool_size, "pool_size")
        strides = standardize_tuple(strides, "strides") if strides is not None else pool_size
        padding = standardize_padding(padding)
        super().__init__(name=name, data_format=data_format, **kwargs)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def _geometry(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer {self.name!r} expects inputs of shape (N, H, W, C), "
                             f"received (None, {', '.join(map(str, input_shape))}).")
        return window_2d(input_shape[:2], self.pool_size, self.strides, self.padding)

    def build(self, input_shape):
        _, self.pads = self._geometry(input_shape[1:])

    def compute_output_shape(self, input_shape):
        (ho, wo), _ = self._geometry(input_shape)
        return (ho, wo, input_shape[2])

    def forward(self, x, training=False):
        out, argmax = ops().maxpool2d_forward(x, self.pool_size, self.strides, self.pads)
        self.cache = (x.shape, argmax)
        return out

    def backward(self, dout):
        """dout (N, Ho, Wo, C) -> dx (N, H, W, C), zero except at each window's maximum."""
        x_shape, argmax = self.cache
        return ops().maxpool2d_backward(dout, argmax, x_shape, self.pool_size, self.strides,
                                        self.pads)

    def get_config(self):
        return {"name": self.name, "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}
