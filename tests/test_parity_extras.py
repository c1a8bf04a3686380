"""Keras parity for the overfitting toolbox: BatchNormalization and L1/L2 weight penalties.

The oracle is Keras 3 on TensorFlow (these tests drive it through tf.GradientTape, so they
skip under another KERAS_BACKEND), with minicnn's weights copied in; tolerances are
reference/tolerances.py's (max |minicnn - keras| / max |keras|). The Keras twins are built
with reference.twin.to_keras and a layer_factory for the new pieces.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.keras

tf = pytest.importorskip("tensorflow")
if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    pytest.skip("tf.GradientTape tests: TensorFlow backend only", allow_module_level=True)

import minicnn  # noqa: E402
from minicnn import optimizers, regularizers  # noqa: E402
from minicnn.layers import (  # noqa: E402
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
)
from minicnn.model import Sequential  # noqa: E402
from reference import suite  # noqa: E402
from reference._keras import keras  # noqa: E402
from reference.tolerances import FORWARD, GRADIENT  # noqa: E402
from reference.twin import to_keras  # noqa: E402
from tests.helpers import assert_close  # noqa: E402

# Adam's first step is lr * g / (|g| + eps_hat), eps_hat = epsilon / sqrt(1 - beta_2) ~ 3.2e-6:
# where |g| is near eps_hat (a data gradient and a penalty gradient that nearly cancel) the step
# turns rounding-level gradient differences into visible ones (measured up to 7e-5 of max |w|
# over 16 seeds). So each weight may differ by the step's sensitivity to g,
# lr * eps_hat / (|g| + eps_hat)^2, times the gradient difference GRADIENT * max|g| the gradient
# test allows, plus ADAM_STEP * max|w| for float32 rounding (measured <= 1.5e-7 away from such
# entries). Over 16 seeds x 2 backends the worst weight used 0.15 of this allowance.
ADAM_STEP = 1e-6
# The reported loss (crossentropy + penalties) is one float32 scalar: measured <= 1.7e-7.
LOSS = FORWARD


def _backends():
    return suite.resolve_backends(["auto", "numpy"])


@pytest.fixture
def backend_in_force(request):
    old = minicnn.config.backend_setting()
    minicnn.set_backend(request.param)
    yield request.param
    minicnn.set_backend(old)


def _keras_regularizer(reg):
    if reg is None:
        return None
    cls = {
        "L1": keras.regularizers.L1,
        "L2": keras.regularizers.L2,
        "L1L2": keras.regularizers.L1L2,
    }[type(reg).__name__]
    return cls(**reg.get_config())


def twin_layer(layer):
    """The Keras twin of a BatchNormalization or a regularized Conv2D/Dense (else None: the
    reference twin's own mapping)."""
    if isinstance(layer, BatchNormalization):
        return keras.layers.BatchNormalization(
            axis=layer.axis,
            momentum=layer.momentum,
            epsilon=layer.epsilon,
            center=layer.center,
            scale=layer.scale,
            name=layer.name,
        )
    regs = {f"{k}_regularizer": _keras_regularizer(r) for k, r in layer.regularizers.items()}
    if not any(regs.values()):
        return None
    act = None if layer.activation.name == "linear" else layer.activation.name
    if isinstance(layer, Conv2D):
        return keras.layers.Conv2D(
            layer.filters,
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            activation=act,
            use_bias=layer.use_bias,
            name=layer.name,
            **regs,
        )
    return keras.layers.Dense(
        layer.units, activation=act, use_bias=layer.use_bias, name=layer.name, **regs
    )


def _randomize_bn(layer, rng):
    C = layer.params["moving_mean"].shape[0]
    for key, values in (
        ("gamma", rng.uniform(0.5, 1.5, C)),
        ("beta", rng.uniform(-0.5, 0.5, C)),
        ("moving_mean", rng.uniform(-0.5, 0.5, C)),
        ("moving_variance", rng.uniform(0.5, 2.0, C)),
    ):
        if key in layer.params:
            layer.params[key][...] = values


# --- BatchNormalization, layer by layer -------------------------------------------------------
@pytest.mark.parametrize("backend_in_force", _backends(), indirect=True)
@pytest.mark.parametrize("shape", [(32, 7), (8, 6, 5, 4)], ids=["2d", "4d"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_batchnorm_matches_keras(backend_in_force, shape, training):
    rng = np.random.default_rng(7)
    layer = BatchNormalization(momentum=0.9)
    layer.build_for(shape[1:])
    _randomize_bn(layer, rng)
    klayer = twin_layer(layer)
    klayer.build((None, *shape[1:]))
    klayer.set_weights(layer.get_weights())
    x = (rng.standard_normal(shape) * 2 + 0.7).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)

    xt = tf.Variable(x)
    with tf.GradientTape() as tape:
        kout = klayer(xt, training=training)
        kloss = tf.reduce_sum(kout * dout)
    kgrads = tape.gradient(kloss, [xt, klayer.gamma, klayer.beta])

    out = layer.forward(x, training=training)
    dx = layer.backward(dout)
    assert_close("output", out, kout.numpy(), FORWARD)
    for name, ours, theirs in zip(
        ("dx", "dgamma", "dbeta"), (dx, layer.grads["gamma"], layer.grads["beta"]), kgrads
    ):
        assert_close(name, ours, theirs.numpy(), GRADIENT)
    # the moving statistics after one call (updated in training only)
    for key, kvar in (
        ("moving_mean", klayer.moving_mean),
        ("moving_variance", klayer.moving_variance),
    ):
        assert_close(key, layer.params[key], kvar.numpy(), FORWARD)


# --- regularized models -----------------------------------------------------------------------
def _regularized_model(rng):
    """Conv2D(relu) -> MaxPooling2D is one fused unit on the Numba backend: the penalty
    gradients must reach it too. (No bias right before BatchNormalization: its data gradient is
    exactly 0 in exact arithmetic, and both libraries' rounding noise would be all we compared.)
    """
    minicnn.set_random_seed(int(rng.integers(2**31)))  # the kernels: fixed by the test's rng
    model = Sequential(
        [
            Conv2D(
                6,
                (3, 3),
                activation="relu",
                kernel_regularizer=regularizers.L2(0.01),
                bias_regularizer=regularizers.L1(0.02),
                input_shape=(9, 9, 2),
            ),
            MaxPooling2D((2, 2)),
            BatchNormalization(momentum=0.8),
            Activation("tanh"),
            Flatten(),
            Dense(
                10,
                activation="softmax",
                kernel_regularizer=regularizers.L1L2(1e-3, 1e-2),
                bias_regularizer="l2",
            ),
        ]
    )
    for layer in model.layers:
        if "bias" in layer.params:
            b = layer.params["bias"]
            b[...] = rng.uniform(-0.1, 0.1, b.shape)
        if isinstance(layer, BatchNormalization):
            _randomize_bn(layer, rng)
    return model


def _batch(rng, n=16):
    x = rng.random((n, 9, 9, 2), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


@pytest.mark.parametrize("backend_in_force", _backends(), indirect=True)
def test_regularized_loss_and_gradients_match_keras(backend_in_force):
    rng = np.random.default_rng(3)
    model = _regularized_model(rng)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    kmodel = to_keras(model, layer_factory=twin_layer)
    kmodel.compile(loss="categorical_crossentropy", optimizer="adam")
    x, y = _batch(rng)

    # the penalties alone: sum(model.losses) is what Keras adds to the loss
    assert_close("penalty", model.regularization_loss(), float(tf.add_n(kmodel.losses)), FORWARD)

    with tf.GradientTape() as tape:
        pred = kmodel(x, training=True)
        kloss = kmodel.compute_loss(x=x, y=y, y_pred=pred, training=True)
    kgrads = tape.gradient(kloss, kmodel.trainable_weights)

    out = model.forward(x, training=True)
    loss, dout = model.loss_and_gradient(y, out)
    model.backward(dout)
    loss += model.regularization_loss()
    assert_close("loss (crossentropy + penalties)", loss, float(kloss), LOSS)
    params, grads = model.trainable_params()
    assert len(grads) == len(kgrads)
    for kvar, ours, theirs in zip(kmodel.trainable_weights, grads, kgrads):
        assert_close(f"d loss / d {kvar.path}", ours, theirs.numpy(), GRADIENT)

    # evaluate: inference mode (moving statistics), penalties included, as Keras's
    k_eval = kmodel.evaluate(x, y, batch_size=16, verbose=0)
    assert_close("evaluate loss", model.evaluate(x, y, batch_size=16, verbose=0), k_eval, LOSS)


@pytest.mark.parametrize("backend_in_force", _backends(), indirect=True)
def test_adam_step_of_regularized_model_matches_keras(backend_in_force):
    lr, eps_hat = 1e-2, 1e-7 / np.sqrt(1 - 0.999)
    rng = np.random.default_rng(5)
    model = _regularized_model(rng)
    model.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam(lr))
    kmodel = to_keras(model, layer_factory=twin_layer)
    kmodel.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(lr))
    x, y = _batch(rng)

    assert_close(
        "train_on_batch loss", model.train_on_batch(x, y), kmodel.train_on_batch(x, y), LOSS
    )
    # after one step Adam's m is (1 - beta_1) * g: the gradient each weight was moved by
    grads = iter(m / np.float32(0.1) for m in model.optimizer.slots["momentums"])
    for layer in model.layers:
        klayer = kmodel.get_layer(layer.name)
        for key, ours, theirs in zip(layer.weight_names, layer.get_weights(), klayer.get_weights()):
            # the BN moving statistics ride along: Keras updates them in train_on_batch too
            allowed = ADAM_STEP * np.abs(theirs).max()
            if key in layer.trainable_names:
                g = np.abs(next(grads))
                allowed = allowed + lr * eps_hat * GRADIENT * g.max() / (g + eps_hat) ** 2
            err = np.abs(ours - theirs)
            assert np.all(err <= allowed), (
                f"{layer.name}/{key} after one Adam step: max abs {err.max():.3e}, "
                f"{(err / allowed).max():.2f}x the allowance"
            )
    # the next step's loss: crossentropy and penalties at the updated weights
    assert_close(
        "loss at the updated weights", model.test_on_batch(x, y), kmodel.test_on_batch(x, y), LOSS
    )
