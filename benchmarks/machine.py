"""The machine a benchmark ran on, its thread settings, and its practical float32 peak.

Everything a reader needs to trust or redo a number: the CPU, the library versions, the thread
count every framework was held to, the environment variables that change kernels, the load
average (other work on the machine), and a large SGEMM as the roofline.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

# Environment variables that change which kernels run or how many threads they get.
RELEVANT_ENV = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "NUMBA_CACHE_DIR",
    "NUMBA_DISABLE_JIT",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "MINICNN_BACKEND",
)
# OpenBLAS's core-type overrides: set on some processors for old OpenBLAS builds; they slow a
# current numpy, so the roofline (and only the roofline, in its own process) runs without them.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_BLAS_LIMIT = None  # the threadpoolctl limiter, kept alive so the limit stays in force


def cpu_info() -> dict:
    """Model name, logical cores, MHz and the SIMD flags that matter for float32 GEMM."""
    info = {
        "model": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "mhz": None,
        "simd": [],
    }
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
        elif key == "flags" and not info["simd"]:
            flags = set(value.split())
            info["simd"] = [
                f
                for f in (
                    "sse4_2",
                    "avx",
                    "avx2",
                    "fma",
                    "avx512f",
                    "avx512_vnni",
                    "avx512_bf16",
                    "amx_tile",
                )
                if f in flags
            ]
    return info


def set_threads(n: int, tensorflow: bool = False) -> dict:
    """Hold Numba, BLAS (and TensorFlow) to n threads; return what each actually got.

    Call before any of them runs: Numba's pool size is fixed when it starts
    (NUMBA_NUM_THREADS) and TensorFlow refuses new settings once it has executed an op. When
    that already happened (e.g. inside a test session), the actual counts are reported.
    """
    global _BLAS_LIMIT
    os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    got = {"requested": n}
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(limits=n, user_api="blas")
    got["blas"] = n
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        got["numba"] = numba.get_num_threads()
    except ImportError:
        got["numba"] = None
    if tensorflow:
        got.update(set_tf_threads(n))
    return got


def set_tf_threads(n: int) -> dict:
    """Intra-op pool of n threads and one inter-op thread (one op at a time, as timed here)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already ran something; report what it has
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    # 0 means TF's default: one thread per core
    return {
        "tensorflow_intra_op": intra or os.cpu_count(),
        "tensorflow_inter_op": inter or os.cpu_count(),
    }


def versions() -> dict:
    """Versions of Python and of every library that computes something here."""
    out = {"python": platform.python_version()}
    for mod in ("numpy", "scipy", "numba", "tensorflow", "threadpoolctl", "minicnn"):
        m = sys.modules.get(mod)
        if m is None and mod != "tensorflow":  # importing TF only to print a version costs 5 s
            try:
                m = __import__(mod)
            except ImportError:
                m = None
        out[mod] = getattr(m, "__version__", None) if m is not None else None
    return out


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS / OpenMP libraries (kernel, threads, version)."""
    from threadpoolctl import threadpool_info

    keep = (
        "user_api",
        "internal_api",
        "prefix",
        "version",
        "num_threads",
        "architecture",
        "threading_layer",
    )
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def tf_info() -> dict:
    """Whether TensorFlow (if imported) runs oneDNN kernels, and its thread pools."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return {"imported": False}
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    return {
        "imported": True,
        "onednn": onednn,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def numba_info() -> dict:
    """Numba's thread count and threading layer (known once a parallel kernel has run)."""
    if "numba" not in sys.modules:
        return {"imported": False}
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel ran yet
        layer = None
    return {
        "imported": True,
        "threads": numba.get_num_threads(),
        "threading_layer": layer,
        "max_threads": numba.config.NUMBA_NUM_THREADS,
    }


def environment() -> dict:
    """Everything above plus the relevant environment variables and the load average."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": cpu_info(),
        "platform": platform.platform(),
        "versions": versions(),
        "env": {k: os.environ.get(k) for k in RELEVANT_ENV},
        "blas": blas_info(),
        "numba": numba_info(),
        "tensorflow": tf_info(),
        "loadavg": load,
    }


_GEMM_SCRIPT = r"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
n, threads, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
with threadpool_limits(limits=threads, user_api="blas"):
    a @ b  # warm-up: thread start, page faults of the output
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    info = [d for d in threadpool_info() if d.get("user_api") == "blas"]
times.sort()
print(json.dumps({"times_s": times, "blas": info}))
"""


def gemm_roofline(threads: int, n: int = 2048, repeats: int = 5, timeout: float = 300) -> dict:
    """GFLOP/s of an n^3 float32 GEMM (NumPy's BLAS) in a fresh process: the practical peak.

    Run in a subprocess so that this process's thread pools and allocations do not disturb it,
    and so that OpenBLAS's core-type overrides can be removed for it alone (see
    OPENBLAS_OVERRIDES). Returns the median and best GFLOP/s and the kernel BLAS reported.
    """
    env = dict(os.environ)
    unset = [k for k in OPENBLAS_OVERRIDES if env.pop(k, None) is not None]
    proc = subprocess.run(
        [sys.executable, "-c", _GEMM_SCRIPT, str(n), str(threads), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:], "n": n, "threads": threads}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    times = res["times_s"]
    flops = 2.0 * n**3
    median = times[len(times) // 2]
    blas = res["blas"][0] if res["blas"] else {}
    return {
        "n": n,
        "threads": threads,
        "repeats": repeats,
        "median_s": median,
        "gflops": flops / median / 1e9,
        "gflops_best": flops / times[0] / 1e9,
        "blas_kernel": blas.get("architecture"),
        "blas_version": blas.get("version"),
        "blas_num_threads": blas.get("num_threads"),
        "env_unset": unset,
    }


def nominal_peak(threads: int, cpu: dict | None = None, flop_per_cycle: int = 32) -> dict:
    """threads x clock x 32 float32 FLOP/cycle (two 256-bit FMA pipes, or AVX-512 split in two
    as on AMD Zen 4): what the spec sheet promises, an assumption, not a measurement."""
    cpu = cpu or cpu_info()
    mhz = cpu.get("mhz")
    return {
        "flop_per_cycle_per_core": flop_per_cycle,
        "mhz": mhz,
        "gflops": None if not mhz else threads * mhz * 1e-3 * flop_per_cycle,
        "assumption": "32 float32 FLOP/cycle/core at the /proc/cpuinfo clock",
    }
