"""Conv kernel benchmark: every implementation side by side, against the machine's GEMM peak.

    python -m benchmarks.conv                       # full run (~10 min on 2 cores)
    python -m benchmarks.conv --quick               # tiny shapes + the seed layer, < 1 min
    python -m benchmarks.conv --json out.json --plot out.png --threads 2

Times minicnn's naive loops, NumPy (im2col + BLAS, and one GEMM per kernel tap), every Numba
variant that exists (and the fused conv+bias+relu+maxpool kernels), scipy.signal, and
TensorFlow, on forward, backward-input, backward-weights and the fused passes. Every
implementation is checked against minicnn's naive loops before it is timed; a wrong one is
reported as wrong and not timed. Exits 1 when any implementation was wrong or crashed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import tempfile
import time

SCHEMA = "minicnn.bench.conv/1"


def parse_args(argv=None):
    from benchmarks.conv_problems import ALL, PASSES

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.conv", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes + the seed layer, few repeats, no scaling or cold JIT run",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads for Numba, BLAS, scipy.fft and TensorFlow (default 2)",
    )
    ap.add_argument(
        "--shapes",
        help=f"comma-separated shape names or groups (tiny, quick, full); shapes: {', '.join(ALL)}",
    )
    ap.add_argument("--passes", help=f"comma-separated subset of {', '.join(PASSES)}")
    ap.add_argument("--impls", help="comma-separated name patterns (fnmatch), e.g. 'numba*,tf'")
    ap.add_argument("--no-tf", action="store_true", help="leave TensorFlow out")
    ap.add_argument("--no-scipy", action="store_true", help="leave scipy.signal out")
    ap.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time vs batch and image size (default: on, off with --quick)",
    )
    ap.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cold/warm Numba compile in fresh processes (default: on, off with --quick)",
    )
    ap.add_argument(
        "--roofline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the float32 GEMM peak (default: on)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of repeats per row (default 1.0, 0.2 with --quick)",
    )
    ap.add_argument(
        "--min-repeats",
        type=int,
        default=None,
        help="repeats always taken per row (default 7, 3 with --quick)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    ap.add_argument(
        "--plot",
        metavar="PATH",
        help="write a PNG of GFLOP/s per shape (and PATH_scaling.png if scaling)",
    )
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"argument --threads: expected a positive int, received {args.threads}")
    return args


def select_problems(spec: str | None, quick: bool):
    from benchmarks import conv_problems as cp

    if not spec:
        return list(cp.QUICK if quick else cp.FULL)
    groups = {"tiny": cp.TINY, "quick": cp.QUICK, "full": cp.FULL}
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name in groups:
            out += [p for p in groups[name] if p not in out]
        elif name in cp.ALL:
            out.append(cp.ALL[name])
        else:
            raise SystemExit(
                f"Invalid value for argument --shapes. Expected names from "
                f"{sorted(cp.ALL)} or {sorted(groups)}. Received: {name!r}"
            )
    return out


def select_passes(spec: str | None):
    from benchmarks.conv_problems import PASSES

    if not spec:
        return list(PASSES)
    out = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [p for p in out if p not in PASSES]
    if bad:
        raise SystemExit(
            f"Invalid value for argument --passes. Expected names from "
            f"{list(PASSES)}. Received: {bad}"
        )
    return out


def filter_impls(impls, spec: str | None):
    if not spec:
        return impls
    pats = [s.strip() for s in spec.split(",") if s.strip()]
    return [i for i in impls if any(fnmatch.fnmatchcase(i.name, pat) for pat in pats)]


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


def run_benchmark(
    problems,
    impls,
    passes,
    *,
    threads: int,
    quick: bool = False,
    roofline: bool = True,
    scaling: bool = False,
    jit: bool = False,
    budget: float | None = None,
    min_repeats: int | None = None,
    seed: int = 0,
    log=print,
) -> dict:
    """Run everything and return the document that --json writes (see the module docstring).

    impls is a list of conv_impls.Impl (a test may add its own); threads must already be set
    (machine.set_threads) before any framework ran.
    """
    from benchmarks import machine
    from benchmarks.conv_impls import tf_call_overhead_us
    from benchmarks.conv_run import CHECK_FLOPS, QUICK_CHECK_FLOPS, Runner, run_rows

    started = time.time()
    load_start = os.getloadavg()
    roof = None
    if roofline:
        log(f"roofline: float32 GEMM 2048^3 on {threads} thread(s) in a fresh process ...")
        roof = machine.gemm_roofline(threads, n=2048, repeats=3 if quick else 7)
        if "error" in roof:
            log(f"  roofline failed: {roof['error'][-300:]}")
        else:
            log(f"  {roof['gflops']:.1f} GFLOP/s (BLAS kernel {roof['blas_kernel']})")
        if threads != 1 and not quick:
            roof["one_thread"] = machine.gemm_roofline(1, n=2048, repeats=3)
    budget = budget if budget is not None else (0.2 if quick else 1.0)
    min_repeats = min_repeats if min_repeats is not None else (3 if quick else 7)
    timing = {"min_repeats": min_repeats, "max_repeats": 200, "budget_s": budget, "warmup": 2}
    slow = {"min_repeats": 2 if quick else 3, "max_repeats": 5, "budget_s": 0.0, "warmup": 0}
    check_flops = QUICK_CHECK_FLOPS if quick else CHECK_FLOPS
    runner = Runner(
        timing, slow, roof.get("gflops") if roof else None, log=log, check_flops=check_flops
    )
    log(f"checking and timing {len(problems)} shape(s) x {len(passes)} pass(es) ...")
    rows = run_rows(problems, impls, passes, runner, seed=seed)
    if roof is not None and "error" not in roof and not quick:
        # other work on the machine only ever slows the GEMM: the better of two is the peak
        log("roofline again, at the end of the run ...")
        again = machine.gemm_roofline(threads, n=2048, repeats=7)
        roof["start_gflops"], roof["end_gflops"] = roof["gflops"], again.get("gflops")
        if again.get("gflops", 0) > roof["gflops"]:
            roof.update({k: again[k] for k in ("median_s", "gflops", "gflops_best")})
        for r in rows:
            if r["gflops"] is not None:
                r["pct_roofline"] = 100.0 * r["gflops"] / roof["gflops"]
    if roof is not None and "error" not in roof:
        cpu = machine.cpu_info()
        roof["nominal_peak"] = machine.nominal_peak(threads, cpu)
    doc = {
        "schema": SCHEMA,
        "created_unix": started,
        "command": [os.path.basename(sys.executable), "-m", "benchmarks.conv", *sys.argv[1:]],
        "config": {
            "quick": quick,
            "threads": threads,
            "passes": list(passes),
            "shapes": [p.name for p in problems],
            "timing": timing,
            "slow_timing": slow,
            "seed": seed,
        },
        "roofline": roof,
        "shapes": [p.as_dict() for p in problems],
        "impls": [impl_summary(i) for i in impls],
        "unavailable": [{"impl": i.name, "reason": i.unavailable} for i in impls if i.unavailable],
        "results": rows,
        "first_calls": list(runner.first_calls.values()),
        "scaling": None,
        "jit": None,
    }
    if scaling:
        from benchmarks.conv_scaling import run_scaling

        log("scaling: time vs batch size and image size ...")
        sc_timing = dict(timing, budget_s=min(budget, 0.3))
        sc_runner = Runner(sc_timing, slow, runner.roofline, log=log, check_flops=check_flops)
        doc["scaling"] = run_scaling(rows, impls, sc_runner)
    if jit and any(i.jit and not i.unavailable for i in impls):
        from benchmarks.conv_jit import measure_jit

        log("Numba compile time: cold and warm cache, each in a fresh process ...")
        doc["jit"] = measure_jit(threads)
    env = machine.environment()
    env["threads"] = {
        "requested": threads,
        **{i.name: i.thread_count() for i in impls if not i.unavailable},
    }
    env["tf_call_overhead_us"] = tf_call_overhead_us()
    env["loadavg_start"], env["loadavg_end"] = list(load_start), list(os.getloadavg())
    doc["environment"] = env
    doc["duration_s"] = time.time() - started
    return doc


def write_json(doc: dict, path: str) -> None:
    """Atomic write: a temp file in the same folder, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, default=float)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def scaling_plot_path(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}_scaling{ext or '.png'}"


def print_report(doc: dict, out=print) -> None:
    from benchmarks import conv_report as rep

    env = doc["environment"]
    cpu = env["cpu"]
    out("")
    out(
        f"machine: {cpu['model']}, {cpu['cores']} cores, SIMD {' '.join(cpu['simd'])}; "
        f"load average at start {env['loadavg_start'][0]:.2f}, end {env['loadavg_end'][0]:.2f}"
    )
    v = env["versions"]
    out("versions: " + ", ".join(f"{k} {v[k]}" for k in v if v[k]))
    nb, tf = env["numba"], env["tensorflow"]
    out(
        f"threads: requested {doc['config']['threads']}; BLAS {doc['config']['threads']} "
        f"(threadpoolctl); Numba {nb.get('threads')} ({nb.get('threading_layer')} layer); "
        + (
            f"TensorFlow intra-op {tf.get('intra_op_threads')}, inter-op "
            f"{tf.get('inter_op_threads')}, oneDNN {tf.get('onednn')}; "
            if tf.get("imported")
            else ""
        )
        + "naive and scipy-corr2d 1"
    )
    if env.get("tf_call_overhead_us") is not None:
        out(
            f"TensorFlow: a trivial tf.function call costs {env['tf_call_overhead_us']:.0f} us "
            "(included in every tf time)"
        )
    out(rep.shapes_legend(doc))
    out(rep.impls_legend(doc))
    out("")
    out(rep.results_table(doc))
    out("")
    out(rep.first_call_table(doc))
    if doc.get("scaling"):
        out("")
        out(rep.scaling_table(doc["scaling"]))
    out("")
    out(
        "Timing is noisy on a shared 2-core machine: compare rows measured side by side in one run."
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    # Numba fixes its pool size when it starts and TF when it runs its first op: set both
    # before anything imports them.
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    from benchmarks import machine
    from benchmarks.conv_impls import default_registry

    problems = select_problems(args.shapes, args.quick)
    passes = select_passes(args.passes)
    machine.set_threads(args.threads)

    impls = filter_impls(
        default_registry(args.threads, tensorflow=not args.no_tf, scipy=not args.no_scipy),
        args.impls,
    )
    scaling = args.scaling if args.scaling is not None else not args.quick
    jit = args.jit if args.jit is not None else not args.quick
    doc = run_benchmark(
        problems,
        impls,
        passes,
        threads=args.threads,
        quick=args.quick,
        roofline=args.roofline,
        scaling=scaling,
        jit=jit,
        budget=args.budget,
        min_repeats=args.min_repeats,
        seed=args.seed,
    )
    print_report(doc)
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        from benchmarks.conv_plot import plot_results, plot_scaling

        plot_results(doc, args.plot)
        print(f"wrote {args.plot}")
        if doc.get("scaling"):
            plot_scaling(doc, scaling_plot_path(args.plot))
            print(f"wrote {scaling_plot_path(args.plot)}")
    bad = [r for r in doc["results"] if r["status"] in ("wrong", "error")]
    if bad:
        print(
            f"{len(bad)} row(s) wrong or failed: "
            + ", ".join(f"{r['impl']}/{r['pass']}@{r['shape']}" for r in bad[:8]),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
