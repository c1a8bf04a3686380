"""`minicnn explain`: one small batch of real digits through the seed model, forward then back.

Forward, layer by layer: the output shape and what the layer computed. Then the loss. Then
backward, layer by layer in reverse: the shape and norm of dL/d(output) arriving, dL/dW and dL/db
filled on the way, and dL/d(input) handed down: the chain rule, one link per line. It ends by
checking one weight's gradient against (L(w + h) - L(w - h)) / 2h.

The model is built in float64 (so the final check agrees to ~9 digits), in training mode (dropout
on, as in a training step), with the layers called one by one rather than through the model's
fused units, so every intermediate array is there to print.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from minicnn import config, datasets, models
from minicnn.commands.argtypes import positive_int as _positive_int
from minicnn.commands.argtypes import seed as _seed
from minicnn.gradcheck import freeze_dropout, rel_error
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.layers.base import clear_session
from minicnn.random import set_random_seed
from minicnn.utils import to_categorical

HELP = "Walk 4 digits through the seed model: shapes forward, gradient shapes and norms back."

H = 1e-6  # float64 central differences (see minicnn/gradcheck.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        type=_positive_int,
        default=4,
        metavar="N",
        help="digits in the batch (default: 4)",
    )
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="use the weights of a model saved by `minicnn train --save PATH` "
        "(default: a freshly initialised seed model)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="initial weights and dropout masks (default: 0)"
    )
    parser.add_argument(
        "--data", metavar="PATH", help="mnist.npz or IDX folder (default: as `minicnn train`)"
    )


# --- what each layer does, in one line ----------------------------------------------------------
def _percent_zero(a) -> str:
    return f"{100 * np.count_nonzero(a == 0) / a.size:.0f}% are 0"


def forward_note(layer, x, out) -> str:
    """One line saying what `layer` computed from x to out."""
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel_size
        c, f = x.shape[-1], layer.filters
        n = kh * kw * c
        act = layer.activation.name
        tail = f", then {act} ({_percent_zero(out)})" if act == "relu" else f", then {act}"
        return (
            f"conv {kh}x{kw}, {f} filters: each output pixel = {n} weights . {n} pixels + "
            f"bias{tail}; {x.shape[1]} - {kh} + 1 = {out.shape[1]}"
        )
    if isinstance(layer, MaxPooling2D):
        ph, pw = layer.pool_size
        return (
            f"max of each {ph}x{pw} window: {x.shape[1]} / {layer.strides[0]} = "
            f"{out.shape[1]}, keeps 1 value in {ph * pw}"
        )
    if isinstance(layer, Dropout):
        kept = np.count_nonzero(layer.cache) / layer.cache.size if layer.cache is not None else 1
        return (
            f"zero each value with p = {layer.rate:g}, scale the rest by 1/(1 - {layer.rate:g})"
            f" = {1 / (1 - layer.rate):.4g} (here {100 * (1 - kept):.0f}% zeroed)"
        )
    if isinstance(layer, Flatten):
        dims = " x ".join(str(d) for d in x.shape[1:])
        return f"reshape {dims} = {out.shape[1]:,} values per image (C order), no arithmetic"
    if isinstance(layer, Dense):
        d, k = layer.params["kernel"].shape
        act = layer.activation.name
        if act == "softmax":
            act = "softmax p_k = exp(z_k) / sum_j exp(z_j)"
        return f"z = x . W + b, W is {d:,} x {k}: {d:,} weights per output; then {act}"
    return type(layer).__name__


def _norm(a) -> str:
    return f"{np.linalg.norm(a):.4g}"


def _row(label, what, shape, norm, note=""):
    shape = shape if isinstance(shape, str) else str(tuple(shape))
    print(f"  {label:<16}{what:<52}{shape:<17}{norm:>7}  {note}".rstrip())


def backward_through(layer, dout, is_last):
    """Run layer's backward on dout, printing each gradient it produces; returns dL/dx."""
    name = layer.name
    if isinstance(layer, Dense):
        x, z, _ = layer.cache
        if is_last:  # the model fuses softmax with the crossentropy: dout is already dL/dz
            dz = dout
        else:
            dz = layer.activation.backward(dout, z, layer.cache[2])
            _row(name, f"dL/dz = dL/dout * {layer.activation.name}'(z)", dz.shape, _norm(dz))
            name = ""
        dx = layer.backward_linear(dz)
        _row(name, "dL/dW = x^T . dL/dz", layer.grads["kernel"].shape, _norm(layer.grads["kernel"]))
        _row(
            "",
            "dL/db = sum over the batch of dL/dz",
            layer.grads["bias"].shape,
            _norm(layer.grads["bias"]),
        )
        _row("", "dL/dx = dL/dz . W^T", dx.shape, _norm(dx))
        return dx
    if isinstance(layer, Conv2D):
        x, z, out = layer.cache
        dz = layer.activation.backward(dout, z, out)
        dx = layer.backward_linear(dz)
        act = layer.activation.name
        _row(
            name,
            f"dL/dz = dL/dout * {act}'(z)" + (" (1 where z > 0)" if act == "relu" else ""),
            dz.shape,
            _norm(dz),
            _percent_zero(dz),
        )
        _row(
            "",
            "dL/dW[p,q,c,f] = sum_nij x[n,i+p,j+q,c] dz[n,i,j,f]",
            layer.grads["kernel"].shape,
            _norm(layer.grads["kernel"]),
        )
        _row(
            "",
            "dL/db[f] = sum_nij dz[n,i,j,f]",
            layer.grads["bias"].shape,
            _norm(layer.grads["bias"]),
        )
        if dx is None:
            _row("", "dL/dx: not needed (the input is data)", x.shape, "-", "not computed")
        else:
            _row("", "dL/dx = full conv of dz with the flipped W", dx.shape, _norm(dx))
        return dx
    dx = layer.backward(dout)
    if isinstance(layer, MaxPooling2D):
        ph, pw = layer.pool_size
        what = f"dL/dx: each to its window's max, {ph * pw - 1} get 0"
        _row(name, what, dx.shape, _norm(dx), _percent_zero(dx))
    elif isinstance(layer, Dropout):
        _row(
            name,
            f"dL/dx = dL/dout * mask (0 or {1 / (1 - layer.rate):.4g})",
            dx.shape,
            _norm(dx),
            _percent_zero(dx),
        )
    elif isinstance(layer, Flatten):
        _row(name, "dL/dx = dL/dout reshaped back", dx.shape, _norm(dx))
    else:
        _row(name, "dL/dx", dx.shape, _norm(dx))
    return dx


# --- the walk -----------------------------------------------------------------------------------
def _load_digits(path, n):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load("mnist", path)
    for w in caught:
        print(f"Warning: {' '.join(str(w.message).split())}", file=sys.stderr, flush=True)
    images, labels = ds.x_train[:n], ds.y_train[:n]
    x = images.reshape(len(images), 28, 28, 1).astype(np.float64) / 255  # (N, 28, 28, 1)
    return ds, x, labels


def run(args) -> int:
    old_floatx = config.floatx()
    try:
        config.set_floatx("float64")
        with threadpool_limits(1):  # small products: extra BLAS threads only add hand-offs
            return _run(args)
    finally:
        config.set_floatx(old_floatx)


def _run(args) -> int:
    # The model file first: a missing, corrupt or mismatched file fails before any other work.
    clear_session()
    set_random_seed(args.seed)
    model = models.seed_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    where = "freshly initialised (Glorot uniform kernels, zero biases)"
    if args.model is not None:
        from minicnn import load_model

        model.set_weights(load_model(args.model).get_weights())
        where = f"weights from {args.model}"
    try:
        ds, x, labels = _load_digits(args.data, args.batch)
    except (FileNotFoundError, ValueError) as e:
        print(f"minicnn explain: error: {e}", file=sys.stderr)
        return 1
    y = to_categorical(labels, 10, dtype="float64")
    freeze_dropout(model.layers, np.random.default_rng(args.seed))  # same masks for the check
    layers = model.layers

    print(f"{len(x)} digits from {ds.describe()}: labels {' '.join(map(str, labels))}")
    print(
        f"Seed model, {model.count_params():,} parameters, {where}; float64; training mode "
        f"(dropout on)."
    )
    print()
    print("Forward: each layer turns its input into its output (and keeps what backward needs).")
    print(f"  {'input':<16}{str(x.shape):<18}pixels / 255, in [0, 1]")
    a = x
    for layer in layers:
        out = layer.forward(a, training=True)
        print(f"  {layer.name:<16}{str(out.shape):<18}{forward_note(layer, a, out)}")
        a = out
    p = a  # (N, 10)
    loss, dz = model.loss_and_gradient(y, p)
    true_p = p[np.arange(len(p)), labels]
    print()
    print(f"Loss: crossentropy = mean over the {len(p)} digits of -log p[true class] = {loss:.4f}")
    print(
        f"  p[true class] = {', '.join(f'{v:.3f}' for v in true_p)}; a guess at random gives "
        f"-log(1/10) = {np.log(10):.4f}"
    )
    print()
    print("Backward: the chain rule, last layer first. Each layer gets dL/d(its output), fills")
    print("dL/dW and dL/db from it, and hands dL/d(its input) to the layer before it, whose")
    print("dL/dout it is. Norms are Frobenius norms; '% are 0' counts exact zeros.")
    _row("", "gradient", "shape", "norm", "")
    _row("loss + softmax", f"dL/dz = (p - y) / N, N = {len(p)}", dz.shape, _norm(dz))
    d = dz
    for i, layer in reversed(list(enumerate(layers))):
        d = backward_through(layer, d, is_last=i == len(layers) - 1)

    # One number checked by hand: the centre weight of the first filter.
    conv = layers[0]
    w = conv.params["kernel"]
    analytic = float(conv.grads["kernel"][1, 1, 0, 0])

    def loss_at(value):
        old = w[1, 1, 0, 0]
        w[1, 1, 0, 0] = value
        out = x
        for layer in layers:
            out = layer.forward(out, training=True)
        w[1, 1, 0, 0] = old
        return model.loss_and_gradient(y, out)[0]

    w0 = float(w[1, 1, 0, 0])
    numeric = (loss_at(w0 + H) - loss_at(w0 - H)) / (2 * H)
    print()
    print(f"Check one number: dL/dW[1,1,0,0] of {conv.name} by backprop = {analytic:.10f}")
    print(
        f"  by central differences (L(w + h) - L(w - h)) / 2h, h = {H:g}: {numeric:.10f}  "
        f"(rel error {rel_error(analytic, numeric):.1e}; `minicnn gradcheck` checks them all)"
    )
    print(
        "An optimizer step would now move every W and b against its gradient (Adam: "
        "w -= alpha * m / (sqrt(v) + eps))."
    )
    return 0
