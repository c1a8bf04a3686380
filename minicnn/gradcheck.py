"""Finite-difference gradient checks: the proof that every backward pass is right.

For a layer with output out = f(x, params) and a random upstream gradient dout, the scalar
L = sum(out * dout) has dL/dx = backward(dout). Central differences estimate each entry:

    dL/dθ_i ≈ (L(θ + h e_i) - L(θ - h e_i)) / 2h        (error O(h^2); h = 1e-6 in float64)

A random dout (not ones) is what exposes a transposed or misrouted gradient. The error reported
is ||analytic - numeric|| / (||analytic|| + ||numeric||): 0 for a perfect match, ~1 when unrelated,
below 1e-7 when the analytic gradient is right in float64.
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


def _sample(size, rng, max_entries):
    if max_entries is None or size <= max_entries:
        return None
    return rng.choice(size, max_entries, replace=False)


def _masked(a, idx):
    return a if idx is None else a.reshape(-1)[idx]


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


def check_layer(layer, x, rng=None, training=False, h=1e-6, max_entries=None) -> dict:
    """Compare a layer's backward with central differences, for dx and every parameter.

    Args:
        layer: a built float64 layer; x: float64 input (N, ...).
        max_entries: probe at most this many entries per tensor (None = all).
    Returns: {'x': rel_error, 'kernel': rel_error, ...}
    """
    rng = rng or np.random.default_rng(0)
    freeze_dropout([layer], rng)
    if hasattr(layer, "needs_input_grad"):
        layer.needs_input_grad = True
    out = layer.forward(x, training=training)
    dout = rng.standard_normal(out.shape)

    def loss():
        return float(np.sum(layer.forward(x, training=training) * dout))

    layer.forward(x, training=training)
    dx = layer.backward(dout)
    analytic = {"x": dx, **{k: layer.grads[k].copy() for k in layer.trainable_names}}
    errors = {}
    for name, grad in analytic.items():
        target = x if name == "x" else layer.params[name]
        idx = _sample(target.size, rng, max_entries)
        numeric = numerical_gradient(loss, target, h, idx)
        errors[name] = rel_error(_masked(grad, idx), _masked(numeric, idx))
    return errors


def check_model(model, x, y, rng=None, h=1e-6, max_entries=40) -> dict:
    """Compare the whole model's backprop (loss -> every parameter and the input) with central
    differences of the loss. Dropout is on, with one frozen mask per layer.

    Returns: {(layer name, param name): rel_error}, with ('input', 'x') for the input gradient.
    """
    rng = rng or np.random.default_rng(0)
    layers = model.layers
    freeze_dropout(layers, rng)
    if hasattr(layers[0], "needs_input_grad"):
        layers[0].needs_input_grad = True

    def loss():
        out = model.forward(x, training=True)
        return model.loss_and_gradient(y, out)[0] + model.regularization_loss()

    out = model.forward(x, training=True)
    _, dout = model.loss_and_gradient(y, out)
    dx = model.backward(dout)
    analytic = {("input", "x"): (x, dx)}
    for layer in layers:
        for k in layer.trainable_names:
            analytic[(layer.name, k)] = (layer.params[k], layer.grads[k].copy())
    errors = {}
    for key, (target, grad) in analytic.items():
        idx = _sample(target.size, rng, max_entries)
        numeric = numerical_gradient(loss, target, h, idx)
        errors[key] = rel_error(_masked(grad, idx), _masked(numeric, idx))
    model._set_input_grad_flags()
    return errors
