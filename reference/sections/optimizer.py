"""Optimizer: Keras's and minicnn's optimizers stepped from the same weights with the same
gradients; the updated weights and the slot variables (m, v) compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from minicnn import optimizers as mopt
from reference import tolerances
from reference._keras import keras, ops, to_numpy
from reference.report import Row, compare_many


@dataclass
class OptimizerCase:
    """A named run: ``steps`` updates with gradients N(0, grad_scale^2), fresh each step."""

    label: str
    make_minicnn: Callable[[], mopt.Optimizer]
    make_keras: Callable[[], object]
    steps: int
    grad_scale: float
    slots: tuple[str, ...]  # ('m', 'v') for Adam, ('m',) for SGD with momentum


def default_cases(keras_adam: Callable | None = None) -> list[OptimizerCase]:
    """Adam for 1 and 10 steps, Adam where epsilon matters (gradients ~1e-9, so sqrt(v) ~
    epsilon and the textbook form is visibly different), SGD with momentum, and Nesterov.

    keras_adam: optional factory for Keras's side of the Adam cases (mutants replace it).
    """
    kadam = keras_adam or keras.optimizers.Adam
    return [
        OptimizerCase("Adam x1", mopt.Adam, kadam, 1, 1e-2, ("m", "v")),
        OptimizerCase("Adam x10", mopt.Adam, kadam, 10, 1e-2, ("m", "v")),
        OptimizerCase("Adam x2, g~1e-9", mopt.Adam, kadam, 2, 1e-9, ("m", "v")),
        OptimizerCase(
            "SGD(0.01, momentum=0.9) x10",
            lambda: mopt.SGD(0.01, momentum=0.9),
            lambda: keras.optimizers.SGD(0.01, momentum=0.9),
            10,
            1e-2,
            ("m",),
        ),
        OptimizerCase(
            "SGD(0.01, momentum=0.9, nesterov) x10",
            lambda: mopt.SGD(0.01, momentum=0.9, nesterov=True),
            lambda: keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
            10,
            1e-2,
            ("m",),
        ),
    ]


def _keras_slots(opt, name: str) -> list:
    """Keras's slot variables of one kind, in parameter order, from ``optimizer.variables``
    (which also holds 'iteration' and 'learning_rate'): paths end in _momentum / _velocity."""
    suffix = {"m": "_momentum", "v": "_velocity"}[name]
    slots = [to_numpy(v) for v in opt.variables if v.path.endswith(suffix)]
    if not slots:
        raise AttributeError(f"Keras optimizer {type(opt).__name__} has no {suffix[1:]!r} slots.")
    return slots


def run_minicnn(case: OptimizerCase, w0: list, grads: list) -> tuple[list, dict]:
    """(weights after the steps, {'m': [...], 'v': [...]}). grads: one list per step."""
    opt = case.make_minicnn()
    params = [w.copy() for w in w0]
    for g in grads:
        opt.update(params, [gi.copy() for gi in g])
    names = {"m": "momentums", "v": "velocities"}
    return params, {s: [a.copy() for a in opt.slots[names[s]]] for s in case.slots}


def run_keras(case: OptimizerCase, w0: list, grads: list) -> tuple[list, dict]:
    """The same with Keras's optimizer on keras.Variables (on PyTorch, Keras swaps in its
    torch._foreach implementation: keras/src/backend/torch/optimizers/)."""
    opt = case.make_keras()
    variables = [keras.Variable(w) for w in w0]
    for g in grads:
        opt.apply_gradients(zip([ops.convert_to_tensor(gi) for gi in g], variables))
    return [to_numpy(v) for v in variables], {s: _keras_slots(opt, s) for s in case.slots}


def optimizer_rows(
    weights: list,
    cases: list[OptimizerCase] | None = None,
    seed: int = 0,
    section: str = "optimizer",
) -> list[Row]:
    """Rows per case: the updated weights and each slot, over all of ``weights``.

    Shapes: weights, a list of float32 arrays (a model's get_weights()).
    """
    tol = tolerances.OPTIMIZER
    rows = []
    for case in cases or default_cases():
        rng = np.random.default_rng(seed)
        grads = [
            [(rng.standard_normal(w.shape) * case.grad_scale).astype(w.dtype) for w in weights]
            for _ in range(case.steps)
        ]
        mw, mslots = run_minicnn(case, weights, grads)
        kw, kslots = run_keras(case, weights, grads)
        rows.append(compare_many(section, f"{case.label}: weights", mw, kw, tol))
        for s in case.slots:
            rows.append(compare_many(section, f"{case.label}: {s}", mslots[s], kslots[s], tol))
    return rows
