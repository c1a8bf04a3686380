"""Gradients and training steps of the Keras twin, on whichever backend Keras runs on.

Keras 3 has no backend-neutral gradient: TensorFlow records a ``GradientTape``, JAX transforms
a pure function (``jax.value_and_grad``, compiled with ``jax.jit`` as Keras's own JAX trainer
does), PyTorch runs ``torch.autograd``. This module is the only backend-specific code of the
suite; each function below has one small implementation per backend, in one table.

    loss, grads = value_and_grad(fn, [x, w1, w2])     # fn(list of tensors) -> scalar tensor
    step = train_step(kmodel, optimizer, loss_fn)     # step(x, y, keeps) -> loss; updates kmodel
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reference._keras import BACKEND, lib, ops, to_numpy
from reference.twin import layer_weights, run_layers, stateless_run


# --- value_and_grad ---------------------------------------------------------------------------
def _tf_value_and_grad(fn, args):
    ts = [lib.convert_to_tensor(a) for a in args]
    with lib.GradientTape() as tape:
        for t in ts:
            tape.watch(t)
        value = fn(ts)
    return value, tape.gradient(value, ts)


def _jax_value_and_grad(fn, args):
    # jitted, as Keras's JAX trainer runs its steps (and one compile beats one per eager op)
    return lib.jit(lib.value_and_grad(fn))([lib.numpy.asarray(a) for a in args])


def _torch_value_and_grad(fn, args):
    ts = [lib.tensor(np.asarray(a), requires_grad=True) for a in args]
    value = fn(ts)
    return value, lib.autograd.grad(value, ts)


def value_and_grad(fn: Callable, args: list) -> tuple[float, list[np.ndarray]]:
    """(fn(args), [d fn / d arg for each arg]) as a float and NumPy arrays.

    fn takes a list of backend tensors (in args' order) and returns a scalar tensor.
    Shapes: each gradient as its arg.
    """
    impl = {
        "tensorflow": _tf_value_and_grad,
        "jax": _jax_value_and_grad,
        "torch": _torch_value_and_grad,
    }[BACKEND]
    value, grads = impl(fn, list(args))
    return float(to_numpy(value)), [to_numpy(g) for g in grads]


# --- train_step -------------------------------------------------------------------------------
def _tf_train_step(kmodel, optimizer, loss_fn):
    # a traced tf.function, as Keras's TensorFlow trainer runs its train_step
    variables = kmodel.trainable_variables

    @lib.function
    def step(x, y, keeps):
        with lib.GradientTape() as tape:
            loss = loss_fn(y, run_layers(kmodel, x, training=True, keeps=keeps)[-1])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def _jax_train_step(kmodel, optimizer, loss_fn):
    # Keras's JAX trainer: a jitted pure function of the variables' values, the optimizer's
    # stateless_apply, and the new values assigned back afterwards
    variables = kmodel.trainable_variables
    optimizer.build(variables)
    counts = [len(ws) for ws in layer_weights(kmodel)]

    def pure(values, opt_values, x, y, keeps):
        def loss_of(values):
            it = iter(values)
            weights = [[next(it) for _ in range(c)] for c in counts]
            return loss_fn(y, stateless_run(kmodel, weights, x, training=True, keeps=keeps))

        loss, grads = lib.value_and_grad(loss_of)(values)
        values, opt_values = optimizer.stateless_apply(opt_values, grads, values)
        return loss, values, opt_values

    pure = lib.jit(pure)

    def step(x, y, keeps):
        loss, values, opt_values = pure(
            [v.value for v in variables], [v.value for v in optimizer.variables], x, y, keeps
        )
        for var, value in zip(variables, values, strict=True):
            var.assign(value)
        for var, value in zip(optimizer.variables, opt_values, strict=True):
            var.assign(value)
        return loss

    return step


def _torch_train_step(kmodel, optimizer, loss_fn):
    # Keras's PyTorch trainer: eager autograd, then optimizer.apply under no_grad
    variables = kmodel.trainable_variables

    def step(x, y, keeps):
        loss = loss_fn(y, run_layers(kmodel, x, training=True, keeps=keeps)[-1])
        grads = lib.autograd.grad(loss, [v.value for v in variables])
        with lib.no_grad():
            optimizer.apply(list(grads), variables)
        return loss

    return step


def train_step(kmodel, optimizer, loss_fn: Callable) -> Callable:
    """A function step(x, y, keeps) -> loss (float) that trains kmodel one step in place.

    The forward pass calls the twin's layers with training=True and the given keep-masks
    (one entry per layer, None for non-dropout layers); the gradient of loss_fn(y, output)
    goes to ``optimizer`` as Keras's trainer on this backend hands it over.
    Shapes: x (N, *input_shape), y (N, K), keeps[i] (N, *output_shape_i) or None.
    """
    impl = {
        "tensorflow": _tf_train_step,
        "jax": _jax_train_step,
        "torch": _torch_train_step,
    }[BACKEND]
    fn = impl(kmodel, optimizer, loss_fn)

    def step(x, y, keeps):
        # contiguous copies: torch takes no negative strides (the floor's reversed batches)
        def tensor(a):
            return None if a is None else ops.convert_to_tensor(np.ascontiguousarray(a))

        return float(to_numpy(fn(tensor(x), tensor(y), [tensor(k) for k in keeps])))

    return step
