"""``minicnn parity``: the layer-by-layer comparison with Keras, as one table.

    minicnn parity --quick                 # < 1 minute: what the test suite runs
    minicnn parity                         # + 300-step trajectory and the statistics over seeds
    minicnn parity --json parity.json      # the rows plus the environment, for the record
    minicnn parity --quick --mutant textbook-adam   # against a deliberately broken twin: fails

Exit status 0 when every row is within its tolerance, 1 otherwise. (Importing this module does
not import TensorFlow; ``run`` does.)
"""

from __future__ import annotations

import argparse
import sys

HELP = "compare minicnn with Keras layer by layer, against stated tolerances"

MUTANT_NAMES = (
    "transposed-kernel",
    "flipped-kernel",
    "same-pad-top-left",
    "unscaled-dropout",
    "textbook-adam",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="structure, forward, gradients, layer zoo, optimizer and a "
        "20-step trajectory only (under a minute)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the environment")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--model",
        choices=("seed", "deep"),
        default="seed",
        help="the seed tutorial's model or its deeper variant (default: seed)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="seeds per library in the statistical section (default 3; 0 skips it)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=6,
        help="epochs per statistical run (default 6, the seed protocol)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "naive", "numpy", "numba", "all"),
        default="auto",
        help="minicnn kernels to compare (default: auto, the "
        "fastest available; 'all' compares each in turn)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="trajectory steps (default 20 with --quick, else 300)",
    )
    parser.add_argument(
        "--mutant",
        choices=MUTANT_NAMES,
        default=None,
        help="compare against a deliberately broken Keras twin (must fail)",
    )


def _check(args) -> None:
    if args.seeds < 0 or args.seeds == 1:
        raise SystemExit(
            f"minicnn parity: --seeds must be 0 (skip) or >= 2 for a t-test. "
            f"Received: --seeds {args.seeds}"
        )
    if args.epochs < 1:
        raise SystemExit(f"minicnn parity: --epochs must be >= 1. Received: {args.epochs}")
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"minicnn parity: --steps must be >= 1. Received: {args.steps}")


def run(args) -> int:
    _check(args)
    from reference import report as rep  # imports TensorFlow: only when the command runs
    from reference import suite, tolerances
    from reference.sections.statistics import statistics_lines
    from reference.sections.trajectory import divergence_lines

    options = suite.Options(
        model=args.model,
        quick=args.quick,
        backends=(args.backend,),
        seeds=args.seeds,
        epochs=args.epochs,
        traj_steps=args.steps,
        mutant=args.mutant,
    )
    report = suite.run(options)
    env = report.environment
    out = [
        f"minicnn parity: {args.model} model{' (quick)' if args.quick else ''}"
        + (f", against the BROKEN twin '{args.mutant}'" if args.mutant else ""),
        f"Keras {env['keras']} on TensorFlow {env['tensorflow']} (KERAS_BACKEND="
        f"{env['keras_backend']}), NumPy {env['numpy']}, Numba {env['numba']}; minicnn "
        f"backend(s): {', '.join(env['minicnn_backends_compared'])}; {env['cpu_count']} CPUs",
        f"data: {report.extras['data']}",
        "max rel = max|minicnn - keras| / max|keras|; ok when max rel <= tolerance "
        "(statistics: the difference Welch's t-test would call significant at "
        f"p < {tolerances.ALPHA})",
        "",
    ]
    out += rep.markdown_lines(report.rows) if args.markdown else rep.table_lines(report.rows)
    if "trajectory" in report.extras:
        out += [""] + divergence_lines(report.extras["trajectory"])
    if "statistics" in report.extras:
        out += [""] + statistics_lines(report.extras["statistics"])
    out += ["", "Tolerances (reference/tolerances.py):"]
    out += [
        f"  {name:<23} {value:<6.0e} {reason}" for name, value, reason in tolerances.described()
    ]
    bad = report.failures()
    out += [
        "",
        f"{len(report.rows)} rows, {'all ok' if not bad else f'{len(bad)} FAIL'} "
        f"({env['seconds']:.0f} s)",
    ]
    print("\n".join(out))
    if args.json:
        rep.write_json(report, args.json)
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0 if report.ok else 1
