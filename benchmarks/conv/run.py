"""Check, then time, every (shape, pass, implementation): the rows of the benchmark.

For each row:
1. the implementation runs on a reduced twin of the shape (a batch of one or two, the image
   cropped if need be: channels, kernel, stride and padding kept) and is compared with minicnn's
   naive loops run in float64 on the same twin;
2. it runs at the size it is timed at (the full shape, or for the slow ones a reduced batch)
   and is compared with NumPy's im2col kernels in float64 at that size;
3. only if both agree is it timed (first call apart, warm-up excluded, median and IQR of
   repeats); a row timed on a reduced problem is scaled up by the FLOP ratio and says so.

Also here: the scaling sweeps (time vs batch and image size) and the Numba compile-time probe
(first calls in a fresh process, cold and warm cache), and ``run_benchmark``, which puts it all
into the document ``--json`` writes.

Pass outputs, computed in float64 by the oracle (``reference``):
    forward           out     (N, Ho, Wo, F)    conv(x, w) + b
    backward_input    dx      (N, H, W, C)      from dout (N, Ho, Wo, F)
    backward_weights  dw      (KH, KW, C, F)    from dout and x
    fused_forward     pooled  (N, Hp, Wp, F)    maxpool2x2(relu(conv(x, w) + b))
    fused_backward    dw, db                    gradients of sum(pooled * dpool)
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

from benchmarks import machine
from benchmarks.conv.problems import POOL, TINY, Problem, crop_inputs, make_inputs, reduced

SCHEMA = "minicnn.bench.conv/2"
# Float32 results against a float64 oracle, relative to the oracle's largest magnitude. The
# longest sums are the weight gradient's, N*Ho*Wo = 128*26*26 ~ 87k terms: pairwise/blocked
# float32 summation errs by ~1e-6 of that, a plain running sum in one float32 register up to
# ~1e-5. 1e-4 passes any correct float32 kernel and catches every indexing bug (those err by O(1)).
CHECK_RTOL = 1e-4
# The twin checked against the naive loops: at most this many FLOPs (they run at Python speed);
# with --quick the seed layer's twin is one sample (half the Python time of two).
CHECK_FLOPS, QUICK_CHECK_FLOPS = 1e6, 4e5
# Pauses so the spinning threads of one framework (OpenMP, OpenBLAS, TF's pool) have gone idle
# before the next one is timed: OpenBLAS's workers spin ~2^28 cycles (~0.1 s) after a call.
SETTLE_S, SWITCH_S = 0.02, 0.15  # between two rows of one implementation; before another's
# The scaling sweeps: seed-layer geometry (3x3, 1 -> 32, 'valid'); best minicnn kernel vs these.
BATCHES, IMAGES, IMAGE_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256), (14, 28, 56, 112), 32
SCALING_PASSES = ("forward", "backward_input", "backward_weights")
SCALING_ANCHORS = ("tf", "torch", "jax")


# ---- the check ----------------------------------------------------------------------------


def reference(pass_name: str, p: Problem, inputs: dict, t) -> dict:
    """The outputs of pass_name on inputs, computed in float64 by backend table t
    (minicnn.kernels.dispatch.table('naive') or table('numpy'))."""
    d = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    x, w, b, s, pads = d["x"], d["w"], d["b"], p.strides, p.pads
    if pass_name == "forward":
        return {"out": t.conv2d_forward(x, w, b, s, pads)}
    if pass_name == "backward_input":
        return {"dx": t.conv2d_backward_input(d["dout"], w, x.shape, s, pads)}
    if pass_name == "backward_weights":
        return {"dw": t.conv2d_backward_weights(d["dout"], x, (p.KH, p.KW), s, pads)}
    z = t.conv2d_forward(x, w, b, s, pads)  # (N, Ho, Wo, F)
    a = np.maximum(z, 0.0)
    pooled, argmax = t.maxpool2d_forward(a, POOL, POOL, (0, 0, 0, 0))
    if pass_name == "fused_forward":
        return {"pooled": pooled}
    if pass_name == "fused_backward":
        da = t.maxpool2d_backward(d["dpool"], argmax, a.shape, POOL, POOL, (0, 0, 0, 0))
        dz = da * (z > 0)  # relu'(z); 0 at z == 0
        return {
            "dw": t.conv2d_backward_weights(dz, x, (p.KH, p.KW), s, pads),
            "db": dz.sum(axis=(0, 1, 2)),
        }
    raise ValueError(f"Unknown pass {pass_name!r}.")


def compare(actual: dict, expected: dict, rtol: float = CHECK_RTOL) -> dict:
    """Max abs and rel error of every expected tensor; ok when all are within rtol.

    The relative error is taken against each tensor's largest magnitude, so entries near zero
    do not inflate it. A missing key, wrong shape or non-finite value fails the check.
    """
    worst_abs, worst_rel, problems = 0.0, 0.0, []
    for key, exp in expected.items():
        if key not in actual:
            problems.append(f"{key}: missing")
            continue
        act = np.asarray(actual[key], np.float64)
        if act.shape != exp.shape:
            problems.append(f"{key}: shape {act.shape} != {exp.shape}")
            continue
        if not np.isfinite(act).all():
            problems.append(f"{key}: non-finite values")
            continue
        err = np.abs(act - exp).max(initial=0.0)
        rel = err / max(np.abs(exp).max(initial=0.0), 1e-30)
        worst_abs, worst_rel = max(worst_abs, float(err)), max(worst_rel, float(rel))
        if rel > rtol:
            problems.append(f"{key}: max rel err {rel:.2e} > {rtol:.0e}")
    ok = not problems
    return {"ok": ok, "max_abs_err": worst_abs, "max_rel_err": worst_rel, "rtol": rtol,
            "problems": problems}


# ---- the timing ---------------------------------------------------------------------------


def measure(fn, *, first_s: float, min_repeats=5, max_repeats=50, budget_s=1.0, warmup=2,
            target_repeat_s=2e-3) -> dict:
    """Milliseconds per call of fn(): median, quartiles, min and max of repeats after warm-up.

    first_s is the first call's duration, made by the caller (it carries JIT compilation,
    tracing, cache loads and page faults of fresh buffers) and reported apart. A repeat runs fn
    enough times to last target_repeat_s, so calls of microseconds are not the timer's cost;
    repeats stop after max_repeats, or once min_repeats are done and budget_s is spent.
    """
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    number = max(1, min(1000, int(np.ceil(target_repeat_s / one))))
    samples = [one] if number == 1 else []  # a call long enough to be its own repeat
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one repeat is noise, not the kernel's cost
    try:
        start = time.perf_counter()
        while len(samples) < max_repeats:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t0) / number)
            if len(samples) >= min_repeats and time.perf_counter() - start >= budget_s:
                break
    finally:
        if was_enabled:
            gc.enable()
    s = np.asarray(samples) * 1e3
    q25, med, q75 = np.percentile(s, [25, 50, 75])
    return {"median_ms": float(med), "q25_ms": float(q25), "q75_ms": float(q75),
            "min_ms": float(s.min()), "max_ms": float(s.max()), "repeats": len(samples),
            "number": number, "first_call_ms": first_s * 1e3}


def scale_timing(t: dict, factor: float) -> dict:
    """Every time multiplied by factor (a timing taken on less work, scaled up)."""
    return {k: v * factor if k.endswith("_ms") else v for k, v in t.items()}


class Runner:
    """Checks and times rows; holds the references (once per shape and pass) and first calls."""

    def __init__(self, timing: dict, slow_timing: dict, log=print, check_flops=CHECK_FLOPS):
        self.timing = timing  # measure() kwargs for ordinary implementations
        self.slow_timing = slow_timing  # ... for the ones timed on a reduced problem
        self.log, self.check_flops = log, check_flops
        self.first_calls: dict[tuple[str, str], dict] = {}
        self._refs: dict = {}

    def _ref(self, pass_name: str, p: Problem, inputs: dict, oracle: str) -> dict:
        key = (p, pass_name, oracle)
        if key not in self._refs:
            from minicnn.kernels.dispatch import table

            self._refs[key] = reference(pass_name, p, inputs, table(oracle))
        return self._refs[key]

    def _twin(self, p: Problem, inputs: dict):
        twin = reduced(p, self.check_flops)
        return twin, crop_inputs(inputs, twin) if twin != p else inputs

    def prepare(self, p: Problem, inputs: dict, passes) -> None:
        """Compute the references of every pass up front: NumPy's BLAS threads then have time
        to go idle before anything is timed, instead of spinning into the next timing."""
        twin, twin_in = self._twin(p, inputs)
        for pass_name in passes:
            self._ref(pass_name, twin, twin_in, "naive")
            if twin != p:
                self._ref(pass_name, p, inputs, "numpy")

    def forget(self):
        """Drop the references of the shape just finished (the large ones hold 100s of MB)."""
        self._refs.clear()

    def row(self, p: Problem, pass_name: str, impl, inputs: dict) -> dict:
        """Check and time one implementation on one pass of one shape; never raises."""
        row = {"shape": p.name, "pass": pass_name, "impl": impl.name, "family": impl.family,
               "status": None, "checks": {}, "timing": None, "median_ms": None, "gflops": None,
               "pct_roofline": None, "scaled_from": None, "threads": impl.thread_count(),
               "note": impl.pass_notes.get(pass_name, "")}
        try:
            self._check_and_time(p, pass_name, impl, inputs, row)
        except NotImplementedError as exc:
            row.update(status="unsupported", error=str(exc) or "not implemented")
        except Exception as exc:  # noqa: BLE001 - a crashing implementation is a reported row
            row.update(status="error", error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc(limit=4))
        return row

    def _call(self, build, p, inputs):
        """(run, its outputs, the first call's seconds): build, then call once."""
        run = build(p, inputs)
        t0 = time.perf_counter()
        out = run()
        return run, out, time.perf_counter() - t0

    def _check_and_time(self, p, pass_name, impl, inputs, row):
        build = impl.passes[pass_name]
        twin, twin_in = self._twin(p, inputs)
        run, out, first = self._call(build, twin, twin_in)
        self.first_calls.setdefault((impl.name, pass_name), {
            "impl": impl.name, "pass": pass_name, "shape": twin.name, "ms": first * 1e3})
        check = compare(out, self._ref(pass_name, twin, twin_in, "naive"))
        row["checks"]["twin_vs_naive"] = dict(check, problem=twin.label())
        # the size it is timed at: the full shape unless the implementation is too slow for it
        timed = p
        if impl.time_on_check_twin:
            timed = twin
        elif impl.max_timing_flops is not None and p.flops() > impl.max_timing_flops:
            timed = reduced(p, impl.max_timing_flops, min_n=1)
        row["checks"]["timed_vs_numpy64"] = None  # when timed == twin, the check above is it
        if timed != twin:
            timed_in = inputs if timed == p else crop_inputs(inputs, timed)
            run, out, first = self._call(build, timed, timed_in)
            check = compare(out, self._ref(pass_name, timed, timed_in, "numpy"))
            row["checks"]["timed_vs_numpy64"] = dict(check, problem=timed.label())
        del out
        if not all(c["ok"] for c in row["checks"].values() if c is not None):
            row["status"] = "wrong"  # reported, never timed
            return
        time.sleep(SETTLE_S)
        t = measure(run, first_s=first, **(self.timing if timed == p else self.slow_timing))
        if timed != p:
            factor = p.flops() / timed.flops()
            row["scaled_from"] = {"label": timed.label(), "factor": factor,
                                  "median_ms_unscaled": t["median_ms"]}
            t = scale_timing(t, factor)
        row.update(status="ok", timing=t, median_ms=t["median_ms"],
                   gflops=p.flops() / t["median_ms"] / 1e6)

    def rows(self, problems, impls, passes, seed=0, label="") -> list[dict]:
        """Every row, implementation by implementation within a shape (so one framework's
        thread pool is not woken between every two rows of another's), returned in problem,
        pass, implementation order; implementations lacking a pass are skipped."""
        out = []
        for p in problems:
            inputs = make_inputs(p, seed)
            self.prepare(p, inputs, [n for n in passes if any(n in i.passes for i in impls)])
            for impl in impls:
                time.sleep(SWITCH_S)
                for pass_name in passes:
                    if pass_name not in impl.passes:
                        continue
                    r = self.row(p, pass_name, impl, inputs)
                    out.append(r)
                    t = r["timing"]
                    self.log(f"  {label}{p.name:<12} {pass_name:<17} {impl.name:<14} "
                             f"{r['status']:<11} "
                             + (f"{t['median_ms']:10.3f} ms" if t else r.get("error", "")[:80]))
            self.forget()
        shape_ix = {p.name: k for k, p in enumerate(problems)}
        pass_ix = {n: k for k, n in enumerate(passes)}
        impl_ix = {i.name: k for k, i in enumerate(impls)}
        return sorted(out, key=lambda r: (shape_ix[r["shape"]], pass_ix[r["pass"]],
                                          impl_ix[r["impl"]]))


# ---- scaling: time vs batch size and image size -------------------------------------------


def best_minicnn(rows: list[dict], passes, prefer_shape: str = "seed-valid") -> dict[str, str]:
    """For each pass, the fastest correct minicnn implementation timed at full size: on
    prefer_shape when it was run, else by summed time over the shapes; NumPy by default."""
    best = {}
    for pass_name in passes:
        cands = [r for r in rows if r["pass"] == pass_name and r["family"] == "minicnn"
                 and r["status"] == "ok" and not r["scaled_from"]]
        on_shape = [r for r in cands if r["shape"] == prefer_shape]
        totals: dict[str, float] = {}
        for r in on_shape or cands:
            totals[r["impl"]] = totals.get(r["impl"], 0.0) + r["median_ms"]
        best[pass_name] = min(totals, key=totals.get) if totals else "numpy"
    return best


def run_scaling(rows, impls, runner: Runner) -> dict:
    """Rows of the two sweeps (the main rows' fields plus N, H, flops), best minicnn kernel per
    pass against each anchor. Ideal scaling is a line of slope 1 on log-log axes; fixed costs
    (thread start-up, Python dispatch) bend it flat at the small end."""
    best = best_minicnn(rows, SCALING_PASSES)
    by_name = {i.name: i for i in impls if not i.unavailable}
    sweeps = {
        "batch": [Problem(f"seed-N{n}", n, 28, 28, 1, 32) for n in BATCHES],
        "image": [Problem(f"seed-{h}px-N{IMAGE_BATCH}", IMAGE_BATCH, h, h, 1, 32) for h in IMAGES],
    }
    out = {"best": best, "image_batch": IMAGE_BATCH}
    for sweep, problems in sweeps.items():
        out[sweep] = []
        for pass_name in SCALING_PASSES:
            chosen = [by_name[n] for n in (best[pass_name], *SCALING_ANCHORS) if n in by_name]
            for r in runner.rows(problems, chosen, [pass_name], label="scaling "):
                p = next(q for q in problems if q.name == r["shape"])
                out[sweep].append(dict(r, N=p.N, H=p.H, flops=p.flops()))
    return out


# ---- Numba compile time: first calls in a fresh process -----------------------------------


def jit_probe(threads: int) -> dict:
    """First-call milliseconds of every Numba pass on a tiny problem, in this (fresh) process."""
    t0 = time.perf_counter()
    from benchmarks.conv.impls import minicnn_impls

    machine.set_threads(threads)
    impls = [i for i in minicnn_impls(lambda: threads, lambda: threads) if i.jit]
    import_ms = (time.perf_counter() - t0) * 1e3
    p, calls, errors = TINY[0], {}, {}
    inputs = make_inputs(p)
    for impl in impls:
        if impl.unavailable:
            errors[impl.name] = impl.unavailable
        for pass_name, build in impl.passes.items():
            try:
                t0 = time.perf_counter()
                build(p, inputs)()
                calls[f"{impl.name}/{pass_name}"] = (time.perf_counter() - t0) * 1e3
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                errors[f"{impl.name}/{pass_name}"] = f"{type(exc).__name__}: {exc}"
    return {"import_ms": import_ms, "calls": calls, "errors": errors,
            "cache_dir": os.environ.get("NUMBA_CACHE_DIR")}


def measure_jit(threads: int, timeout: float = 900) -> dict:
    """{'cold': probe, 'warm': probe}: ``python -m benchmarks.conv --jit-probe`` twice, with an
    empty NUMBA_CACHE_DIR (everything compiles) and with the real cache (compiled code loads)."""
    out = {}
    cmd = [sys.executable, "-m", "benchmarks.conv", "--jit-probe", "--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="minicnn-numba-cold-") as cold_dir:
        for mode in ("cold", "warm"):
            env = dict(os.environ, **({"NUMBA_CACHE_DIR": cold_dir} if mode == "cold" else {}))
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                out[mode] = {"error": f"timed out after {timeout:.0f} s"}
                continue
            if proc.returncode != 0:
                out[mode] = {"error": proc.stderr.strip()[-2000:]}
                continue
            out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            out[mode]["process_wall_s"] = time.perf_counter() - t0
    return out


# ---- the whole run ------------------------------------------------------------------------


def impl_summary(impl) -> dict:
    return {
        "name": impl.name,
        "family": impl.family,
        "note": impl.note,
        "threads": None if impl.unavailable else impl.thread_count(),
        "passes": sorted(impl.passes),
        "pass_notes": impl.pass_notes,
        "timed_on_reduced_problem_above_flops": impl.max_timing_flops,
        "timed_on_check_twin": impl.time_on_check_twin,
        "unavailable": impl.unavailable,
    }


def run_benchmark(problems, impls, passes, *, threads: int, quick=False, roofline=True,
                  scaling=False, jit=False, budget=None, min_repeats=None, seed=0,
                  log=print) -> dict:
    """Run everything and return the document --json writes.

    impls is a list of impls.Impl (a test may add its own); threads must already be set
    (machine.set_threads) before any framework ran.
    """
    from benchmarks.conv.impls import tf_call_overhead_us

    started, load_start = time.time(), os.getloadavg()
    roof = None
    if roofline:
        log(f"roofline: float32 GEMM 2048^3 on {threads} thread(s), fresh processes ...")
        roof = machine.roofline(threads, repeats=3 if quick else 7)
        log("\n".join(machine.roofline_lines(roof)))
        if threads != 1 and not quick:
            roof["one_thread"] = machine.gemm_peak(1, repeats=3, unset=(machine.CORETYPE,))
    budget = budget if budget is not None else (0.2 if quick else 1.0)
    min_repeats = min_repeats if min_repeats is not None else (3 if quick else 7)
    timing = {"min_repeats": min_repeats, "max_repeats": 200, "budget_s": budget, "warmup": 2}
    slow = {"min_repeats": 2 if quick else 3, "max_repeats": 5, "budget_s": 0.0, "warmup": 0}
    runner = Runner(timing, slow, log=log, check_flops=QUICK_CHECK_FLOPS if quick else CHECK_FLOPS)
    available = [i for i in impls if not i.unavailable]
    log(f"checking and timing {len(problems)} shape(s) x {len(passes)} pass(es) ...")
    rows = runner.rows(problems, available, passes, seed=seed)
    sweeps = None
    if scaling:
        log("scaling: time vs batch size and image size ...")
        sc_runner = Runner(dict(timing, budget_s=min(budget, 0.3)), slow, log=log,
                           check_flops=runner.check_flops)
        sweeps = run_scaling(rows, available, sc_runner)
    if roof is not None and "gflops" in roof and not quick:
        # other work on the machine only ever slows the GEMM: the better of two is the peak
        log("roofline (best kernel) again, at the end of the run ...")
        again = machine.gemm_peak(threads, repeats=7, unset=(machine.CORETYPE,))
        roof["best"]["start_gflops"], roof["best"]["end_gflops"] = (
            roof["best"]["gflops"], again.get("gflops"))
        if again.get("gflops", 0) > roof["gflops"]:
            roof["best"].update({k: again[k] for k in ("median_s", "gflops", "gflops_best")})
            roof.update(gflops=again["gflops"], blas_kernel=again["blas_kernel"])
    if roof is not None and "gflops" in roof:
        roof["nominal_peak"] = machine.nominal_peak(threads)
        for r in rows + (sweeps["batch"] + sweeps["image"] if sweeps else []):
            if r["gflops"] is not None:
                r["pct_roofline"] = 100.0 * r["gflops"] / roof["gflops"]
    jit_doc = None
    if jit and any(i.jit for i in available):
        log("Numba compile time: cold and warm cache, each in a fresh process ...")
        jit_doc = measure_jit(threads)
    env = machine.environment()
    env["threads"] = {"requested": threads, **{i.name: i.thread_count() for i in available}}
    env["tf_call_overhead_us"] = tf_call_overhead_us()
    env["loadavg_start"], env["loadavg_end"] = list(load_start), list(os.getloadavg())
    return {
        "schema": SCHEMA,
        "created_unix": started,
        "command": [os.path.basename(sys.executable), "-m", "benchmarks.conv", *sys.argv[1:]],
        "config": {"quick": quick, "threads": threads, "passes": list(passes),
                   "shapes": [p.name for p in problems], "timing": timing, "slow_timing": slow,
                   "seed": seed},
        "roofline": roof,
        "shapes": [p.as_dict() for p in problems],
        "impls": [impl_summary(i) for i in impls],
        "unavailable": [{"impl": i.name, "reason": i.unavailable} for i in impls if i.unavailable],
        "results": rows,
        "first_calls": list(runner.first_calls.values()),
        "scaling": sweeps,
        "jit": jit_doc,
        "environment": env,
        "duration_s": time.time() - started,
    }
