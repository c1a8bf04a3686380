"""Weight initialisers with Keras's names and fan rules.

For a conv kernel (KH, KW, C, F) Keras counts fan_in = KH*KW*C and fan_out = KH*KW*F;
for a dense kernel (D, K), fan_in = D and fan_out = K.
"""

from __future__ import annotations

import math

import numpy as np


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as keras.src.initializers.random_initializers.compute_fans."""
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, rng, dtype):
    """U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio, 2010)."""
    fan_in, fan_out = compute_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, rng, dtype):
    """Truncated normal, stddev = sqrt(2 / (fan_in + fan_out)), cut at two stddevs."""
    fan_in, fan_out = compute_fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def he_normal(shape, rng, dtype):
    """Truncated normal, stddev = sqrt(2 / fan_in)  (He et al., 2015), cut at two stddevs."""
    fan_in, _ = compute_fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / fan_in), rng, dtype)


def he_uniform(shape, rng, dtype):
    """U(-limit, limit), limit = sqrt(6 / fan_in)."""
    fan_in, _ = compute_fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def zeros(shape, rng, dtype):
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng, dtype):
    return np.ones(shape, dtype=dtype)


def _truncated_normal(shape, stddev, rng, dtype):
    # Keras's truncated normal redraws values beyond two standard deviations;
    # its stddev is scaled by 1/0.8796... so the *truncated* distribution has variance stddev^2.
    scale = stddev / 0.87962566103423978
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * scale).astype(dtype)


_BY_NAME = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_normal, he_uniform,
                                     zeros, ones)}


def get(identifier):
    """An initialiser from its Keras name ('glorot_uniform', 'he_normal', 'zeros', ...) or a
    callable (shape, rng, dtype) -> array."""
    if callable(identifier):
        return identifier
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]
    raise ValueError(f"Unknown initializer: {identifier!r}. Expected one of {sorted(_BY_NAME)} "
                     f"or a callable (shape, rng, dtype) -> array.")
