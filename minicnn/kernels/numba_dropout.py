"""Dropout keep-masks in Numba: the bit-identical twin of ``dropout_mask.keep_mask``.

The hash is the same SplitMix64 finaliser on the same counters (see dropout_mask.py), written
with uint64 everywhere: Numba, like C, wraps uint64 products modulo 2**64, which is what the
NumPy version relies on. (Mixing uint64 with a signed int would make Numba compute in float64,
so every constant here is an np.uint64.)

    key = dropout_mask.mask_key(seed, counter)          # once per mask, in Python
    keep[i] = (mix(key + i * GOLDEN) >> 40) >= threshold
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minicnn.kernels.dropout_mask import GOLDEN, M1, M2
from minicnn.kernels.numba_config import JIT, PARALLEL

_GOLDEN = np.uint64(GOLDEN)
_M1 = np.uint64(M1)
_M2 = np.uint64(M2)
_S27, _S30, _S31, _S40 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(40)


@njit(**JIT)
def _mix64(z):
    """SplitMix64 finaliser on a uint64."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**JIT)
def _keeps(key, threshold, i):
    """True when element i of the mask with this key is kept."""
    return (_mix64(key + np.uint64(i) * _GOLDEN) >> _S40) >= threshold


@njit(**JIT)
def _fill(key, threshold, keep, lo, hi, combine):
    """keep[lo:hi] = the mask's bits, or ANDed into what keep holds when combine."""
    part = keep[lo:hi]  # indices from 0 up: Numba can drop its negative-index checks
    if combine:
        for e in range(part.size):
            part[e] = part[e] & np.uint8(_keeps(key, threshold, lo + e))
    else:
        for e in range(part.size):
            part[e] = np.uint8(_keeps(key, threshold, lo + e))


@njit(**PARALLEL)
def _keep_masks(keys, thresholds, keep):
    """keep (M,) uint8 = AND over d of the masks (keys[d], thresholds[d])."""
    M = keep.size
    T = min(M, 64)
    # chunk t writes keep[t*M//T : (t+1)*M//T] only: the chunks are disjoint
    for t in prange(T):
        for d in range(keys.size):
            _fill(keys[d], thresholds[d], keep, t * M // T, (t + 1) * M // T, d > 0)


def keep_mask_into(keep, keys, thresholds):
    """Fill keep (M,) uint8 with 1 where every mask (keys[d], thresholds[d]) keeps the unit.

    Several dropouts in a row drop a unit when any of them does. keys are the 64-bit mask keys
    (dropout_mask.mask_key), thresholds the 24-bit drop thresholds (dropout_mask.keep_threshold).
    Shapes: keep (M,), M = the activation's size over the whole batch, C order.
    """
    if not (isinstance(keep, np.ndarray) and keep.dtype == np.uint8 and keep.ndim == 1):
        raise TypeError(
            f"Invalid value for argument keep. Expected a 1-D uint8 array. "
            f"Received: {type(keep).__name__} {getattr(keep, 'dtype', '')} "
            f"{getattr(keep, 'shape', '')}"
        )
    if len(keys) == 0 or len(keys) != len(thresholds):
        raise ValueError(
            f"Expected as many thresholds as keys, at least one. Received: "
            f"{len(keys)} keys, {len(thresholds)} thresholds"
        )
    _keep_masks(
        np.atleast_1d(np.asarray(keys, dtype=np.uint64)),
        np.atleast_1d(np.asarray(thresholds, dtype=np.uint64)),
        keep,
    )
    return keep
