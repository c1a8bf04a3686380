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

The compiled kernels are cached on disk in one folder per version of the kernel sources:
``~/.cache/minicnn/numba/<digest>`` (``$XDG_CACHE_HOME`` respected), the digest taken over every
file in minicnn/kernels/ and Numba's version. Numba's own cache key is a kernel's file and
signature: it misses an edit to a helper in another file, or to a flag here, and would load a
stale kernel. With the digest, any edit to any kernel file starts a fresh folder. NUMBA_CACHE_DIR,
when set, is used as it is (benchmarks set it to an empty folder to time a cold start).

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
import hashlib
import os
import sys
import threading

import numba

FASTMATH = {"contract"}
JIT = dict(cache=True, nogil=True, fastmath=FASTMATH)
PARALLEL = dict(JIT, parallel=True)


def _kernel_cache_folder() -> str | None:
    """~/.cache/minicnn/numba/<digest of the kernel sources and Numba's version>."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None  # the user's choice (Numba read it at import)
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(numba.__version__.encode())
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(os.path.join(here, name), "rb") as f:
                digest.update(f.read())
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minicnn", "numba", digest.hexdigest()[:16])


def _use_kernel_cache_folder() -> None:
    # Read when each kernel's @njit(cache=True) runs, i.e. when its module is imported, which
    # comes after this module (every kernel module imports its flags from here). If the folder
    # cannot be made, Numba falls back to its own choice (__pycache__ beside the source).
    folder = _kernel_cache_folder()
    if folder is not None:
        numba.config.CACHE_DIR = folder


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
_use_kernel_cache_folder()


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
_controller_modules = 0  # len(sys.modules) when the controller looked for BLAS libraries
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
    global _controller, _controller_modules, _scope_depth, _scope_limit
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # without threadpoolctl the kernels still work, only slower
        yield
        return
    with _scope_lock:
        if _scope_depth == 0:
            # A library imported since the controller last looked (SciPy brings its own
            # OpenBLAS) would escape the limit: look again when modules were imported since.
            if _controller is None or _controller_modules != len(sys.modules):
                _controller = ThreadpoolController()
                _controller_modules = len(sys.modules)
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
