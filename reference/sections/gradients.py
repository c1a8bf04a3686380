"""Gradients: the loss, every parameter's gradient and every layer's input gradient.

Keras's side is the backend's own differentiation (a gradient tape, jax.grad or
torch.autograd) of the twin's layers called one by one; minicnn's side is its own backward. In
training mode both use the same injected dropout masks.
"""

from __future__ import annotations

import numpy as np

from reference import tolerances
from reference._keras import keras, ops, to_numpy
from reference.autodiff import value_and_grad
from reference.case import Case, all_input_grads, injected_masks
from reference.report import Row, compare
from reference.twin import run_layers, stateless_run


def keras_gradients(kmodel, x, y, training: bool, keeps) -> tuple[float, list, dict]:
    """(loss, [dL/d input of layer i], {'layer.kernel': dL/dkernel, ...}) from the Keras twin.

    One pure function of (x, zero probes on the hidden outputs, the weights) differentiated
    by the backend (reference/autodiff.py): the gradient at a probe is the gradient at the
    next layer's input.

    Shapes: x (N, *input_shape), y (N, K) one-hot.
    """
    loss_fn = keras.losses.CategoricalCrossentropy()
    keeps = keeps if training else None
    outs = run_layers(kmodel, x, training=training, keeps=keeps)
    probes = [np.zeros(tuple(o.shape), dtype=np.float32) for o in outs[:-1]]
    names = [
        f"{layer.name}.{_var_key(v)}" for layer in kmodel.layers for v in layer.trainable_weights
    ]
    weights = [to_numpy(v) for layer in kmodel.layers for v in layer.trainable_weights]
    counts = [len(layer.trainable_weights) for layer in kmodel.layers]
    n_in = 1 + len(probes)

    def loss_of(args):
        it = iter(args[n_in:])
        per_layer = [[next(it) for _ in range(c)] for c in counts]
        out = stateless_run(kmodel, per_layer, args[0], training, keeps, args[1:n_in])
        return loss_fn(ops.convert_to_tensor(y), out)

    loss, grads = value_and_grad(loss_of, [x, *probes, *weights])
    return loss, grads[:n_in], dict(zip(names, grads[n_in:], strict=True))


def _var_key(v) -> str:
    return v.path.split("/")[-1] if hasattr(v, "path") else v.name.split(":")[0]


def minicnn_gradients(case: Case, training: bool) -> tuple[float, list, dict]:
    """The same three things from minicnn.

    Parameter gradients come from the model's own path (``forward`` / ``loss_and_gradient`` /
    ``backward``, fused units and all: what training uses). Input gradients come from running
    the layers one by one, with the first layer's input gradient switched on.
    """
    model = case.model
    keeps = case.keeps if training else [None] * len(model.layers)
    with injected_masks(model, keeps):
        out = model.forward(case.x, training=training)
        loss, dout = model.loss_and_gradient(case.y, out)
        model.backward(dout)
        dparams = {
            f"{layer.name}.{k}": layer.grads[k].copy()
            for layer in model.layers
            for k in layer.trainable_names
        }

        with all_input_grads(model):
            layers = model.layers
            h = case.x
            for layer in layers:
                h = layer.forward(h, training=training)
            _, dout = model.loss_and_gradient(case.y, h)
            dxs = [None] * len(layers)
            if model._fused_loss():  # dout is dL/dlogits: the last layer skips its softmax
                d = layers[-1].backward_linear(dout)
            else:
                d = layers[-1].backward(dout)
            dxs[-1] = d
            for i in range(len(layers) - 2, -1, -1):
                d = layers[i].backward(d)
                dxs[i] = d
    return loss, dxs, dparams


def gradient_rows(case: Case, kmodel, training: bool, section: str = "gradients") -> list[Row]:
    """Rows: the loss, each parameter's gradient, each layer's input gradient.

    Shapes: parameter gradients as the parameters; input gradient of layer i as its input.
    """
    tol = tolerances.GRADIENT
    k_loss, k_dxs, k_dp = keras_gradients(kmodel, case.x, case.y, training, case.keeps)
    m_loss, m_dxs, m_dp = minicnn_gradients(case, training)
    # the loss is a forward quantity: the forward regime's tolerance
    rows = [compare(section, "loss", np.float32(m_loss), np.float32(k_loss), tolerances.FORWARD)]
    for name, g in m_dp.items():
        if name not in k_dp:
            rows.append(
                Row(
                    section,
                    f"d loss / d {name}",
                    str(g.shape),
                    np.inf,
                    np.inf,
                    tol,
                    False,
                    f"Keras twin has no weight {name!r}",
                )
            )
            continue
        rows.append(compare(section, f"d loss / d {name}", g, k_dp[name], tol))
    for layer, dm, dk in zip(case.model.layers, m_dxs, k_dxs, strict=True):
        rows.append(compare(section, f"d loss / d input of {layer.name}", dm, dk, tol))
    return rows
