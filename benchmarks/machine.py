"""The machine a benchmark ran on, read from the machine, and its float32 GEMM peak.

Everything a reader needs to trust or redo a number: the CPU (model, vendor family and model
numbers, the Zen generation they identify, the ISA flags that matter for float32), the library
versions, the threads every framework was held to, the environment variables that change
kernels, the load average, and a large SGEMM as the roofline: once with the BLAS kernel
OpenBLAS picks for this CPU, once with the environment's override (OPENBLAS_CORETYPE), each
naming its kernel.
"""

from __future__ import annotations

import importlib.metadata
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
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "NUMBA_CACHE_DIR",
    "NUMBA_DISABLE_JIT",
    "TF_ENABLE_ONEDNN_OPTS",
    "KERAS_BACKEND",
    "XLA_FLAGS",
    "MINICNN_BACKEND",
)
# Forces OpenBLAS's kernel whatever the CPU (this environment sets Haswell on an AVX-512 CPU,
# halving the GEMM peak). Removed only for the best-kernel roofline, in its own process.
CORETYPE = "OPENBLAS_CORETYPE"
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
)
# distribution name -> how the machine line calls it (versions read without importing)
LIBRARIES = {
    "numpy": "NumPy",
    "scipy": "SciPy",
    "numba": "Numba",
    "tensorflow": "TensorFlow",
    "tensorflow-cpu": "TensorFlow",
    "keras": "Keras",
    "jax": "JAX",
    "torch": "PyTorch",
    "threadpoolctl": "threadpoolctl",
    "minicnn": "minicnn",
}
# Zen generations by AMD family and model, as Linux names them (arch/x86/kernel/cpu/amd.c,
# bsp_init_amd): (family, first model, last model, generation).
ZEN = (
    (0x17, 0x00, 0x2F, "Zen 1"),
    (0x17, 0x50, 0x5F, "Zen 1"),
    (0x17, 0x30, 0x4F, "Zen 2"),
    (0x17, 0x60, 0x7F, "Zen 2"),
    (0x17, 0x90, 0x91, "Zen 2"),
    (0x17, 0xA0, 0xAF, "Zen 2"),
    (0x19, 0x00, 0x0F, "Zen 3"),
    (0x19, 0x20, 0x5F, "Zen 3"),
    (0x19, 0x10, 0x1F, "Zen 4"),
    (0x19, 0x60, 0xAF, "Zen 4"),
    (0x1A, 0x00, 0x2F, "Zen 5"),
    (0x1A, 0x40, 0x4F, "Zen 5"),
    (0x1A, 0x60, 0x7F, "Zen 5"),
    (0x1A, 0x50, 0x5F, "Zen 6"),
    (0x1A, 0x80, 0xAF, "Zen 6"),
    (0x1A, 0xC0, 0xCF, "Zen 6"),
)

_BLAS_LIMIT = None  # the threadpoolctl limiter, kept alive so the limit stays in force


# --- the machine ---------------------------------------------------------------------------


def zen_generation(family: int | None, model: int | None) -> str | None:
    """'Zen 5' for AMD family 26 (0x1A) model 2, ...; None when the pair is not in the table."""
    for fam, lo, hi, name in ZEN:
        if family == fam and model is not None and lo <= model <= hi:
            return name
    return None


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The first processor of /proc/cpuinfo (or of the text given): vendor, model name, family,
    model, stepping, the Zen generation, clock, ISA flags, and the logical core count."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())

    def number(key):
        return int(fields[key]) if fields.get(key, "").isdigit() else None

    vendor = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(fields.get("vendor_id", ""))
    family, model = number("cpu family"), number("model")
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "vendor": vendor or fields.get("vendor_id"),
        "family": family,
        "model_number": model,
        "stepping": number("stepping"),
        "zen": zen_generation(family, model) if vendor == "AMD" else None,
        "mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": cpuinfo.count("processor\t:") or os.cpu_count(),
    }


def versions() -> dict:
    """Installed versions of Python, the computing libraries and OpenBLAS (no heavy imports)."""
    out = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    import numpy  # noqa: F401 - loads the OpenBLAS whose version is wanted
    from threadpoolctl import threadpool_info

    blas = [d for d in threadpool_info() if d.get("internal_api") == "openblas"]
    blas.sort(key=lambda d: "numpy" not in d.get("filepath", ""))  # NumPy's own first
    if blas:
        out["openblas"] = blas[0]["version"]
    return out


def machine_line(cpu: dict | None = None, vers: dict | None = None) -> str:
    """One line: CPU, family/model and Zen generation, cores, ISA, then the library versions.

    'AMD EPYC (AMD family 26 model 2, Zen 5), 2 logical cores, 2596 MHz, avx2 fma avx512f ...;
    Python 3.11.9, NumPy 2.4.6 (OpenBLAS 0.3.31), Numba 0.68.1, TensorFlow 2.21.0, ...'
    """
    cpu = cpu if cpu is not None else cpu_info()
    vers = vers if vers is not None else versions()
    ident = ""
    if cpu.get("family") is not None:
        ident = f"{cpu['vendor']} family {cpu['family']} model {cpu['model_number']}"
        ident = f" ({ident}, {cpu['zen']})" if cpu.get("zen") else f" ({ident})"
    mhz = f", {cpu['mhz']:.0f} MHz" if cpu.get("mhz") else ""
    libs = [f"Python {vers['python']}"]
    for dist, label in LIBRARIES.items():
        if dist in vers and dist not in ("threadpoolctl", "minicnn"):
            blas = vers.get("openblas") if dist == "numpy" else None
            libs.append(f"{label} {vers[dist]}" + (f" (OpenBLAS {blas})" if blas else ""))
    return (
        f"{cpu['model']}{ident}, {cpu['cores']} logical cores{mhz}, "
        f"{' '.join(cpu['isa']) or 'no AVX2'}; {', '.join(libs)}"
    )


def nominal_peak(threads: int, cpu: dict | None = None) -> dict:
    """threads x clock x FLOP/cycle: what the spec sheet promises, an assumption, not a
    measurement. Two FMA pipes of the widest vector: 64 float32 FLOP/cycle with AVX-512 (Zen 4
    splits a 512-bit FMA in two: 32), 32 with AVX2 + FMA."""
    cpu = cpu or cpu_info()
    wide = "avx512f" in cpu["isa"] and cpu.get("zen") != "Zen 4"
    per_cycle = 64 if wide else 32 if "fma" in cpu["isa"] else 16
    mhz = cpu.get("mhz")
    return {
        "flop_per_cycle_per_core": per_cycle,
        "mhz": mhz,
        "gflops": threads * mhz * 1e-3 * per_cycle if mhz else None,
        "assumption": f"{per_cycle} float32 FLOP/cycle/core at the /proc/cpuinfo clock",
    }


# --- threads ---------------------------------------------------------------------------------


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin_cpus(n: int) -> list[int]:
    """Let this process run on its first n allowed CPUs only (before any library starts its
    threads: XLA, which has no thread setting, sizes its pool from this mask). Returns them."""
    allowed = allowed_cpus()
    if n < len(allowed) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, allowed[:n])
    return allowed_cpus()


def set_threads(n: int) -> dict:
    """Hold Numba and BLAS to n threads; return what each actually got.

    Call before they run: Numba's pool size is fixed when it starts (NUMBA_NUM_THREADS). When
    that already happened (inside a test session), the actual counts are reported.
    """
    global _BLAS_LIMIT
    os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(limits=n, user_api="blas")
    got = {"requested": n, "blas": n, "numba": None}
    try:
        from minicnn.kernels import numba_config  # minicnn's kernels run on its own threads
    except ImportError:
        return got
    numba_config.set_num_threads(n)
    got["numba"] = numba_config.num_threads()
    return got


def set_tf_threads(n: int) -> dict:
    """TensorFlow's intra-op pool of n threads and inter-op pool of n (before its first op)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        pass  # TF already ran something; report what it has
    return tf_info()


def set_torch_threads(n: int) -> dict:
    """PyTorch's intra-op (OpenMP) and inter-op pools of n threads."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # only settable before the first parallel op
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def tf_onednn() -> bool | None:
    """Whether TensorFlow runs oneDNN kernels (None: unknown)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def tf_info() -> dict:
    """Whether TensorFlow (if imported) runs oneDNN kernels, and its thread pools."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return {"imported": False}
    threading = tf.config.threading  # 0 means TF's default: one thread per core
    return {
        "imported": True,
        "onednn": tf_onednn(),
        "intra_op_threads": threading.get_intra_op_parallelism_threads() or os.cpu_count(),
        "inter_op_threads": threading.get_inter_op_parallelism_threads() or os.cpu_count(),
    }


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS / OpenMP libraries (kernel, threads, version)."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def numba_info() -> dict:
    """How many threads minicnn's Numba kernels split a batch over (numba_config.run_chunks:
    serial nogil kernels on minicnn's own thread pool; no Numba threading layer)."""
    if "minicnn.kernels.numba_config" not in sys.modules:
        return {"imported": False}
    from minicnn.kernels import numba_config

    return {"imported": True, "threads": numba_config.num_threads(),
            "threading_layer": "minicnn thread pool"}


def environment() -> dict:
    """Everything above plus the relevant environment variables and the load average."""
    cpu = cpu_info()
    vers = versions()
    return {
        "machine": machine_line(cpu, vers),
        "cpu": cpu,
        "platform": platform.platform(),
        "versions": vers,
        "env": {k: os.environ.get(k) for k in RELEVANT_ENV},
        "cpus_allowed": allowed_cpus(),
        "blas": blas_info(),
        "numba": numba_info(),
        "tensorflow": tf_info(),
        "loadavg": list(os.getloadavg()),
    }


def write_json(doc: dict, path: str) -> None:
    """A benchmark's document as JSON, written atomically (folders created as needed)."""
    from minicnn.atomic import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = json.dumps(doc, indent=1, default=float) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


# --- the roofline -----------------------------------------------------------------------------

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


def gemm_peak(threads: int, n: int = 2048, repeats: int = 5, unset=(), timeout=300) -> dict:
    """GFLOP/s of an n^3 float32 GEMM (NumPy's BLAS) in a fresh process, with the environment
    variables ``unset`` removed from its environment; the kernel threadpoolctl reports."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
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
    median = times[len(times) // 2]
    blas = res["blas"][0] if res["blas"] else {}
    return {
        "n": n,
        "threads": threads,
        "repeats": repeats,
        "median_s": median,
        "gflops": 2.0 * n**3 / median / 1e9,
        "gflops_best": 2.0 * n**3 / times[0] / 1e9,
        "blas_kernel": blas.get("architecture"),
        "blas_version": blas.get("version"),
        "env_unset": [k for k in unset if k in os.environ],
    }


def roofline(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """The float32 GEMM peak on ``threads`` threads, measured twice when the environment forces
    OpenBLAS's kernel: 'best' without OPENBLAS_CORETYPE (OpenBLAS picks the kernel for this CPU)
    and 'override' as the environment sets it. ``gflops`` and ``blas_kernel`` are the faster
    of the two: the peak every "percent of peak" is taken against."""
    override = os.environ.get(CORETYPE)
    best = gemm_peak(threads, n, repeats, unset=(CORETYPE,))
    out = {"n": n, "threads": threads, "best": best, "override": None, "override_env": None}
    if override is not None:
        out["override_env"] = f"{CORETYPE}={override}"
        out["override"] = gemm_peak(threads, n, repeats)
    runs = [r for r in (best, out["override"]) if r and "error" not in r]
    if not runs:
        out["error"] = best.get("error", "no run")
        return out
    peak = max(runs, key=lambda r: r["gflops"])
    out.update(gflops=peak["gflops"], blas_kernel=peak["blas_kernel"])
    return out


def roofline_lines(roof: dict) -> list[str]:
    """The roofline as report lines: each kernel's GFLOP/s, which one the percentages use."""
    if not roof or "error" in roof:
        return [f"roofline: failed: {(roof or {}).get('error', 'not measured')[-300:]}"]
    best, over = roof["best"], roof.get("override")
    lines = [
        f"roofline: float32 GEMM {roof['n']}^3 on {roof['threads']} thread(s), NumPy + OpenBLAS "
        f"{best.get('blas_version')}, each in a fresh process; % of peak uses "
        f"{roof['gflops']:.1f} GFLOP/s ({roof['blas_kernel']} kernel)"
    ]
    if "gflops" in best:
        lines.append(
            f"  best kernel ({best['blas_kernel']}, {CORETYPE} unset): {best['gflops']:.1f} "
            f"GFLOP/s median, {best['gflops_best']:.1f} best"
        )
    if over and "gflops" in over:
        lines.append(
            f"  environment's override ({roof['override_env']}: {over['blas_kernel']} kernel): "
            f"{over['gflops']:.1f} GFLOP/s median, {over['gflops_best']:.1f} best"
        )
    elif roof.get("override_env") is None:
        lines.append(f"  (no {CORETYPE} in the environment: one kernel, measured once)")
    return lines
