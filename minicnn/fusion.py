"""How the model groups layers into execution units for the backend in force.

A unit has ``forward(x, training)`` and ``backward(dout)`` like a layer. Without fusion every
layer is its own unit. A backend may replace a run of layers (e.g. Conv2D(relu) followed by
MaxPooling2D) with one fused unit that writes the same parameter gradients into the same layers'
``grads``; the layer-by-layer path stays the reference the fused one is tested against.
"""

from __future__ import annotations

import contextlib


def plan(layers, backend: str) -> list:
    """Units covering ``layers`` in order; the last layer is always a unit of its own."""
    if backend == "numba":
        from minicnn.kernels import numba_available

        if numba_available():
            from minicnn.kernels.numba_fused import fuse  # provided by the Numba backend

            return fuse(layers)
    return list(layers)


def compute_scope(backend: str):
    """The context the model's steps run in. For 'numba': BLAS on one thread, because the
    kernels already run on Numba's threads and two thread pools fight over the cores."""
    if backend == "numba":
        from minicnn.kernels import numba_available

        if numba_available():
            from minicnn.kernels import numba_config

            return numba_config.compute_scope()
    return contextlib.nullcontext()
