"""Kernels: plain functions on arrays, one backend per module, all with the same signatures.

    naive      readable nested loops (the lesson and the oracle)       kernels/naive.py
    numpy      im2col / strided windows + BLAS                          kernels/numpy_ops.py
    numba      compiled kernels (@njit, cache=True)                     kernels/numba_ops.py

``ops()`` returns the module of the backend in force (``minicnn.set_backend``); layers call
``ops().conv2d_forward(...)`` and never care which one answered.
"""

from __future__ import annotations

import functools
import importlib

from minicnn import config

_MODULES = {
    "naive": "minicnn.kernels.naive",
    "numpy": "minicnn.kernels.numpy_ops",
    "numba": "minicnn.kernels.numba_ops",
}


@functools.cache
def numba_available() -> bool:
    """True when Numba imports and the compiled backend module is present."""
    try:
        importlib.import_module(_MODULES["numba"])
    except ImportError:
        return False
    return True


def ops(name: str | None = None):
    """The kernel module of backend name (default: the one in force)."""
    name = name or config.get_backend()
    if name not in _MODULES:
        raise ValueError(f"Unknown backend {name!r}; expected one of {sorted(_MODULES)}.")
    return importlib.import_module(_MODULES[name])
