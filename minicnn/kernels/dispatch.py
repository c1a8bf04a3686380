"""One table per backend: which function computes each op. The one place backends are chosen.

    naive   kernels/naive.py: nested loops (the lesson and the oracle) and NumPy twins
    numpy   kernels/numpy_ops.py: im2col / strided windows + BLAS; naive's NumPy twins
    numba   kernels/numba_ops.py (conv, pool, dense, the fused conv unit),
            numba_batchnorm.py, numba_optimizers.py; BLAS on one thread beside Numba's

Layers, the optimizers and the fused unit call ``ops().conv2d_forward(...)`` and never test which
backend is in force; a reader (or a static tool) finds the function that runs by going to its
entry in the table below. An entry of None means the backend has no such kernel: no fused
conv unit (``conv_pool_*``), or no compiled optimizer step, whose NumPy rule in naive.py then
runs. ``tracing()`` records which entries ran, for ``minicnn explain --trace``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable

from minicnn import config


@dataclasses.dataclass(frozen=True)
class Backend:
    """The functions one backend computes each op with (signatures: kernels/naive.py)."""

    name: str
    conv2d_forward: Callable
    conv2d_backward_input: Callable
    conv2d_backward_weights: Callable
    maxpool2d_forward: Callable
    maxpool2d_backward: Callable
    dense_forward: Callable
    dense_backward: Callable
    batchnorm_forward_train: Callable
    batchnorm_forward_infer: Callable
    batchnorm_backward: Callable
    # compiled optimizer steps (in place, after the *_is_finite check); None: naive's NumPy rule
    adam_update: Callable | None
    adam_update_is_finite: Callable | None
    sgd_momentum_update: Callable | None
    sgd_momentum_update_is_finite: Callable | None
    # the fused Conv2D(relu) -> MaxPooling2D -> dropouts unit (minicnn.fusion); None: no fusion
    conv_pool_forward: Callable | None
    conv_pool_backward: Callable | None
    # ... with the model's last Dense after its Flatten (the seed model's whole network)
    conv_pool_dense_forward: Callable | None
    conv_pool_dense_backward: Callable | None
    # the context the model's methods run in (thread pools)
    compute_scope: Callable[[], contextlib.AbstractContextManager]


def _naive() -> Backend:
    from minicnn.kernels import naive

    return Backend(
        name="naive",
        conv2d_forward=naive.conv2d_forward,
        conv2d_backward_input=naive.conv2d_backward_input,
        conv2d_backward_weights=naive.conv2d_backward_weights,
        maxpool2d_forward=naive.maxpool2d_forward,
        maxpool2d_backward=naive.maxpool2d_backward,
        dense_forward=naive.dense_forward,
        dense_backward=naive.dense_backward,
        batchnorm_forward_train=naive.batchnorm_forward_train,
        batchnorm_forward_infer=naive.batchnorm_forward_infer,
        batchnorm_backward=naive.batchnorm_backward,
        adam_update=None,
        adam_update_is_finite=None,
        sgd_momentum_update=None,
        sgd_momentum_update_is_finite=None,
        conv_pool_forward=None,
        conv_pool_backward=None,
        conv_pool_dense_forward=None,
        conv_pool_dense_backward=None,
        compute_scope=contextlib.nullcontext,
    )


def _numpy() -> Backend:
    from minicnn.kernels import numpy_ops

    # naive's table with the vectorised conv, pool and dense (the rest is NumPy there already)
    return dataclasses.replace(
        _naive(),
        name="numpy",
        conv2d_forward=numpy_ops.conv2d_forward,
        conv2d_backward_input=numpy_ops.conv2d_backward_input,
        conv2d_backward_weights=numpy_ops.conv2d_backward_weights,
        maxpool2d_forward=numpy_ops.maxpool2d_forward,
        maxpool2d_backward=numpy_ops.maxpool2d_backward,
        dense_forward=numpy_ops.dense_forward,
        dense_backward=numpy_ops.dense_backward,
    )


def _numba() -> Backend:
    from minicnn.kernels import numba_batchnorm, numba_config, numba_ops, numba_optimizers

    return Backend(
        name="numba",
        conv2d_forward=numba_ops.conv2d_forward,
        conv2d_backward_input=numba_ops.conv2d_backward_input,
        conv2d_backward_weights=numba_ops.conv2d_backward_weights,
        maxpool2d_forward=numba_ops.maxpool2d_forward,
        maxpool2d_backward=numba_ops.maxpool2d_backward,
        dense_forward=numba_ops.dense_forward,
        dense_backward=numba_ops.dense_backward,
        batchnorm_forward_train=numba_batchnorm.forward_train,
        batchnorm_forward_infer=numba_batchnorm.forward_infer,
        batchnorm_backward=numba_batchnorm.backward,
        adam_update=numba_optimizers.adam_update,
        adam_update_is_finite=numba_optimizers.adam_update_is_finite,
        sgd_momentum_update=numba_optimizers.sgd_momentum_update,
        sgd_momentum_update_is_finite=numba_optimizers.sgd_momentum_update_is_finite,
        conv_pool_forward=numba_ops.conv_pool_forward,
        conv_pool_backward=numba_ops.conv_pool_backward,
        conv_pool_dense_forward=numba_ops.conv_pool_dense_forward,
        conv_pool_dense_backward=numba_ops.conv_pool_dense_backward,
        compute_scope=numba_config.compute_scope,
    )


_TABLES = {"naive": _naive, "numpy": _numpy, "numba": _numba}


@functools.cache
def table(name: str) -> Backend:
    """The table of backend ``name`` ('naive', 'numpy' or 'numba'), built on first use (the
    numba table imports Numba)."""
    if name not in _TABLES:
        raise ValueError(f"Unknown backend {name!r}; expected one of {sorted(_TABLES)}.")
    if name == "numba" and not config.numba_available():
        raise ValueError("The 'numba' backend needs Numba, which does not import here.")
    return _TABLES[name]()


def ops(name: str | None = None) -> Backend:
    """The table of backend ``name``, default the one in force (minicnn.set_backend)."""
    t = table(name or config.get_backend())
    return t if _trace is None else _traced(t)


# --- which kernels ran: tracing -------------------------------------------------------------
_trace: list[str] | None = None


@contextlib.contextmanager
def tracing():
    """Record the name of every table entry called inside, in order: yields the list.

    For teaching (``minicnn explain --trace``), not for threads: the record is process-wide.
    """
    global _trace
    outer, _trace = _trace, []
    try:
        yield _trace
    finally:
        _trace = outer


@functools.cache
def _traced(t: Backend) -> Backend:
    """t with each function wrapped to append 'module.function' to the trace."""

    def wrap(fn):
        name = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"

        @functools.wraps(fn)
        def traced(*args, **kwargs):
            if _trace is not None:
                _trace.append(name)
            return fn(*args, **kwargs)

        return traced

    changes = {f.name: wrap(getattr(t, f.name)) for f in dataclasses.fields(t)
               if f.name not in ("name", "compute_scope") and getattr(t, f.name) is not None}
    return dataclasses.replace(t, **changes)
