"""A parity case: one minicnn model, one batch, and the dropout keep-masks both libraries use.

The model's biases are set to small random values (Keras and minicnn both start them at zero):
with zero biases every background pixel of an image gives a conv output of exactly 0, relu
kills its gradient, and a wrong bias gradient or a wrong max-pool tie rule would go unseen.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from minicnn import layers as mlayers
from minicnn.model import Sequential

BIAS_SCALE = 0.1  # |b| < 0.1: same order as the seed model's conv outputs on [0, 1] pixels


@dataclass
class Case:
    """model (built minicnn Sequential), x (N, *input_shape) float32, y (N, K) one-hot float32,
    keeps: one entry per layer, a bool keep-mask (N, *layer output shape) for Dropout layers,
    None for the others."""

    model: Sequential
    x: np.ndarray
    y: np.ndarray
    keeps: list
    data: str


def randomize_biases(model: Sequential, rng: np.random.Generator) -> None:
    """Give every bias U(-BIAS_SCALE, BIAS_SCALE) values (see the module docstring)."""
    for layer in model.layers:
        if "bias" in layer.params:
            b = layer.params["bias"]
            b[...] = rng.uniform(-BIAS_SCALE, BIAS_SCALE, b.shape).astype(b.dtype)


def make_keeps(model: Sequential, n: int, rng: np.random.Generator) -> list:
    """Bernoulli(1 - rate) keep-masks for each Dropout layer's output, None elsewhere.

    Shapes: entry i is (n, *output_shape_i) bool for a Dropout layer i.
    """
    keeps = []
    for layer, shape in zip(model.layers, model.output_shapes()):
        if isinstance(layer, mlayers.Dropout) and layer.rate > 0:
            keeps.append(rng.random((n, *shape)) >= layer.rate)
        else:
            keeps.append(None)
    return keeps


def make_case(model: Sequential, x, y, seed: int = 0, data: str = "") -> Case:
    """Wrap a built model and a batch (x (N, ...) float32, y (N, K) one-hot) into a Case."""
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if model.input_shape is None:
        model.build(x.shape[1:])
    if tuple(x.shape[1:]) != model.input_shape:
        raise ValueError(
            f"Argument x has shape {x.shape}, but the model expects {(None, *model.input_shape)}."
        )
    return Case(model, x, y, make_keeps(model, len(x), rng), data)


@contextlib.contextmanager
def injected_masks(model: Sequential, keeps: list):
    """Make each minicnn Dropout layer use keeps[i] (same object every call) while inside."""
    dropouts = [
        (layer, keep)
        for layer, keep in zip(model.layers, keeps)
        if isinstance(layer, mlayers.Dropout)
    ]
    saved = [layer.mask_source for layer, _ in dropouts]
    try:
        for layer, keep in dropouts:
            if keep is not None:
                layer.mask_source = lambda shape, keep=keep: keep
        yield
    finally:
        for (layer, _), src in zip(dropouts, saved):
            layer.mask_source = src


@contextlib.contextmanager
def all_input_grads(model: Sequential):
    """Ask every layer for its input gradient (the model skips the first layer's) while inside."""
    saved = [
        (layer, layer.needs_input_grad)
        for layer in model.layers
        if hasattr(layer, "needs_input_grad")
    ]
    try:
        for layer, _ in saved:
            layer.needs_input_grad = True
        yield
    finally:
        for layer, flag in saved:
            layer.needs_input_grad = flag
