"""Dropout: while training, zero each unit with probability rate and scale the rest up."""

from __future__ import annotations

import numpy as np

from minicnn.kernels.dropout_mask import keep_mask
from minicnn.layers.base import Layer
from minicnn.random import draw_seed
from minicnn.validation import check_float, check_seed, is_real


class Dropout(Layer):
    """Inverted dropout (Srivastava et al., 2014), identity unless training=True.

    Args:
        rate: probability of dropping a unit, in [0, 1).
        noise_shape: Keras's, accepted at None only (one mask entry per unit).
        seed: int for a reproducible mask sequence; None draws one from minicnn's global seed.

    Shapes: x (any) -> out (same shape).

    out = x * keep / (1 - rate), keep ~ Bernoulli(1 - rate). Scaling at training time keeps
    E[out] = x, so inference needs no change. Masks are a hash of (seed, step, index)
    (kernels/dropout_mask.py), identical on every backend. ``mask_source`` may be set to a
    callable shape -> boolean keep-mask to inject masks (the Keras parity suite does).
    """

    keras_only = ("noise_shape",)

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if is_real(rate) and not 0 <= float(rate) <= 1:  # Keras's message for its own range
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float "
                             f"value between 0 and 1. Received: rate={rate!r}")
        # rate = 1 Keras accepts; minicnn refuses it: the kept units would be scaled by 1/0
        rate = check_float(rate, "rate", low=0, high=1, high_open=True,
                           expected="a float between 0 (inclusive) and 1 (exclusive)")
        seed = check_seed(seed)
        super().__init__(noise_shape=noise_shape, **kwargs)
        self.rate = rate
        self.seed = draw_seed(seed)
        self.counter = 0          # masks drawn so far; part of the hash key
        self.mask_source = None

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self.cache = None
            return x
        if self.mask_source is not None:
            keep = np.asarray(self.mask_source(x.shape), dtype=bool).reshape(x.shape)
        else:
            keep = keep_mask(self.seed, self.counter, x.size, self.rate).reshape(x.shape)
        self.counter += 1
        scale = np.asarray(1.0 / (1.0 - self.rate), dtype=x.dtype)
        mask = keep * scale                                   # (same as x) 0 or 1/(1-rate)
        self.cache = mask
        return x * mask

    def backward(self, dout):
        return dout if self.cache is None else dout * self.cache

    def state_snapshot(self):
        return {**super().state_snapshot(), "counter": self.counter}

    def restore_state(self, snapshot):
        snapshot = dict(snapshot)
        self.counter = snapshot.pop("counter")
        super().restore_state(snapshot)

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed}
