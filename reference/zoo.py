"""Small models that exercise what the seed model does not: 'same' padding (the odd pixel at
the bottom/right), strides, non-square kernels, pooling windows that overlap or overhang,
sigmoid and tanh, Activation layers, no bias, and the two crossentropy paths.

Each entry builds a minicnn model on a small input; the suite feeds it continuous random data
(no ties in max-pool windows) and compares forward and gradients with its Keras twin. One entry
feeds small integers instead, so that pooling windows hold *exact* ties, identical in both
libraries: the gradient must go to the first maximum in row-major order, as TensorFlow's.
"""

from __future__ import annotations

import numpy as np

from minicnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential


def _positive_output_bias(model: Sequential) -> None:
    # relu outputs that are all zero would make p / sum(p) 0/0 in both libraries
    model.layers[-1].params["bias"][...] = 0.5


def conv_same_stride2():
    """Conv2D 3x3, strides 2, 'same' on 9x10: odd padding on one axis, even on the other."""
    return Sequential(
        [
            Conv2D(4, 3, strides=2, padding="same", activation="relu", input_shape=(9, 10, 3)),
            Flatten(),
            Dense(5, activation="softmax"),
        ]
    )


def conv_even_kernel_same():
    """Conv2D 4x4, strides 3, 'same', sigmoid on 10x11: even kernel, uneven padding."""
    return Sequential(
        [
            Conv2D(2, 4, strides=3, padding="same", activation="sigmoid", input_shape=(10, 11, 2)),
            Flatten(),
            Dense(4, activation="softmax"),
        ]
    )


def conv_rect_valid_nobias():
    """Conv2D 2x3, strides (1, 2), 'valid', tanh, no bias: a non-square kernel and stride."""
    return Sequential(
        [
            Conv2D(
                3, (2, 3), strides=(1, 2), activation="tanh", use_bias=False, input_shape=(7, 8, 2)
            ),
            Flatten(),
            Dense(5, activation="softmax"),
        ]
    )


def pool_same_overlapping():
    """MaxPooling2D 3x3, strides 2, 'same' on 9x10: overlapping windows that overhang."""
    return Sequential(
        [
            MaxPooling2D(3, strides=2, padding="same", input_shape=(9, 10, 3)),
            Flatten(),
            Dense(5, activation="softmax"),
        ]
    )


def pool_valid_floor():
    """MaxPooling2D 2x2 'valid' on 5x7: the last row and column are dropped (5 -> 2)."""
    return Sequential(
        [
            Conv2D(3, 1, input_shape=(5, 7, 2)),
            MaxPooling2D(2),
            Flatten(),
            Dense(5, activation="softmax"),
        ]
    )


def dense_sigmoid_tanh():
    """Dense sigmoid, Dense tanh, Activation('relu'), then Dense + Activation('softmax')."""
    return Sequential(
        [
            Flatten(input_shape=(4, 4, 2)),
            Dense(8, activation="sigmoid"),
            Dense(6, activation="tanh"),
            Activation("relu"),
            Dense(5),
            Activation("softmax"),
        ]
    )


def activation_layers():
    """Conv2D without activation followed by Activation layers, Dropout, Dense, softmax."""
    return Sequential(
        [
            Conv2D(3, 3, input_shape=(6, 6, 2)),
            Activation("tanh"),
            Activation("sigmoid"),
            Flatten(),
            Dropout(0.3),
            Dense(4),
            Activation("softmax"),
        ]
    )


def sigmoid_output():
    """A sigmoid output with categorical crossentropy: Keras on TensorFlow takes the sigmoid's
    logits and applies *softmax* crossentropy to them (any output carrying ``_keras_logits``)."""
    return Sequential([Flatten(input_shape=(3, 3, 2)), Dense(4, activation="sigmoid")])


def probability_output():
    """A relu output: no logits, so crossentropy on p / sum(p) clipped to [1e-7, 1 - 1e-7]."""
    return Sequential(
        [
            Conv2D(2, 3, activation="relu", input_shape=(5, 5, 1)),
            Flatten(),
            Dense(4, activation="relu"),
        ]
    )


def pool_exact_ties():
    """MaxPooling2D 2x2 straight on the input, which holds small integers: exact ties."""
    return Sequential(
        [MaxPooling2D(2, input_shape=(6, 6, 2)), Flatten(), Dense(5, activation="softmax")]
    )


def tie_data(shape, n: int, seed: int) -> np.ndarray:
    """Inputs in {0, 1, 2}: most 2x2 windows hold a repeated maximum.  -> (n, *shape)"""
    return np.random.default_rng(seed).integers(0, 3, (n, *shape)).astype(np.float32)


# name -> (builder, hook run after the biases are randomised or None, input maker or None)
ZOO = {
    "conv 3x3 s2 same": (conv_same_stride2, None, None),
    "conv 4x4 s3 same sigmoid": (conv_even_kernel_same, None, None),
    "conv 2x3 s(1,2) tanh no bias": (conv_rect_valid_nobias, None, None),
    "maxpool 3x3 s2 same": (pool_same_overlapping, None, None),
    "maxpool 2x2 valid 5x7": (pool_valid_floor, None, None),
    "maxpool 2x2 exact ties": (pool_exact_ties, None, tie_data),
    "dense sigmoid/tanh": (dense_sigmoid_tanh, None, None),
    "activation layers": (activation_layers, None, None),
    "sigmoid output": (sigmoid_output, None, None),
    "relu output (clipped)": (probability_output, _positive_output_bias, None),
}
