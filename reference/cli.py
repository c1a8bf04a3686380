"""``minicnn parity``: the layer-by-layer comparison with Keras, as one table.

    minicnn parity --quick                 # < 1 minute: what the test suite runs
    minicnn parity                         # + 300-step trajectory and the statistics over seeds
    minicnn parity --json parity.json      # the rows plus the environment, for the record
    minicnn parity --quick --mutant textbook-adam   # against a deliberately broken twin: fails
    minicnn parity --quick --keras-backend jax      # against Keras on JAX (or torch)
    minicnn parity --keras-backend all     # each backend in its own process, one column each

Exit status 0 when every row is within its tolerance (and, with 'all', every disagreement
between Keras's backends is a documented one), 1 otherwise. (Importing this module imports
no Keras; ``run`` does, or starts a process per backend.)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

KERAS_BACKENDS = ("tensorflow", "jax", "torch")  # reference._keras.BACKENDS, without importing
INSTALL_HINT = {
    "tensorflow": "pip install -e '.[reference]' -c reference/constraints.txt",
    "jax": "pip install -e '.[jax]' -c reference/constraints.txt",
    "torch": "pip install -e '.[torch]' -c reference/constraints.txt (PyTorch's CPU build)",
}

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
    parser.add_argument(
        "--keras-backend",
        choices=(*KERAS_BACKENDS, "all"),
        default="tensorflow",
        help="the backend Keras runs on (default tensorflow); 'all' runs each in its own "
        "process and prints one column per backend",
    )
    # internal: a child of --keras-backend all saves Keras's tensors here (.npz)
    parser.add_argument("--tensors", metavar="PATH", help=argparse.SUPPRESS)


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


def _require_installed(backends) -> None:
    missing = [
        b
        for b in backends
        if importlib.util.find_spec(b) is None  # each backend's module has its name
        or importlib.util.find_spec("keras") is None
    ]
    if missing:
        raise SystemExit(
            "minicnn parity: "
            + "; ".join(
                f"--keras-backend {b} needs it installed: {INSTALL_HINT[b]}" for b in missing
            )
        )


def _runs_here(backend: str) -> bool:
    """Keras picks its backend at its first import: this process can run `backend` only if
    Keras is not imported yet or already runs on it."""
    if "keras" not in sys.modules:
        return True
    return sys.modules["keras"].backend.backend() == backend


def run(args) -> int:
    _check(args)
    backends = KERAS_BACKENDS if args.keras_backend == "all" else (args.keras_backend,)
    _require_installed(backends)
    if len(backends) == 1 and _runs_here(backends[0]):
        os.environ["KERAS_BACKEND"] = backends[0]
        return run_here(args)
    from reference import backends as multi  # starts one process per backend

    return multi.run(args, backends)


def header_lines(args, env: dict, backend: str, data: str) -> list[str]:
    """The report's first lines: what was compared, the versions, the data, the metric."""
    from reference import report as rep
    from reference import tolerances

    lines = [
        f"minicnn parity: {args.model} model{' (quick)' if args.quick else ''}"
        + (f", against the BROKEN twin '{args.mutant}'" if args.mutant else ""),
        f"{rep.versions_line(env, backend)}, NumPy {env['numpy']}, Numba {env['numba']}; "
        f"minicnn backend(s): {', '.join(env['minicnn_backends_compared'])}; "
        f"{env['cpu_count']} CPUs",
    ]
    off = rep.version_mismatches(env, backend)
    if off:
        lines.append(
            f"NOTE: not the pinned versions the tolerances were set against "
            f"(reference/constraints.txt): {', '.join(off)}"
        )
    lines += [
        f"data: {data}",
        "max rel = max|minicnn - keras| / max|keras|; ok when max rel <= tolerance "
        "(statistics: the difference Welch's t-test would call significant at "
        f"p < {tolerances.ALPHA}); ok* = ok given a documented backend difference",
        "",
    ]
    return lines


def run_here(args) -> int:
    """The suite against the Keras backend of this process (KERAS_BACKEND)."""
    from reference import report as rep  # imports Keras: only when the command runs
    from reference import suite, tolerances
    from reference._keras import BACKEND
    from reference.sections.backend_facts import facts_lines
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
    with rep.recording() as tensors:
        report = suite.run(options)
    env = report.environment
    out = header_lines(args, env, BACKEND, report.extras["data"])
    out += rep.markdown_lines(report.rows) if args.markdown else rep.table_lines(report.rows)
    if "trajectory" in report.extras:
        out += [""] + divergence_lines(report.extras["trajectory"])
    if "statistics" in report.extras:
        out += [""] + statistics_lines(report.extras["statistics"])
    out += [""] + facts_lines(report.extras["backend_facts"], BACKEND)
    out += tolerances.footer_lines({r.known for r in report.rows if r.known}, (BACKEND,))
    bad = report.failures()
    n_known = sum(1 for r in report.rows if r.ok and r.known)
    out += [
        "",
        f"{len(report.rows)} rows against Keras on {BACKEND}, "
        f"{'all ok' if not bad else f'{len(bad)} FAIL'}"
        + (f" ({n_known} ok* by a documented backend difference)" if n_known else "")
        + f" ({env['seconds']:.0f} s)",
    ]
    print("\n".join(out))
    if args.json:
        rep.write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.tensors:
        rep.write_tensors(tensors, args.tensors)
    sys.stdout.flush()
    return 0 if report.ok else 1
