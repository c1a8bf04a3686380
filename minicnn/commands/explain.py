"""`minicnn explain`: a few real digits through a model, forward then back, as text or as a page.

Forward, layer by layer: the output shape and what the layer computed. Then the loss. Then
backward, layer by layer in reverse: the shape and norm of dL/d(output) arriving, dL/dW and dL/db
filled on the way, and dL/d(input) handed down: the chain rule, one link per line. It ends by
checking one weight's gradient against (L(w + h) - L(w - h)) / 2h.

With ``--html PAGE`` it writes the same walk for one digit as one self-contained web page of
pictures instead (minicnn/explain_html.py): every map, gradient and filter, and a gradient check
per layer.

The model is built in float64 (so the checks agree to ~9 digits), in training mode (dropout
on, as in a training step), with the layers called one by one rather than through the model's
fused units, so every intermediate array is there (minicnn/walkthrough.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from minicnn import architectures, atomic, config, datasets
from minicnn.commands.argtypes import positive_int as _positive_int
from minicnn.commands.argtypes import seed as _seed
from minicnn.gradcheck import freeze_dropout
from minicnn.layers import Conv2D
from minicnn.layers.base import clear_session
from minicnn.random import set_random_seed
from minicnn.trace import format_trace, trace_step
from minicnn.utils import to_categorical
from minicnn.walkthrough import (
    H,
    check_entry,
    check_largest,
    float64_copy,
    largest_entry,
    norm,
    walk,
)

HELP = (
    "Walk digits through a model forward and back: shapes and norms as text, or one digit's "
    "maps and gradients as a web page (--html)."
)

INPUT_SHAPE, NUM_CLASSES = (28, 28, 1), 10
DEFAULT_BATCH = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--html",
        metavar="PAGE",
        help="write one digit's walk as a self-contained web page to PAGE (e.g. explain.html) "
        "instead of printing text",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="instead: run one training step through the model's own units on the backend "
        "in force and print which kernel ran for each layer and pass",
    )
    parser.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"text: digits in the batch (default: {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--digit",
        type=_seed,
        default=None,
        metavar="N",
        help="--html: which training image to show (default: 0, the first)",
    )
    parser.add_argument(
        "--model",
        metavar="seed|deep|PATH",
        default="seed",
        help="a freshly initialised 'seed' or 'deep' model, or a model saved by "
        "`minicnn train --save PATH` (default: seed)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="initial weights and dropout masks (default: 0)"
    )
    parser.add_argument(
        "--backend",
        choices=(*config.BACKENDS, "auto"),
        default=None,
        help="kernels to run (default: the backend in force; for --html, numpy when that is "
        "'auto': one digit is quicker done than Numba's kernels are loaded)",
    )
    parser.add_argument(
        "--dataset",
        choices=datasets.NAMES,
        default="mnist",
        help="which images (default: mnist)",
    )
    parser.add_argument(
        "--data", metavar="PATH", help="mnist.npz or IDX folder (default: as `minicnn train`)"
    )


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2, before any work."""


# --- arguments, checked before anything is computed ---------------------------------------------
def check_writable(path) -> Path:
    """The page's path, if a file can be created there; UsageError saying why not otherwise."""
    try:
        return atomic.check_writable(path, "argument --html:")
    except OSError as e:
        raise UsageError(str(e)) from e


def check_arguments(args) -> None:
    if args.trace and args.html is not None:
        raise UsageError("argument --trace: not with --html (the trace is text)")
    if args.html is None and args.digit is not None:
        raise UsageError("argument --digit: only with --html (the text walk shows the first "
                         "--batch N digits)")
    if args.html is not None and args.batch is not None:
        raise UsageError("argument --batch: not with --html (the page shows one digit; "
                         "choose it with --digit N)")
    if args.html is not None:
        check_writable(args.html)
    if args.model not in architectures.BUILDERS and not Path(args.model).is_file():
        raise UsageError(f"argument --model: expected seed, deep or a saved model file; "
                         f"no such file: {args.model}")


def resolve_model(spec: str, seed: int):
    """(compiled float64 model, title, where) for 'seed', 'deep' or a saved model's path.

    Raises UsageError for a file that is not a minicnn model on 28x28x1 images.
    """
    if spec in architectures.BUILDERS:
        clear_session()
        set_random_seed(seed)
        model = architectures.build(spec)
        where = "freshly initialised (Glorot uniform kernels, zero biases)"
        name = spec
    else:
        from minicnn import load_model as load_saved

        try:
            saved = load_saved(spec)
        except ValueError as e:
            raise UsageError(f"argument --model: {' '.join(str(e).split())}") from e
        if tuple(saved.input_shape or ()) != INPUT_SHAPE:
            raise UsageError(f"argument --model: {spec} holds a model on inputs of shape "
                             f"{saved.input_shape}; explain needs 28x28x1 digits")
        name = architectures.architecture_name(saved)
        clear_session()
        set_random_seed(seed)
        try:
            model = float64_copy(saved)
        except (TypeError, ValueError) as e:  # a layer whose config does not rebuild it
            raise UsageError(f"argument --model: {spec}: cannot rebuild the model in float64 "
                             f"({e})") from e
        where = f"weights from {spec}"
    title = {"seed": "Seed model", "deep": "Deep model"}.get(name, "Model")
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    return model, title, where


def _load_data(name, path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load(name, path)
    for w in caught:
        print(f"Warning: {' '.join(str(w.message).split())}", file=sys.stderr, flush=True)
    return ds


def _images(images) -> np.ndarray:
    """uint8 (N, 28, 28) -> float64 (N, 28, 28, 1), pixels / 255."""
    return images.reshape(len(images), *INPUT_SHAPE).astype(np.float64) / 255


# --- the command --------------------------------------------------------------------------------
def run(args) -> int:
    old_floatx, old_backend = config.floatx(), config.backend_setting()
    try:
        check_arguments(args)
        config.set_backend(_backend(args))
        config.set_floatx("float64")
        with threadpool_limits(1):  # small products: extra BLAS threads only add hand-offs
            return _run(args)
    except UsageError as e:
        print(f"minicnn explain: error: {e}", file=sys.stderr)
        return 2
    finally:
        config.set_floatx(old_floatx)
        config.set_backend(old_backend)


def _backend(args) -> str:
    """--backend, else the one in force; a page with 'auto' in force runs on NumPy: one image
    is a few milliseconds of work, less than loading Numba's compiled kernels (about a second)
    or compiling them on a first run (about 45 s)."""
    if args.backend is not None:
        if args.backend == "numba" and not config.numba_available():
            raise UsageError("argument --backend: the Numba backend is not available here; "
                             "use numpy or auto")
        return args.backend
    if args.html is not None and config.backend_setting() == "auto":
        return "numpy"
    return config.backend_setting()


def _run(args) -> int:
    model, title, where = resolve_model(args.model, args.seed)
    try:
        ds = _load_data(args.dataset, args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"minicnn explain: error: {e}", file=sys.stderr)
        return 1
    if args.trace:  # before freezing dropout: injected masks would unfuse the fused units
        return _trace(args, ds, model, title)
    freeze_dropout(model.layers, np.random.default_rng(args.seed))  # same masks for the check
    if args.html is not None:
        return _page(args, ds, model, title, where)
    return _text(args, ds, model, title, where)


def _trace(args, ds, model, title) -> int:
    n = args.batch or DEFAULT_BATCH
    x = _images(ds.x_train[:n]).astype(model.layers[0].dtype)
    y = to_categorical(ds.y_train[:n], NUM_CLASSES, dtype=model.layers[0].dtype)
    model.build(x.shape[1:])
    print(f"{title}, {model.count_params():,} parameters; {n} digits from {ds.describe()}.")
    for line in format_trace(trace_step(model, x, y), config.get_backend()):
        print(line)
    fused = [layer.name for unit in model._units() for layer in getattr(unit, "layers", [])]
    if fused:
        print(f"The layers of a fused unit ({', '.join(fused)}) do not run their own forward or "
              f"backward: minicnn.fusion.ConvReluPool computes what they would, in one pass.")
    return 0


def _text(args, ds, model, title, where) -> int:
    n = args.batch or DEFAULT_BATCH
    x, labels = _images(ds.x_train[:n]), ds.y_train[:n]
    y = to_categorical(labels, NUM_CLASSES, dtype="float64")
    layers = model.layers

    print(f"{len(x)} digits from {ds.describe()}: labels {' '.join(map(str, labels))}")
    print(
        f"{title}, {model.count_params():,} parameters, {where}; float64; training mode "
        f"(dropout on)."
    )
    w = walk(model, x, y)
    print()
    print("Forward: each layer turns its input into its output (and keeps what backward needs).")
    print(f"  {'input':<16}{str(x.shape):<18}pixels / 255, in [0, 1]")
    for step in w.steps:
        print(f"  {step.layer.name:<16}{str(step.out.shape):<18}{step.note}")
    true_p = w.p[np.arange(len(w.p)), labels]
    print()
    print(f"Loss: crossentropy = mean over the {len(w.p)} digits of -log p[true class] = "
          f"{w.loss:.4f}")
    print(
        f"  p[true class] = {', '.join(f'{v:.3f}' for v in true_p)}; a guess at random gives "
        f"-log(1/10) = {np.log(10):.4f}"
    )
    print()
    print("Backward: the chain rule, last layer first. Each layer gets dL/d(its output), fills")
    print("dL/dW and dL/db from it, and hands dL/d(its input) to the layer before it, whose")
    print("dL/dout it is. Norms are Frobenius norms; '% are 0' counts exact zeros.")
    _row("", "gradient", "shape", "norm", "")
    _row("loss + softmax", f"dL/dz = (p - y) / N, N = {len(w.p)}", w.dloss.shape, norm(w.dloss))
    for step in reversed(w.steps):
        for row in step.rows:
            _row(row.label, row.what, row.shape, row.norm, row.note)

    # One number checked by hand: the centre weight of the first filter of the first layer
    # with weights (any entry of its kernel when that is not a 3x3 conv).
    i = next((i for i, layer in enumerate(layers) if "kernel" in layer.params), None)
    if i is None:
        return 0
    kernel = layers[i].params["kernel"]
    centre = isinstance(layers[i], Conv2D) and kernel.shape[:2] == (3, 3)
    index = (1, 1, 0, 0) if centre else largest_entry(w.steps[i].grads["kernel"])
    c = check_entry(model, w.steps, y, i, "kernel", index)
    at = ",".join(map(str, c.index))
    print()
    print(f"Check one number: dL/dW[{at}] of {c.layer} by backprop = {c.analytic:.10f}")
    print(
        f"  by central differences (L(w + h) - L(w - h)) / 2h, h = {H:g}: {c.numeric:.10f}  "
        f"(rel error {c.error:.1e}; `minicnn gradcheck` checks them all)"
    )
    if c.kink:
        print("  (the two nudges crossed a ReLU kink or a pooling tie, so the quotient is not "
              "the derivative here)")
    print(
        "An optimizer step would now move every W and b against its gradient (Adam: "
        "w -= alpha * m / (sqrt(v) + eps))."
    )
    return 0


def _row(label, what, shape, size, note=""):
    """One line of the backward table; size is the norm, already formatted."""
    shape = shape if isinstance(shape, str) else str(tuple(shape))
    print(f"  {label:<16}{what:<52}{shape:<17}{size:>7}  {note}".rstrip())


def _page(args, ds, model, title, where) -> int:
    from minicnn import explain_html
    from minicnn.saving import atomic_write

    digit = 0 if args.digit is None else args.digit
    if digit >= len(ds.x_train):
        raise UsageError(f"argument --digit: {digit} is out of range: {ds.name} has "
                         f"{len(ds.x_train):,} training images (0 to {len(ds.x_train) - 1:,})")
    x, label = _images(ds.x_train[digit: digit + 1]), int(ds.y_train[digit])
    y = to_categorical(np.array([label]), NUM_CLASSES, dtype="float64")
    w = walk(model, x, y)
    checks = []
    for i, step in enumerate(w.steps):  # one number per layer: its largest gradient
        if "kernel" in step.grads:
            checks.append(check_largest(model, w.steps, y, i, "kernel"))
        elif step.dx is not None:
            checks.append(check_largest(model, w.steps, y, i, "x"))
        else:
            checks.append(None)
    info = explain_html.PageInfo(
        title=title,
        where=where,
        parameters=model.count_params(),
        data=ds.describe(),
        dataset=ds.name,
        digit=digit,
        label=label,
        class_names=_class_names(ds.name),
        backend=config.get_backend(),
        seed=args.seed,
    )
    html = explain_html.page(w, checks, info)
    path = Path(args.html)
    atomic_write(path, lambda f: f.write(html.encode("utf-8")))
    size = os.path.getsize(path)
    print(f"Wrote {path} ({size / 1e6:.1f} MB): {title.lower()} on training image {digit} of "
          f"{ds.name} (label {label}), {len(w.steps)} layers forward and back.")
    return 0


def _class_names(name: str) -> tuple[str, ...]:
    if name == "fashion_mnist":
        return datasets.fashion_mnist.CLASS_NAMES
    return tuple(str(k) for k in range(NUM_CLASSES))
