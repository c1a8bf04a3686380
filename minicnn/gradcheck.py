"""Finite-difference gradient checks: the proof that every backward pass is right.

For a layer with output out = f(x, params) and a random upstream gradient dout, the scalar
L = sum(out * dout) has dL/dx = backward(dout). Central differences estimate each entry:

    dL/dθ_i ≈ (L(θ + h e_i) - L(θ - h e_i)) / 2h        (error O(h^2); h = 1e-6 in float64)

A random dout (not ones) is what exposes a transposed or misrouted gradient. The error reported
is ||analytic - numeric|| / (||analytic|| + ||numeric||): 0 for a perfect match, ~1 when unrelated,
below 1e-7 when the analytic gradient is right in float64. Nudges that cross a ReLU kink or
change a pooling winner are set aside and counted (probe). The one checker: the tests,
`minicnn gradcheck` and the explain page all use it.
"""

from __future__ import annotations

import numpy as np

from minicnn.layers.dropout import Dropout
from minicnn.layers.pooling import MaxPooling2D


def rel_error(a, b) -> float:
    """||a - b|| / (||a|| + ||b||), with 0 when both are 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def numerical_gradient(f, x, h=1e-6, indices=None):
    """Central-difference gradient of scalar f() with respect to array x (perturbed in place).

    Args:
        f: callable () -> float, reading x.
        x: float64 array.
        indices: flat indices to probe (None = all); other entries of the result stay 0.
    Returns: array shaped like x.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def kink_pattern(layers) -> bytes:
    """Which side of 0 every ReLU input is on and which pixel won every pooling window, as left
    by the last forward pass: two nudges that leave it unchanged stay on one smooth piece."""
    parts = []
    for layer in layers:
        if layer.cache is None:
            continue
        if isinstance(layer, MaxPooling2D):
            parts.append(np.asarray(layer.cache[1]).tobytes())
        elif getattr(getattr(layer, "activation", None), "name", None) == "relu":
            parts.append(np.packbits(np.asarray(layer.preactivation) > 0).tobytes())
    return b"".join(parts)


def probe(analytic, target, loss, pattern, h, max_entries, rng) -> dict:
    """Central differences of loss() w.r.t. some entries of target (perturbed in place), kinks
    set aside.

    ReLU and max-pool are not differentiable everywhere: when a nudge moves a ReLU input across
    0 or changes which pixel wins a pooling window (pattern() differs between the +h and -h
    passes), the difference quotient is not the derivative, so that entry is counted, not
    compared (CS231n's advice, made mechanical).
    Args:
        analytic: backprop's gradient, shaped like target.
        loss: callable () -> float that reads target.
        pattern: callable () -> bytes, the kink pattern (kink_pattern) after loss() ran.
        max_entries: probe at most this many entries, drawn with rng (None: all).
    Returns: {'shape', 'probed', 'kinks', 'error', 'zero'}: error is None when every probe hit a
    kink; zero is True when every compared entry is 0 on both sides (a vacuous agreement).
    """
    flat = target.reshape(-1)
    n = flat.size
    if max_entries is None or n <= max_entries:
        idx = np.arange(n)
    else:
        idx = rng.choice(n, max_entries, replace=False)
    a, num = [], []
    kinks = 0
    for i in idx:
        old = flat[i]
        flat[i] = old + h
        plus, kinks_plus = loss(), pattern()
        flat[i] = old - h
        minus, kinks_minus = loss(), pattern()
        flat[i] = old
        if kinks_plus != kinks_minus:
            kinks += 1
            continue
        a.append(float(analytic.reshape(-1)[i]))
        num.append((plus - minus) / (2 * h))
    error = rel_error(np.array(a), np.array(num)) if a else None
    zero = bool(a) and not np.any(a) and not np.any(num)
    return {"shape": target.shape, "probed": len(idx), "kinks": kinks, "error": error, "zero": zero}


def freeze_dropout(layers, rng):
    """Give every Dropout layer one fixed mask, so repeated forward passes are the same function."""
    for layer in layers:
        if isinstance(layer, Dropout):
            masks = {}

            def source(shape, masks=masks, rate=layer.rate):
                if shape not in masks:
                    masks[shape] = rng.random(shape) >= rate
                return masks[shape]

            layer.mask_source = source


class SameDropoutMasks:
    """Replays the same dropout masks on every forward pass: each Dropout's mask is a hash of
    (seed, counter), so resetting the counters before a pass redraws the masks it drew before.
    Unlike injecting masks (freeze_dropout), this leaves the fused Numba units on their fused
    path, so the check covers the kernels that train."""

    def __init__(self, layers):
        self.dropouts = [(d, d.counter) for d in layers if isinstance(d, Dropout)]

    def reset(self):
        for d, counter in self.dropouts:
            d.counter = counter


# --- the checks: one layer alone, the whole model -------------------------------------------
def layer_rows(layer, x, rng, h=1e-6, max_entries=None, training=True) -> list[tuple[str, dict]]:
    """A layer alone: dL/dx and dL/d(each parameter) for L = sum(out * dout), dout random.

    Returns [('x', probe result), ('kernel', ...), ...].
    """
    layer.needs_input_grad = True
    masks = SameDropoutMasks([layer])
    out = layer.forward(x, training=training)
    dout = rng.standard_normal(out.shape).astype(out.dtype)

    def loss():
        masks.reset()
        return float(np.sum(layer.forward(x, training=training) * dout, dtype=np.float64))

    def pattern():  # the forward pass loss() just ran left it in the cache
        return kink_pattern([layer])

    masks.reset()
    layer.forward(x, training=training)
    dx = layer.backward(dout)
    grads = {k: layer.grads[k].copy() for k in layer.trainable_names}
    rows = [("x", probe(dx, x, loss, pattern, h, max_entries, rng))]
    for k, g in grads.items():
        rows.append((k, probe(g, layer.params[k], loss, pattern, h, max_entries, rng)))
    return rows


def model_rows(model, x, y, rng, h=1e-6, max_entries=40) -> list[tuple[str, str, dict]]:
    """The whole model: loss -> the input and every parameter, through the model's own
    forward/backward (fused units included), dropout on with the same masks every pass.

    Returns [('input', 'x', probe result), (layer name, 'kernel', ...), ...].
    """
    layers = model.layers
    masks = SameDropoutMasks(layers)
    layers[0].needs_input_grad = True

    def loss():
        masks.reset()
        out = model.forward(x, training=True)
        return model.loss_and_gradient(y, out)[0] + model.regularization_loss()

    def pattern():
        # Layer by layer, so every ReLU and pooling cache is filled whatever the backend fused.
        masks.reset()
        a = x
        for layer in layers:
            a = layer.forward(a, training=True)
        return kink_pattern(layers)

    try:
        masks.reset()
        out = model.forward(x, training=True)
        _, dout = model.loss_and_gradient(y, out)
        dx = np.array(model.backward(dout))  # a copy: fused units reuse their buffers
        grads = [(layer, k, layer.grads[k].copy()) for layer in layers
                 for k in layer.trainable_names]
        rows = [("input", "x", probe(dx, x, loss, pattern, h, max_entries, rng))]
        for layer, k, g in grads:
            rows.append((layer.name, k, probe(g, layer.params[k], loss, pattern, h,
                                              max_entries, rng)))
    finally:
        model._set_input_grad_flags()
    return rows


def check_layer(layer, x, rng=None, training=False, h=1e-6, max_entries=None) -> dict:
    """{'x': rel error, 'kernel': rel error, ...} of a built float64 layer on input x (N, ...);
    layer_rows, kinks set aside (None when every probe of a tensor hit one)."""
    rng = rng or np.random.default_rng(0)
    return {name: r["error"] for name, r in layer_rows(layer, x, rng, h, max_entries, training)}


def check_model(model, x, y, rng=None, h=1e-6, max_entries=40) -> dict:
    """{(layer name, param name): rel error}, with ('input', 'x') for the input gradient;
    model_rows, kinks set aside."""
    rng = rng or np.random.default_rng(0)
    return {(name, k): r["error"] for name, k, r in model_rows(model, x, y, rng, h, max_entries)}
