"""Process-wide settings: the float dtype of new layers and the kernel backend.

Keras keeps the first in ``keras.config.floatx()``; the second is minicnn's own switch between the
readable loops (``'naive'``), vectorised NumPy (``'numpy'``) and the Numba kernels (``'numba'``).
``'auto'`` picks the fastest backend that imports.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

_FLOATX = "float32"
BACKENDS = ("naive", "numpy", "numba")
_BACKEND = os.environ.get("MINICNN_BACKEND", "auto")


def floatx() -> str:
    """The dtype new layers create their weights in ('float32' unless changed)."""
    return _FLOATX


def set_floatx(dtype: str) -> None:
    """Set the dtype of layers built from now on: 'float32' (default) or 'float64'.

    float64 is what gradient checks need; training and Keras parity use float32.
    """
    global _FLOATX
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"Invalid value for argument dtype. Expected 'float32' or 'float64'. "
                         f"Received: dtype={dtype!r}")
    _FLOATX = name


def set_backend(name: str) -> None:
    """Choose the kernels every layer calls: 'naive', 'numpy', 'numba' or 'auto' (fastest).

    'naive' is the nested-loop lesson (slow: tiny inputs only), 'numpy' is im2col + BLAS,
    'numba' the compiled kernels. The environment variable MINICNN_BACKEND sets the default.
    """
    global _BACKEND
    if name not in BACKENDS + ("auto",):
        raise ValueError(f"Invalid value for argument name. Expected one of "
                         f"{BACKENDS + ('auto',)}. Received: name={name!r}")
    _BACKEND = name


def get_backend() -> str:
    """The backend in force, with 'auto' resolved to 'numba' when Numba imports, else 'numpy'."""
    if _BACKEND != "auto":
        return _BACKEND
    return "numba" if numba_available() else "numpy"


def backend_setting() -> str:
    """The backend as set: one of BACKENDS or 'auto' (unresolved), for saving and restoring."""
    return _BACKEND


@contextlib.contextmanager
def using_backend(name: str):
    """Run the block with backend ``name`` ('naive', 'numpy', 'numba' or 'auto'), then restore
    the previous setting (tests and benchmarks compare backends this way)."""
    old = _BACKEND
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


@functools.cache
def numba_available() -> bool:
    """True when Numba imports (the 'numba' backend needs nothing else)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
