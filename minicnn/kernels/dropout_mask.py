"""Dropout keep-masks from a counter-based hash, identical bits on every backend.

A mask is a pure function of (seed, counter, element index): the NumPy path here and the Numba
kernel compute the same bits, so training with either backend drops the same units, and backward
can regenerate the mask instead of storing it. The hash is SplitMix64's finaliser (Steele et al.,
2014), which passes BigCrush as a counter-based generator. One 64-bit hash gives four units
their 16-bit uniform numbers: hashing, not masking, was the cost of dropout (the 64-bit
multiplies), and a quarter of the hashes made the fused kernel's dropout pass over twice as
fast (README, "How the kernels got here").

    key       = mix(seed * G + counter)
    word[j]   = mix(key + j * G)                        64 random bits
    u[i]      = bits 16*(i % 4) .. 16*(i % 4) + 15 of word[i // 4]
    keep[i]   = u[i] >= floor(rate * 2**16)             so P(keep) = 1 - rate to within 2**-16

In memory on a little-endian machine, u is simply the words read as 16-bit integers: the Numba
kernel reads them that way.
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1
UNITS_PER_WORD = 4  # 16-bit uniforms per 64-bit hash
UNIFORM_BITS = 16


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
    """Units whose 16-bit uniform is below this are dropped: rate rounded down to 2**-16."""
    return int(rate * (1 << UNIFORM_BITS))


def mask_words(key: int, first: int, count: int) -> np.ndarray:
    """word[first : first + count] of the mask with this key, (count,) uint64."""
    z = np.arange(first, first + count, dtype=np.uint64) * np.uint64(GOLDEN) + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)  # uint64 arrays wrap modulo 2**64, as intended
    z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
    return z ^ (z >> np.uint64(31))


def uniforms(key: int, size: int) -> np.ndarray:
    """u[0 : size], (size,) uint16: four per word, lowest bits first (the formula, not memory
    order, so this holds on any machine)."""
    words = mask_words(key, 0, -(-size // UNITS_PER_WORD))
    shifts = np.arange(UNITS_PER_WORD, dtype=np.uint64) * np.uint64(UNIFORM_BITS)
    u = (words[:, None] >> shifts) & np.uint64(0xFFFF)  # (words, 4): unit i at [i // 4, i % 4]
    return u.ravel()[:size].astype(np.uint16)


def keep_mask(seed: int, counter: int, size: int, rate: float):
    """Boolean keep-mask of length size (flat, C-order over the activation's shape)."""
    return uniforms(mask_key(seed, counter), size) >= keep_threshold(rate)
