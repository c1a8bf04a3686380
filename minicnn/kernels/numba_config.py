"""Every Numba flag minicnn uses, in one place, and the thread pools the kernels run beside.

    JIT        serial kernels: compiled on first call and cached on disk (cache=True), so later
               processes load them in milliseconds; nogil so Python threads may call them
    PARALLEL   JIT + parallel=True, for kernels whose outer loop is a prange (each says why its
               writes are disjoint)

fastmath is limited to 'contract': a*b + c may become one fused multiply-add (rounded once
instead of twice, so no less accurate). Measured on the seed and deep convolutions: 20-35%
faster, and the parity suite still passes at its float32 tolerances. Reassociation and the
no-NaN/no-inf assumptions stay off: they would change results between backends and hide bad
inputs, for no gain the benchmarks could measure.

Numba's cache key is the kernel's bytecode and signature, not these flags: after changing a flag
here, delete the kernels' cache (minicnn/kernels/__pycache__/numba_*) or set NUMBA_CACHE_DIR.

Thread pools. Numba runs its kernels on an OpenMP team when Numba finds OpenMP (measured 1.7x
faster than its own workqueue on an idle machine; NUMBA_THREADING_LAYER still wins when set).
Its threads sleep between kernels (OMP_WAIT_POLICY=passive, unless set): spinning threads made
a seed-model epoch 4x slower whenever another process was busy on the machine (0.27 s passive,
1.13 s spinning, same run), for little gain on an idle one. The dense layers' GEMMs run in
NumPy's BLAS between the kernels: BLAS must then keep to one thread, or its pool and Numba's
fight over the cores (a step measured 6.5x slower). ``blas_single_threaded()`` is the context
the model trains and predicts in.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numba

FASTMATH = {"contract"}
JIT = dict(cache=True, nogil=True, fastmath=FASTMATH)
PARALLEL = dict(JIT, parallel=True)


def _prefer_openmp() -> None:
    # read by libgomp when it loads, which the import below does
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (present when OpenMP is)
    except ImportError:
        return  # Numba's default (TBB if installed, else its workqueue)
    numba.config.THREADING_LAYER = "omp"


_prefer_openmp()


def num_threads() -> int:
    """Threads Numba's parallel kernels use (NUMBA_NUM_THREADS, or numba.set_num_threads)."""
    return numba.get_num_threads()


def chunks_for(n: int) -> int:
    """How many per-thread chunks to split n samples into: one per thread, at most n."""
    return max(1, min(n, num_threads()))


def kernels_threadsafe() -> bool:
    """True when Numba's threading layer lets several Python threads launch parallel kernels
    at once (OpenMP and TBB do; the workqueue fallback aborts the process if they try)."""
    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel kernel has run yet: the configured choice decides
        return numba.config.THREADING_LAYER in ("omp", "tbb", "safe", "threadsafe")


# Held around the kernels only when the threading layer is not thread-safe (see above).
kernel_lock = threading.RLock()


@contextlib.contextmanager
def compute_scope():
    """The context the model's numba-backend methods run in: BLAS on one thread, and the
    kernels serialised across threads where the threading layer needs it."""
    if kernels_threadsafe():
        with blas_single_threaded():
            yield
    else:
        with kernel_lock, blas_single_threaded():
            yield


_controller = None
_scope_lock = threading.Lock()
_scope_depth = 0
_scope_limit = None


@contextlib.contextmanager
def blas_single_threaded():
    """Context in which every loaded BLAS runs on the calling thread only.

    BLAS's thread count is a process-wide setting, so this is one shared scope: the first
    thread in sets the limit, the last one out restores it (two threads each saving and
    restoring it on their own would restore the wrong value). Entering costs ~30 us the first
    time in a while (threadpoolctl), a lock otherwise.
    """
    global _controller, _scope_depth, _scope_limit
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # without threadpoolctl the kernels still work, only slower
        yield
        return
    with _scope_lock:
        if _scope_depth == 0:
            if _controller is None:
                _controller = ThreadpoolController()
            _scope_limit = _controller.limit(limits=1, user_api="blas")
        _scope_depth += 1
    try:
        yield
    finally:
        with _scope_lock:
            _scope_depth -= 1
            if _scope_depth == 0:
                _scope_limit.restore_original_limits()
                _scope_limit = None
