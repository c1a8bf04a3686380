"""Numba compile time: the first calls of every JIT kernel in a fresh process.

Run as a subprocess twice: 'cold' with an empty NUMBA_CACHE_DIR (everything compiles) and 'warm'
with the real cache (compiled code is loaded). Prints one JSON object: the import time and, per
'impl/pass', the first call's milliseconds on a tiny problem. The first parallel call also pays
for starting the thread pool, in both modes.

    python -m benchmarks.conv_jit --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _probe(threads: int) -> dict:
    t0 = time.perf_counter()
    from benchmarks import machine
    from benchmarks.conv_impls import backend_impls, fused_impls
    from benchmarks.conv_problems import PASSES, TINY, make_inputs

    machine.set_threads(threads)
    impls = backend_impls("numba", "minicnn.kernels.numba_ops", threads, "", jit=True)
    impls += fused_impls(threads)
    import_ms = (time.perf_counter() - t0) * 1e3
    p = TINY[0]
    inputs = make_inputs(p)
    calls, errors = {}, {}
    for impl in impls:
        if impl.unavailable:
            errors[impl.name] = impl.unavailable
            continue
        for pass_name in PASSES:
            if pass_name not in impl.passes:
                continue
            key = f"{impl.name}/{pass_name}"
            try:
                t0 = time.perf_counter()
                impl.passes[pass_name](p, inputs)()
                calls[key] = (time.perf_counter() - t0) * 1e3
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                errors[key] = f"{type(exc).__name__}: {exc}"
    return {
        "import_ms": import_ms,
        "calls": calls,
        "errors": errors,
        "cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
    }


def measure_jit(threads: int, timeout: float = 900) -> dict:
    """{'cold': probe, 'warm': probe}, each from its own fresh process."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="minicnn-numba-cold-") as cold_dir:
        for mode in ("cold", "warm"):
            env = dict(os.environ)
            if mode == "cold":
                env["NUMBA_CACHE_DIR"] = cold_dir
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.conv_jit", "--threads", str(threads)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                out[mode] = {"error": f"timed out after {timeout:.0f} s"}
                continue
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                out[mode] = {"error": proc.stderr.strip()[-2000:]}
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["process_wall_s"] = wall
            out[mode] = res
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    print(json.dumps(_probe(args.threads)))


if __name__ == "__main__":
    main()
