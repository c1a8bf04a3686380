"""One training step, layer by layer, with every tensor kept: what `minicnn explain` prints and
`minicnn explain --html` draws.

    w = walk(model, x, y)       # forward, loss, backward: w.steps (one per layer), w.p, w.loss
    check = check_entry(model, w.steps, y, i, "kernel", (1, 1, 0, 0))  # one number, by hand
    check = check_largest(model, w.steps, y, i, "kernel")  # the largest gradient off a kink

The layers are called one by one (not through the model's fused units), in training mode, so
every intermediate array exists: each layer's input and output, the gradient arriving at its
output, the pre-activation gradient of Conv2D and Dense, and the gradient it hands down. Beside
them, the words: one line per layer saying what forward computed (`forward_note`) and one row
per gradient saying how backward got it (`backward_step`). Both explain modes show the same text.

Freeze the dropout masks first (`gradcheck.freeze_dropout`) when a gradient will be checked: the
check runs the forward pass again and must see the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minicnn.gradcheck import kink_pattern, rel_error
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential

H = 1e-6  # float64 central differences (see minicnn/gradcheck.py)


# --- what each layer does, in words -------------------------------------------------------------
def percent_zero(a) -> str:
    return f"{100 * np.count_nonzero(a == 0) / a.size:.0f}% are 0"


def forward_note(layer, x, out) -> str:
    """One line saying what `layer` computed from x to out (call it right after forward)."""
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel_size
        c, f = x.shape[-1], layer.filters
        n = kh * kw * c
        act = layer.activation.name
        tail = f", then {act} ({percent_zero(out)})" if act == "relu" else f", then {act}"
        bias = " + bias" if layer.use_bias else ""
        if layer.padding == "valid" and layer.strides == (1, 1):
            size = f"{x.shape[1]} - {kh} + 1 = {out.shape[1]}"
        else:
            size = (f"'{layer.padding}' padding, stride {layer.strides[0]}: {x.shape[1]} -> "
                    f"{out.shape[1]}")
        return (
            f"conv {kh}x{kw}, {f} filters: each output pixel = {n} weights . {n} pixels"
            f"{bias}{tail}; {size}"
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


@dataclass
class Row:
    """One gradient in the backward table: who, how it is computed, its shape and norm."""

    label: str
    what: str
    shape: tuple | str
    norm: str
    note: str = ""


def norm(a) -> str:
    return f"{np.linalg.norm(a):.4g}"


def backward_step(layer, dout, is_last):
    """Run layer's backward on dout (dL/d its output), saying how each gradient is made.

    Args:
        layer: a layer whose forward ran last on this batch (its cache is filled).
        dout: dL/d(layer output); for the softmax output layer (is_last) it is already dL/dz,
            because the model fuses softmax with the crossentropy.
    Returns:
        (dx, dz, rows): dL/d(layer input) (None when the input is data), dL/dz before the
        activation for Conv2D and Dense (None otherwise), and the rows describing them.
        The layer's grads hold dL/dW and dL/db afterwards.
    """
    name = layer.name
    rows = []
    if isinstance(layer, Dense):
        x, z, _ = layer.cache
        if is_last:
            dz = dout
        else:
            dz = layer.activation.backward(dout, z, layer.cache[2])
            rows.append(Row(name, f"dL/dz = dL/dout * {layer.activation.name}'(z)", dz.shape,
                            norm(dz)))
            name = ""
        dx = layer.backward_linear(dz)
        dw = layer.grads["kernel"]
        rows.append(Row(name, "dL/dW = x^T . dL/dz", dw.shape, norm(dw)))
        if "bias" in layer.grads:  # use_bias=False has none
            db = layer.grads["bias"]
            rows.append(Row("", "dL/db = sum over the batch of dL/dz", db.shape, norm(db)))
        rows.append(Row("", "dL/dx = dL/dz . W^T", dx.shape, norm(dx)))
        return dx, dz, rows
    if isinstance(layer, Conv2D):
        x, z, out = layer.cache
        dz = layer.activation.backward(dout, z, out)
        dx = layer.backward_linear(dz)
        act = layer.activation.name
        rows.append(Row(
            name,
            f"dL/dz = dL/dout * {act}'(z)" + (" (1 where z > 0)" if act == "relu" else ""),
            dz.shape,
            norm(dz),
            percent_zero(dz),
        ))
        rows.append(Row("", "dL/dW[p,q,c,f] = sum_nij x[n,i+p,j+q,c] dz[n,i,j,f]",
                        layer.grads["kernel"].shape, norm(layer.grads["kernel"])))
        if "bias" in layer.grads:
            rows.append(Row("", "dL/db[f] = sum_nij dz[n,i,j,f]", layer.grads["bias"].shape,
                            norm(layer.grads["bias"])))
        if dx is None:
            rows.append(Row("", "dL/dx: not needed (the input is data)", x.shape, "-",
                            "not computed"))
        else:
            rows.append(Row("", "dL/dx = full conv of dz with the flipped W", dx.shape, norm(dx)))
        return dx, dz, rows
    dx = layer.backward(dout)
    if isinstance(layer, MaxPooling2D):
        ph, pw = layer.pool_size
        what = f"dL/dx: each to its window's max, {ph * pw - 1} get 0"
        rows.append(Row(name, what, dx.shape, norm(dx), percent_zero(dx)))
    elif isinstance(layer, Dropout):
        rows.append(Row(name, f"dL/dx = dL/dout * mask (0 or {1 / (1 - layer.rate):.4g})",
                        dx.shape, norm(dx), percent_zero(dx)))
    elif isinstance(layer, Flatten):
        rows.append(Row(name, "dL/dx = dL/dout reshaped back", dx.shape, norm(dx)))
    else:
        rows.append(Row(name, "dL/dx", dx.shape, norm(dx)))
    return dx, None, rows


# --- the walk -----------------------------------------------------------------------------------
@dataclass
class Step:
    """One layer's part in the step. Arrays have the batch axis first.

    x: its input; out: its output; note: forward_note; z: the pre-activation (Conv2D, Dense;
    else None); mask: Dropout's mask, 0 or 1 / (1 - rate) (else None); dout: dL/d(out) as it
    arrived (for the softmax output layer, the fused loss gradient dL/dz, which is also `dz`);
    dz: dL/dz before the activation (Conv2D, Dense); dx: dL/d(x) handed down (None for the
    data input); grads: copies of dL/d(each weight); rows: the backward table's rows.
    """

    layer: object
    x: np.ndarray
    out: np.ndarray
    note: str
    z: np.ndarray | None = None
    mask: np.ndarray | None = None
    dout: np.ndarray | None = None
    dz: np.ndarray | None = None
    dx: np.ndarray | None = None
    grads: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)


@dataclass
class Walk:
    """The whole step: per-layer `steps`, the output p (N, K), the loss and its gradient."""

    steps: list
    p: np.ndarray
    loss: float
    dloss: np.ndarray  # dL/dz of the output layer, (p - y) / N when softmax + crossentropy


def walk(model: Sequential, x, y) -> Walk:
    """Forward through every layer (training mode), the loss, then backward, keeping it all.

    Args:
        model: a compiled, built Sequential (float64 for gradient checks).
        x: (N, *model.input_shape) images; y: (N, K) one-hot targets.
    """
    steps, a = [], x
    for layer in model.layers:
        out = layer.forward(a, training=True)
        # Layers make new arrays each forward, so these references stay valid after later runs.
        z = layer.preactivation if isinstance(layer, (Conv2D, Dense)) else None
        mask = layer.cache if isinstance(layer, Dropout) else None
        steps.append(Step(layer, a, out, forward_note(layer, a, out), z=z, mask=mask))
        a = out
    loss, dloss = model.loss_and_gradient(y, a)
    d = dloss
    for i in reversed(range(len(steps))):
        step = steps[i]
        step.dout = d
        step.dx, step.dz, step.rows = backward_step(step.layer, d, is_last=i == len(steps) - 1)
        step.grads = {k: step.layer.grads[k].copy() for k in step.layer.trainable_names}
        d = step.dx
    return Walk(steps, a, float(loss), dloss)


# --- one number checked by hand -----------------------------------------------------------------
@dataclass
class Check:
    """dL/d(one entry) by backprop and by central differences (L(+h) - L(-h)) / 2h.

    kink: the two nudges put a ReLU input on different sides of 0 or changed a pooling
    window's winner (gradcheck.kink_pattern), so the quotient is not the derivative there.
    """

    layer: str
    target: str  # 'kernel', 'bias', ... or 'x' (the layer's input)
    index: tuple
    analytic: float
    numeric: float
    kink: bool = False

    @property
    def error(self) -> float:
        return rel_error(self.analytic, self.numeric)


def check_entry(model, steps, y, i, target, index, h=H) -> Check:
    """Check dL/d(one entry) of layer i's `target` ('x' = its input) by central differences.

    Only layers i, i+1, ... run again (nothing before layer i depends on the entry), from the
    input layer i saw in the walk. Freeze dropout first (gradcheck.freeze_dropout), or the
    masks change between the runs. Overwrites the layers' caches.
    """
    step = steps[i]
    layers = model.layers[i:]
    if target == "x":
        if step.dx is None:
            raise ValueError(f"Layer {step.layer.name!r}: no dL/dx (its input is data).")
        array, analytic = step.x.copy(), step.dx[index]
    else:
        array, analytic = step.layer.params[target], step.grads[target][index]

    def loss_at(value):
        old = array[index]
        array[index] = value
        out = array if target == "x" else step.x
        for layer in layers:
            out = layer.forward(out, training=True)
        array[index] = old
        return model.loss_and_gradient(y, out)[0], kink_pattern(layers)

    w0 = float(array[index])
    (plus, kinks_plus), (minus, kinks_minus) = loss_at(w0 + h), loss_at(w0 - h)
    return Check(step.layer.name, target, tuple(int(k) for k in index), float(analytic),
                 float((plus - minus) / (2 * h)), kink=kinks_plus != kinks_minus)


def check_largest(model, steps, y, i, target, tries=20) -> Check:
    """check_entry on the largest |gradient| entry of layer i's target whose nudges cross no
    kink (of the `tries` largest); the largest one, kink and all, if every one of them does.

    Exact ties are common (a pooling window of ReLU zeros routes its gradient to the first
    zero; nudge it down and another zero wins), and there the difference quotient is half the
    derivative: a true gradient would look 33% wrong.
    """
    grad = steps[i].dx if target == "x" else steps[i].grads[target]
    order = np.argsort(-np.abs(grad), axis=None, kind="stable")[:tries]
    first = None
    for flat in order:
        check = check_entry(model, steps, y, i, target, np.unravel_index(flat, grad.shape))
        if not check.kink:
            return check
        first = first or check
    return first


def largest_entry(a) -> tuple:
    """Index of the entry with the largest |value| (the first one on ties)."""
    return np.unravel_index(int(np.argmax(np.abs(a))), a.shape)


# --- the model, in float64 ----------------------------------------------------------------------
def float64_copy(model: Sequential) -> Sequential:
    """The same layers and weights in float64 (a saved model is float32; the check needs 64).

    Layers are rebuilt from their configs with fresh names, as a new model gets.
    """
    if model.input_shape is None:
        raise ValueError(f"Model {model.name!r} is not built: it has no input shape.")
    layers = []
    for layer in model.layers:
        cfg = {k: v for k, v in layer.get_config().items() if k != "name"}
        layers.append(type(layer)(**cfg, dtype="float64"))
    copy = Sequential(layers)
    copy.build(model.input_shape)
    copy.set_weights(model.get_weights())
    return copy
