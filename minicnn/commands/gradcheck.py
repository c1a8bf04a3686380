"""`minicnn gradcheck`: show that every backward pass of the seed (or deep) model is right.

Two checks, each printed per layer and tensor with its relative error and a pass mark:

1. each layer alone, on a random input of the shape it sees in the model, with the scalar
   L = sum(out * dout) for a random dout (ones would hide a transposed gradient);
2. the whole network: crossentropy loss -> every parameter and the input image, dropout on with
   the same masks on every pass, through the model's own (possibly fused) forward and backward.

Each probed entry θ_i is nudged both ways: (L(θ + h e_i) - L(θ - h e_i)) / 2h. ReLU and max-pool
are not differentiable everywhere: when a nudge moves a ReLU input across 0 or changes which
pixel wins a pooling window (a "kink"), the difference quotient is not the derivative, so that
entry is set aside and counted, not compared (CS231n's advice, made mechanical). The checker
is minicnn.gradcheck, the same one the tests use; this module prints its results.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from minicnn import architectures, config, gradcheck
from minicnn.commands.argtypes import positive_int as _positive_int
from minicnn.commands.argtypes import seed as _seed
from minicnn.layers.base import clear_session
from minicnn.random import set_random_seed

HELP = "Check every gradient of the seed/deep model against central differences."

# Step h and pass mark per dtype.
# float64: truncation O(h^2) ~ 1e-12 and rounding ~ 1e-16 / h ~ 1e-10; 1e-7 keeps 3 orders of
# margin (the project's bar, tests/tolerances.py GRADCHECK_F64).
# float32 keeps ~7 digits: the two losses (~2.3) carry rounding ~ 1e-7 each, so (L+ - L-) / 2h
# has noise ~ 2.3e-7 / h. h = 1e-2 keeps that near 1e-5 against entries of 1e-3..1e-1 (h = 1e-3
# measured 7e-2 on entries of 1e-3: noise); the price is that more nudges cross a kink and are set
# aside. Measured worst errors over 20 seeds x both models: 5e-3; 5e-2 keeps 10x margin and
# still fails a wrong gradient (a mis-scaled or misrouted one gives errors of 0.1-1).
STEP = {"float64": 1e-6, "float32": 1e-2}
THRESHOLD = {"float64": 1e-7, "float32": 5e-2}


def _image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 6, got {text!r}") from None
    if value < 6:  # the deep model's two 3x3 convs and 2x2 pool need 6x6 at least
        raise argparse.ArgumentTypeError(f"expected an integer >= 6, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=sorted(architectures.BUILDERS),
        default="seed",
        help="which architecture (default: seed)",
    )
    parser.add_argument(
        "--dtype",
        choices=sorted(STEP),
        default="float64",
        help="float64 (default: the real check) or float32 (what training "
        "uses; only 2-3 digits can agree)",
    )
    parser.add_argument(
        "--entries",
        type=_positive_int,
        default=100,
        metavar="N",
        help="probe at most N random entries per tensor (default: 100)",
    )
    parser.add_argument(
        "--batch",
        type=_positive_int,
        default=2,
        metavar="N",
        help="images in the batch (default: 2)",
    )
    parser.add_argument(
        "--size",
        type=_image_size,
        default=10,
        metavar="HW",
        help="image height and width, >= 6; the layer stack is the same at any size (default: 10)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="weights, inputs, probes (default: 0)"
    )
    parser.add_argument(
        "--backend",
        choices=(*config.BACKENDS, "auto"),
        default=None,
        help="kernels to check (default: the backend in force)",
    )


# --- the two checks (minicnn.gradcheck), as table rows -------------------------------------------
def check_each_layer(model, rng, h, max_entries, batch) -> list[tuple[str, str, dict]]:
    """Every layer alone: dL/dx and dL/d(each parameter), for L = sum(out * dout)."""
    rows = []
    shapes = [model.input_shape, *model.output_shapes()[:-1]]
    try:
        for layer, in_shape in zip(model.layers, shapes):
            # standard normal inputs: no ReLU input at exactly 0, no tied pooling window
            x = rng.standard_normal((batch, *in_shape)).astype(layer.dtype)
            label = f"{layer.name} ({type(layer).__name__})"
            for i, (name, r) in enumerate(gradcheck.layer_rows(layer, x, rng, h, max_entries)):
                rows.append((label if i == 0 else "", f"dL/d{name}", r))
    finally:
        model._set_input_grad_flags()
    return rows


def check_network(model, x, y, rng, h, max_entries) -> list[tuple[str, str, dict]]:
    """The whole model: loss -> the input and every parameter, through the model's own
    forward/backward (fused units included), dropout on with the same masks every pass."""
    rows, seen = [], set()
    types = {layer.name: type(layer).__name__ for layer in model.layers}
    for name, k, r in gradcheck.model_rows(model, x, y, rng, h, max_entries):
        label = "input" if name == "input" else f"{name} ({types[name]})"
        rows.append((label if label not in seen else "", f"dL/d{k}", r))
        seen.add(label)
    return rows


# --- output -------------------------------------------------------------------------------------
def _print_rows(rows, threshold) -> tuple[int, int, int, float]:
    """Print the table; returns (checked, failed, vacuous, worst error)."""
    wl = max(len(label) for label, _, _ in rows) + 2
    ws = max(len(str(tuple(r["shape"]))) for _, _, r in rows) + 2
    print(
        f"  {'layer':<{wl}}{'gradient':<12}{'shape':<{ws}}{'probed':>10}  {'rel error':>9}  result"
    )
    checked = failed = vacuous = 0
    worst = 0.0
    for label, what, r in rows:
        entries = f"{r['probed']}/{int(np.prod(r['shape']))}"
        if r["error"] is None:
            err, mark = "-", "not compared: every probe hit a kink"
        else:
            checked += 1
            worst = max(worst, r["error"])
            ok = r["error"] < threshold
            failed += not ok
            vacuous += r["zero"]
            err, mark = f"{r['error']:.2e}", "pass" if ok else "FAIL"
        notes = []
        if r["kinks"] and r["error"] is not None:
            notes.append(f"{r['kinks']} kink{'s' if r['kinks'] > 1 else ''} set aside")
        if r["zero"]:
            notes.append("every compared entry is 0: no evidence either way")
        note = f"  ({'; '.join(notes)})" if notes else ""
        print(
            f"  {label:<{wl}}{what:<12}{str(tuple(r['shape'])):<{ws}}{entries:>10}  {err:>9}  "
            f"{mark}{note}"
        )
    return checked, failed, vacuous, worst


def run(args) -> int:
    old_floatx, old_backend = config.floatx(), config.backend_setting()
    try:
        config.set_floatx(args.dtype)
        if args.backend is not None:
            if args.backend == "numba" and not config.numba_available():
                raise SystemExit(
                    "minicnn gradcheck: error: argument --backend: the Numba "
                    "backend is not available here; use numpy or auto"
                )
            config.set_backend(args.backend)
        # Tiny products: BLAS threads only add hand-offs (10x slower on a busy 2-core machine).
        with threadpool_limits(1):
            return _run(args)
    finally:
        config.set_floatx(old_floatx)
        config.set_backend(old_backend)


def _run(args) -> int:
    t0 = time.perf_counter()
    h, threshold = STEP[args.dtype], THRESHOLD[args.dtype]
    rng = np.random.default_rng(args.seed)
    set_random_seed(args.seed)
    shape = (args.size, args.size, 1)
    clear_session()  # layer names as in a fresh process: conv2d, dense, ...
    model = architectures.build(args.model, input_shape=shape)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    x = rng.random((args.batch, *shape)).astype(args.dtype)  # pixels in [0, 1)
    y = np.eye(10, dtype=args.dtype)[rng.integers(0, 10, args.batch)]

    print(
        f"Gradient check of the {args.model} model ({model.count_params():,} parameters at "
        f"{args.size}x{args.size}x1), {args.dtype}, backend {config.get_backend()}.\n"
        f"Input: a batch of {args.batch} random {args.size}x{args.size} images (the check is "
        f"about the layer stack; small images keep it quick). At most {args.entries} probed "
        f"entries per tensor, h = {h:g}, pass if rel error < {threshold:g}."
    )
    print(
        "How it works: backprop gives dL/dθ for every θ at once; central differences estimate "
        "each probed entry alone as (L(θ+h) - L(θ-h)) / 2h."
    )
    print(
        "They must agree: rel error = ||analytic - numeric|| / (||analytic|| + ||numeric||), "
        "0 when equal, ~1 when unrelated."
    )
    if args.dtype == "float32":
        print(
            "float32 keeps ~7 digits, so the nudge must be large to rise above rounding: more "
            "nudges cross a ReLU/max-pool kink. The float64 check is the real one."
        )
    print()
    print(
        "1. Each layer alone, L = sum(out * dout) with a random dout (ones would hide a "
        "transposed gradient):"
    )
    rows1 = check_each_layer(model, rng, h, args.entries, args.batch)
    c1, f1, v1, w1 = _print_rows(rows1, threshold)
    print()
    print(
        "2. The whole network, L = crossentropy of the softmax output (dropout on, the same "
        "masks on every pass):"
    )
    rows2 = check_network(model, x, y, rng, h, args.entries)
    c2, f2, v2, w2 = _print_rows(rows2, threshold)
    print()
    checked, failed, vacuous, worst = c1 + c2, f1 + f2, v1 + v2, max(w1, w2)
    seconds = time.perf_counter() - t0
    if failed:
        print(
            f"FAILED: {failed} of {checked} gradients disagree with central differences "
            f"(worst rel error {worst:.2e} >= {threshold:g}) [{seconds:.1f} s]"
        )
        return 1
    skipped = len(rows1) + len(rows2) - checked
    caveats = [f"{vacuous} only vacuously: all compared entries 0"] if vacuous else []
    if skipped:
        caveats.append(f"{skipped} not compared: every probe hit a kink")
    caveat = f" ({'; '.join(caveats)})" if caveats else ""
    print(
        f"All {checked} gradients pass{caveat}: worst rel error {worst:.2e} < {threshold:g} "
        f"[{seconds:.1f} s]"
    )
    return 0
