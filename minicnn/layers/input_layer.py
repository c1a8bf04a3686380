"""Input / InputLayer: the shape a Sequential model's inputs will have, as keras.Input.

    model = Sequential([Input(shape=(28, 28, 1)), Conv2D(32, 3, activation="relu"), ...])

It is a declaration, not a layer: it holds no weights, computes nothing, is not in
``model.layers`` (as in Keras, whose Sequential hides its InputLayer too) and only sets the
model's input shape, so the model is built as soon as its layers are added.
"""

from __future__ import annotations

import numpy as np

from minicnn.layers.base import check_batch_shape, check_dtype, check_shape, dtype_name
from minicnn.validation import check_name, invalid


class InputLayer:
    """The input of a Sequential model, Keras's arguments.

    Args:
        shape: one sample's shape, e.g. (28, 28, 1) (no batch axis).
        batch_size: accepted and ignored (minicnn takes any batch size).
        dtype: None, 'float32' or 'float64'.
        batch_shape: instead of shape: (None, 28, 28, 1).
        sparse, ragged, input_tensor / tensor, optional: Keras's, accepted when off only.
        name: as Keras ('input_layer' by default).
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, ragged=None, **kwargs):
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to InputLayer: {kwargs}")
        if shape is not None and batch_shape is not None:
            raise ValueError("You cannot pass both `shape` and `batch_shape` at the same time.")
        if shape is None and batch_shape is None:
            raise ValueError("You must pass a `shape` argument.")
        self.shape = (check_shape(shape, "shape") if shape is not None
                      else check_batch_shape(batch_shape, "batch_shape"))
        self.dtype = check_dtype(dtype)
        self.name = check_name(name) or "input_layer"
        for arg, value in (("sparse", sparse), ("ragged", ragged), ("optional", optional)):
            if value is not None and value is not False and not (
                    isinstance(value, (bool, np.bool_)) and not value):
                raise invalid(arg, "False or None (minicnn takes dense arrays)", value)
        if input_tensor is not None:
            raise invalid("input_tensor", "None", input_tensor)

    @property
    def batch_shape(self):
        return (None, *self.shape)

    def get_config(self) -> dict:
        return {"batch_shape": [None, *self.shape], "dtype": self.dtype or "float32",
                "sparse": False, "ragged": False, "name": self.name, "optional": False}

    @classmethod
    def from_config(cls, config):

        config = dict(config)
        if "dtype" in config:
            config["dtype"] = dtype_name(config["dtype"])
        return cls(**config)

    def __repr__(self):
        return f"<InputLayer shape={self.batch_shape}>"


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False, ragged=None):
    """keras.Input(shape=...): for minicnn, an InputLayer to start a Sequential model with."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                      batch_shape=batch_shape, input_tensor=tensor, optional=optional,
                      name=name, ragged=ragged)
