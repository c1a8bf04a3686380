"""Conv kernel benchmark: every implementation side by side, against the machine's GEMM peak.

    python -m benchmarks.conv                       # full run
    python -m benchmarks.conv --quick               # tiny shapes + the seed layer
    python -m benchmarks.conv --json out.json --plot out.png --threads 2

Times minicnn's naive loops, NumPy (im2col + BLAS, and one GEMM per kernel tap), its Numba
kernels and the fused conv+bias+relu+maxpool unit, scipy.signal, TensorFlow, PyTorch (eager)
and JAX (XLA) when installed, on forward, backward-input, backward-weights and the fused passes.
Every implementation is checked against minicnn's naive loops before it is timed; a wrong one
is reported as wrong and not timed. Exits 1 when any implementation was wrong or crashed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys

from benchmarks.conv import problems as cp
from benchmarks.conv.problems import PASSES


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.conv",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny shapes + the seed layer, few repeats, no scaling or cold JIT run")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for every implementation (default 2)")
    ap.add_argument("--shapes", help="comma-separated shape names or groups (tiny, quick, full); "
                    f"shapes: {', '.join(cp.ALL)}")
    ap.add_argument("--passes", help=f"comma-separated subset of {', '.join(PASSES)}")
    ap.add_argument("--impls", help="comma-separated name patterns (fnmatch), e.g. 'numba*,tf'")
    for lib in ("tf", "scipy", "torch", "jax"):
        ap.add_argument(f"--no-{lib}", action="store_true", help=f"leave {lib} out")
    ap.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                    help="time vs batch and image size (default: on, off with --quick)")
    ap.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                    help="cold/warm Numba compile in fresh processes (default: on; off: --quick)")
    ap.add_argument("--roofline", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the float32 GEMM peak (default: on)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per row (default 1.0, 0.2 with --quick)")
    ap.add_argument("--min-repeats", type=int, default=None,
                    help="repeats always taken per row (default 7, 3 with --quick)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    ap.add_argument("--plot", metavar="PATH",
                    help="write a PNG of GFLOP/s per shape (and PATH_scaling.png if scaling)")
    ap.add_argument("--jit-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"argument --threads: expected a positive int, received {args.threads}")
    return args


def select_problems(spec: str | None, quick: bool) -> list:
    if not spec:
        return list(cp.QUICK if quick else cp.FULL)
    groups = {"tiny": cp.TINY, "quick": cp.QUICK, "full": cp.FULL}
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name not in groups and name not in cp.ALL:
            raise SystemExit(f"Invalid value for argument --shapes. Expected names from "
                             f"{sorted(cp.ALL)} or {sorted(groups)}. Received: {name!r}")
        out += [p for p in groups.get(name) or [cp.ALL[name]] if p not in out]
    return out


def select_passes(spec: str | None) -> list:
    out = [s.strip() for s in (spec or ",".join(PASSES)).split(",") if s.strip()]
    bad = [p for p in out if p not in PASSES]
    if bad:
        raise SystemExit(f"Invalid value for argument --passes. Expected names from "
                         f"{list(PASSES)}. Received: {bad}")
    return out


def filter_impls(impls, spec: str | None):
    pats = [s.strip() for s in (spec or "*").split(",") if s.strip()]
    return [i for i in impls if any(fnmatch.fnmatchcase(i.name, pat) for pat in pats)]


def scaling_plot_path(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}_scaling{ext or '.png'}"


def main(argv=None) -> int:
    args = parse_args(argv)
    # Numba fixes its pool size when it starts and TF when it runs its first op: set both
    # before anything imports them; XLA sizes its pool from the CPUs this process may use.
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    from benchmarks import machine

    machine.pin_cpus(args.threads)
    if args.jit_probe:
        from benchmarks.conv.run import jit_probe

        print(json.dumps(jit_probe(args.threads)))
        return 0
    from benchmarks.conv.impls import all_impls
    from benchmarks.conv.report import plot_results, plot_scaling, print_report
    from benchmarks.conv.run import run_benchmark

    problems = select_problems(args.shapes, args.quick)
    passes = select_passes(args.passes)
    machine.set_threads(args.threads)
    impls = filter_impls(all_impls(args.threads, tensorflow=not args.no_tf, scipy=not args.no_scipy,
                                   torch=not args.no_torch, jax=not args.no_jax), args.impls)
    doc = run_benchmark(
        problems, impls, passes, threads=args.threads, quick=args.quick,
        roofline=args.roofline,
        scaling=args.scaling if args.scaling is not None else not args.quick,
        jit=args.jit if args.jit is not None else not args.quick,
        budget=args.budget, min_repeats=args.min_repeats, seed=args.seed,
    )
    print_report(doc)
    if args.json:
        machine.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot_results(doc, args.plot)
        print(f"wrote {args.plot}")
        if doc.get("scaling"):
            plot_scaling(doc, scaling_plot_path(args.plot))
            print(f"wrote {scaling_plot_path(args.plot)}")
    bad = [r for r in doc["results"] if r["status"] in ("wrong", "error")]
    if bad:
        print(f"{len(bad)} row(s) wrong or failed: "
              + ", ".join(f"{r['impl']}/{r['pass']}@{r['shape']}" for r in bad[:8]),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
