"""Every Numba flag minicnn uses, in one place, and the threads the kernels run on.

    JIT   every kernel: compiled on first call for the dtypes it meets and cached on disk
          (cache=True), so later processes only load it; nogil, so several threads may run it

fastmath is limited to 'contract': a*b + c may become one fused multiply-add (rounded once
instead of twice, so no less accurate); the parity suite passes at its float32 tolerances.
Reassociation and the no-NaN/no-inf assumptions stay off: they would change results between
backends and hide bad inputs.

Threads. The kernels split a batch into one chunk per thread (``chunks_for``), run by
numba_threads.run_chunks. The thread count is MINICNN_NUM_THREADS, else NUMBA_NUM_THREADS, else
the CPU count (``set_num_threads``).

BLAS. The dense layers' products run in NumPy's BLAS between the kernels: BLAS must keep to
one thread meanwhile, or its pool and ours fight over the cores; ``compute_scope()`` (BLAS on
one thread) is the context the model trains and predicts in.

The compiled kernels are cached on disk in one folder per version of the kernel sources:
``~/.cache/minicnn/numba/<digest>`` (``$XDG_CACHE_HOME`` respected), the digest taken over every
file in minicnn/kernels/ and Numba's version. Numba's own cache key is a kernel's file and
signature: it misses an edit to a helper in another file, or to a flag here, and would load a
stale kernel. With the digest, any edit to any kernel file starts a fresh folder. NUMBA_CACHE_DIR,
when set, is used as it is (benchmarks set it to an empty folder to time a cold start).
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


_use_kernel_cache_folder()


def _full_width_vectors() -> None:
    """On an AVX-512 CPU, let LLVM vectorise with 512-bit registers (16 float32 lanes).

    LLVM tunes Intel's AVX-512 chips (skylake-avx512 to sapphirerapids, and rocketlake, which
    the Xeons of some virtual machines report) to *prefer* 256-bit vectors, a guard against the
    clock drop of early Skylake-X; clang lifts it with -mprefer-vector-width=512, Numba has no
    such option. The kernels' inner loops run over 32 or 64 channels, which are two or four
    full registers at 512 bits: on such a machine the guard halves the width of every loop (the
    README's Backends section has the measured cost). So minicnn passes the host's own
    features plus "-prefer-256-bit". Numba reads them when it makes its code
    generator, at the first compile in the process, and keys its disk cache by them, so a
    cached kernel is never reused across the two settings. A user's NUMBA_CPU_NAME or
    NUMBA_CPU_FEATURES (a portable cache, say) is left alone, as is a process in which Numba
    has already compiled, whose generator is made.
    """
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    if numba.config.CPU_FEATURES is not None or numba.config.CPU_NAME is not None:
        return
    from numba.core.codegen import get_host_cpu_features

    features = get_host_cpu_features()
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


_full_width_vectors()


# --- threads -----------------------------------------------------------------------------------
def _default_threads() -> int:
    for var in ("MINICNN_NUM_THREADS", "NUMBA_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


_threads = _default_threads()


def num_threads() -> int:
    """How many threads the kernels split a batch over."""
    return _threads


def set_num_threads(n: int) -> None:
    """Use n threads for the kernels from now on (n >= 1)."""
    global _threads
    from minicnn.validation import check_int

    _threads = check_int(n, "n", minimum=1)


def chunks_for(n: int) -> int:
    """How many per-thread chunks to split n items into: one per thread, at most n."""
    return max(1, min(n, _threads))


@contextlib.contextmanager
def compute_scope():
    """The context the model's numba-backend methods run in: BLAS on one thread."""
    with blas_single_threaded():
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
