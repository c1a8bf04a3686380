"""The library's one source of randomness: seeded NumPy generators, as keras.utils.set_random_seed.

Every layer and fit() draws its own child generator from here at creation, so building the same
model after the same set_random_seed(s) gives bit-identical weights, masks and shuffles.
"""

from __future__ import annotations

import numpy as np

_root = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed minicnn's global generator (weight init, dropout seeds, fit's shuffling)."""
    global _root
    from minicnn.validation import check_int

    _root = np.random.default_rng(check_int(seed, "seed", minimum=0, maximum=2**63 - 1))


def make_rng(seed: int | None = None) -> np.random.Generator:
    """A generator from an explicit seed, or the next child of the global one."""
    if seed is not None:
        return np.random.default_rng(int(seed))
    return np.random.default_rng(_root.integers(0, 2**63 - 1))


def draw_seed(seed: int | None = None) -> int:
    """An int seed: the one given, or a fresh draw from the global generator."""
    return int(seed) if seed is not None else int(_root.integers(0, 2**63 - 1))
