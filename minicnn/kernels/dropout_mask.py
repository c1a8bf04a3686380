"""Dropout keep-masks from a counter-based hash, identical bits on every backend.

A mask is a pure function of (seed, counter, element index): the NumPy path here and the Numba
kernel compute the same bits, so training with either backend drops the same units, and backward
can regenerate the mask instead of storing it. The hash is SplitMix64's finaliser (Steele et al.,
2014), which passes BigCrush as a counter-based generator.

    key  = mix(seed * G + counter)
    u[i] = mix(key + i * G) >> 40          a 24-bit uniform integer
    keep[i] = u[i] >= floor(rate * 2**24)  so P(keep) = 1 - rate to within 2**-24
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1


def mix64_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (used once per mask, for the key)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def mask_key(seed: int, counter: int) -> int:
    """The 64-bit key of the counter-th mask drawn from a layer seeded with seed."""
    return mix64_int(seed * GOLDEN + counter)


def keep_threshold(rate: float) -> int:
    """Units whose 24-bit hash is below this are dropped."""
    return int(rate * (1 << 24))


def keep_mask(seed: int, counter: int, size: int, rate: float):
    """Boolean keep-mask of length size (flat, C-order over the activation's shape)."""
    z = np.arange(size, dtype=np.uint64) * np.uint64(GOLDEN) + np.uint64(mask_key(seed, counter))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)  # uint64 arrays wrap modulo 2**64, as intended
    z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)) >= np.uint64(keep_threshold(rate))
