"""Check, then time, every (shape, pass, implementation): the rows of the benchmark.

For each row:
1. the implementation runs on a reduced twin of the shape (a batch of one or two, the image
   cropped if need be: channels, kernel, stride and padding kept) and is compared with minicnn's
   naive loops run in float64 on the same twin;
2. it runs at the size it is timed at (the full shape, or for the slow ones a reduced batch)
   and is compared with NumPy's im2col kernels in float64 at that size;
3. only if both agree is it timed (warm-up excluded, median and IQR of repeats); a row timed
   on a reduced problem is scaled up by the FLOP ratio and says so.
"""

from __future__ import annotations

import time
import traceback

from benchmarks import conv_check
from benchmarks.conv_problems import Problem, crop_inputs, make_inputs, reduced
from benchmarks.timing import measure

# The twin checked against the naive loops: at most this many FLOPs (~0.3-0.5 s of Python).
CHECK_FLOPS = 1e6
# --quick: the seed layer's twin is then one sample (half the Python time of two).
QUICK_CHECK_FLOPS = 4e5
# Pauses so the spinning threads of one framework (OpenMP, OpenBLAS, TF's pool) have gone idle
# before the next one is timed: OpenBLAS's workers spin ~2^28 cycles (~0.1 s) after a call.
SETTLE_S = 0.02  # between two rows of one implementation
SWITCH_S = 0.15  # before another implementation's rows


class Runner:
    """Holds the references (computed once per shape and pass) and the first-call log."""

    def __init__(
        self,
        timing: dict,
        slow_timing: dict,
        roofline_gflops: float | None = None,
        log=print,
        check_flops: float = CHECK_FLOPS,
    ):
        self.check_flops = check_flops
        self.timing = timing  # measure() kwargs for ordinary implementations
        self.slow_timing = slow_timing  # ... for the ones timed on a reduced problem
        self.roofline = roofline_gflops
        self.log = log
        self.first_calls: dict[tuple[str, str], dict] = {}
        self._refs: dict = {}

    def _ref(self, pass_name: str, p: Problem, inputs: dict, oracle: str) -> dict:
        key = (p, pass_name, oracle)
        if key not in self._refs:
            from minicnn.kernels import naive, numpy_ops

            mod = naive if oracle == "naive" else numpy_ops
            self._refs[key] = conv_check.reference(pass_name, p, inputs, mod)
        return self._refs[key]

    def prepare(self, p: Problem, inputs: dict, passes) -> None:
        """Compute the references of every pass up front: NumPy's BLAS threads then have time
        to go idle before anything is timed, instead of spinning into the next timing."""
        twin = reduced(p, self.check_flops)
        twin_in = crop_inputs(inputs, twin) if twin != p else inputs
        for pass_name in passes:
            self._ref(pass_name, twin, twin_in, "naive")
            if twin != p:
                self._ref(pass_name, p, inputs, "numpy")

    def forget(self):
        """Drop the references of the shape just finished (the large ones hold 100s of MB)."""
        self._refs.clear()

    def _timed_call(self, run):
        t0 = time.perf_counter()
        out = run()
        return out, time.perf_counter() - t0

    def row(self, p: Problem, pass_name: str, impl, inputs: dict) -> dict:
        """Check and time one implementation on one pass of one shape; never raises."""
        row = {
            "shape": p.name,
            "pass": pass_name,
            "impl": impl.name,
            "family": impl.family,
            "status": None,
            "checks": {},
            "timing": None,
            "median_ms": None,
            "gflops": None,
            "pct_roofline": None,
            "scaled_from": None,
            "threads": impl.thread_count(),
            "note": impl.pass_notes.get(pass_name, ""),
        }
        try:
            self._check_and_time(p, pass_name, impl, inputs, row)
        except NotImplementedError as exc:
            row.update(status="unsupported", error=str(exc) or "not implemented")
        except Exception as exc:  # noqa: BLE001 - a crashing implementation is a reported row
            row.update(
                status="error",
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(limit=4),
            )
        return row

    def _check_and_time(self, p, pass_name, impl, inputs, row):
        build = impl.passes[pass_name]
        twin = reduced(p, self.check_flops)
        twin_in = crop_inputs(inputs, twin) if twin != p else inputs
        run = build(twin, twin_in)
        out, dt = self._timed_call(run)
        self.first_calls.setdefault(
            (impl.name, pass_name),
            {"impl": impl.name, "pass": pass_name, "shape": twin.name, "ms": dt * 1e3},
        )
        row["checks"]["twin_vs_naive"] = dict(
            conv_check.compare(out, self._ref(pass_name, twin, twin_in, "naive")),
            problem=twin.label(),
        )
        # the size it is timed at: the full shape unless the implementation is too slow for it
        timed = p
        if impl.time_on_check_twin:
            timed = twin
        elif impl.max_timing_flops is not None and p.flops() > impl.max_timing_flops:
            timed = reduced(p, impl.max_timing_flops, min_n=1)
        if timed == twin:
            run_t, first = run, dt
            row["checks"]["timed_vs_numpy64"] = None  # the twin check above is this check
        else:
            timed_in = inputs if timed == p else crop_inputs(inputs, timed)
            run_t = build(timed, timed_in)
            out, first = self._timed_call(run_t)
            row["checks"]["timed_vs_numpy64"] = dict(
                conv_check.compare(out, self._ref(pass_name, timed, timed_in, "numpy")),
                problem=timed.label(),
            )
            del out
        if not all(c["ok"] for c in row["checks"].values() if c is not None):
            row["status"] = "wrong"  # reported, never timed
            return
        kw = self.timing if timed == p else self.slow_timing
        time.sleep(SETTLE_S)
        t = measure(run_t, first_call_done=first, **kw)
        if timed != p:
            factor = p.flops() / timed.flops()
            row["scaled_from"] = {
                "label": timed.label(),
                "factor": factor,
                "median_ms_unscaled": t.median_s * 1e3,
            }
            t = t.scaled(factor)
        row["status"] = "ok"
        row["timing"] = t.as_ms()
        row["median_ms"] = t.median_s * 1e3
        row["gflops"] = p.flops() / t.median_s / 1e9
        if self.roofline:
            row["pct_roofline"] = 100.0 * row["gflops"] / self.roofline


def run_rows(problems, impls, passes, runner: Runner, seed: int = 0) -> list[dict]:
    """Every row, returned shape by shape, pass by pass, in registry order; implementations
    lacking a pass are skipped.

    They are run implementation by implementation within a shape, so that one framework's
    thread pool is not woken between every two rows of another's.
    """
    rows = []
    for p in problems:
        inputs = make_inputs(p, seed)
        runner.prepare(
            p, inputs, [n for n in passes if any(n in i.passes for i in impls if not i.unavailable)]
        )
        for impl in impls:
            if impl.unavailable:
                continue
            time.sleep(SWITCH_S)
            for pass_name in passes:
                if pass_name not in impl.passes:
                    continue
                r = runner.row(p, pass_name, impl, inputs)
                rows.append(r)
                t = r["timing"]
                runner.log(
                    f"  {p.name:<12} {pass_name:<17} {impl.name:<14} {r['status']:<11} "
                    + (f"{t['median_ms']:10.3f} ms" if t else r.get("error", "")[:80])
                )
        runner.forget()
    shape_ix = {p.name: i for i, p in enumerate(problems)}
    pass_ix = {n: i for i, n in enumerate(passes)}
    impl_ix = {i.name: k for k, i in enumerate(impls)}
    rows.sort(key=lambda r: (shape_ix[r["shape"]], pass_ix[r["pass"]], impl_ix[r["impl"]]))
    return rows
