"""L1/L2 weight penalties: hand-computed values, float64 gradient checks through whole models on
every backend (the fused Numba path included), the loss fit/evaluate report, and saving."""

from __future__ import annotations

import numpy as np
import pytest

import minicnn
from minicnn import gradcheck, regularizers
from minicnn.config import numba_available
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential
from minicnn.regularizers import L1, L1L2, L2
from tests.tolerances import GRADCHECK_F64

BACKENDS = ["naive", "numpy"] + (["numba"] if numba_available() else [])
W = np.array([[-2.0, 0.0], [3.0, 0.5]])


# --- the penalties by hand ----------------------------------------------------------------------
def test_penalties_and_gradients_by_hand():
    # sum|w| = 5.5, sum w^2 = 13.25
    assert L1(0.1)(W) == pytest.approx(0.55)
    assert L2(0.1)(W) == pytest.approx(1.325)  # no 1/2: Keras's l2 * sum(w^2)
    assert L1L2(0.1, 0.2)(W) == pytest.approx(0.55 + 2.65)
    np.testing.assert_allclose(L1(0.1).gradient(W), [[-0.1, 0.0], [0.1, 0.1]])  # sign(0) = 0
    np.testing.assert_allclose(L2(0.1).gradient(W), 0.2 * W)
    np.testing.assert_allclose(L1L2(0.1, 0.2).gradient(W), 0.1 * np.sign(W) + 0.4 * W)


def test_gradient_is_the_derivative_of_the_penalty():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 5))  # no entry within h of the L1 kink at 0
    for reg in (L1(0.3), L2(0.2), L1L2(0.05, 0.7)):
        numeric = gradcheck.numerical_gradient(lambda reg=reg: reg(w), w)
        assert gradcheck.rel_error(reg.gradient(w), numeric) < GRADCHECK_F64, reg


def test_get_follows_keras_names_and_defaults():
    assert regularizers.get("l1") == L1(0.01) and regularizers.get("L1") == L1(0.01)
    assert regularizers.get("l2") == L2(0.01) and regularizers.get("L2") == L2(0.01)
    # Keras 3 maps 'l1l2' / 'L1L2' to L1L2() with both factors 0 (and rejects 'l1_l2')
    assert regularizers.get("l1l2") == L1L2(0.0, 0.0)
    assert regularizers.get(None) is None
    reg = L1L2(0.1, 0.2)
    assert regularizers.get(reg) is reg
    assert regularizers.get(regularizers.serialize(reg)) == reg
    assert regularizers.serialize(L2(0.5)) == {"module": "keras.regularizers", "class_name": "L2",
                                               "config": {"l2": 0.5}, "registered_name": None}


@pytest.mark.parametrize("bad", ["l1_l2", "ridge", lambda w: 0.0, 3])
def test_unknown_regularizer_raises(bad):
    with pytest.raises(ValueError, match="regularizer identifier"):
        Dense(3, kernel_regularizer=bad)


@pytest.mark.parametrize("factor", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_factor_raises(factor):
    with pytest.raises(ValueError, match="l2"):
        L2(factor)


def test_layer_and_model_penalty():
    minicnn.set_random_seed(0)
    model = Sequential(
        [
            Dense(4, kernel_regularizer="l2", bias_regularizer=L1(0.5), input_shape=(3,)),
            Dense(2, kernel_regularizer=L1L2(0.1, 0.0), use_bias=False, bias_regularizer="l2"),
        ]
    )  # no bias: its regularizer is idle
    d1, d2 = model.layers
    d1.params["bias"][...] = [1.0, -2.0, 0.0, 0.5]
    expected1 = 0.01 * np.sum(d1.params["kernel"].astype(np.float64) ** 2) + 0.5 * 3.5
    expected2 = 0.1 * np.abs(d2.params["kernel"]).sum()
    assert d1.penalty() == pytest.approx(expected1, rel=1e-6)
    assert d2.penalty() == pytest.approx(expected2, rel=1e-6)
    assert model.regularization_loss() == pytest.approx(expected1 + expected2, rel=1e-6)


# --- float64 gradient checks of regularized models ----------------------------------------------
def _regularized_cnn():
    """Conv2D(relu) -> MaxPooling2D -> Dropout -> Flatten is one fused unit on Numba."""
    return Sequential(
        [
            Conv2D(
                3,
                (3, 3),
                activation="relu",
                kernel_regularizer=L2(0.05),
                bias_regularizer=L1(0.03),
                input_shape=(7, 7, 2),
            ),
            MaxPooling2D((2, 2)),
            Dropout(0.25),
            Flatten(),
            Dense(5, activation="relu", kernel_regularizer=L1L2(0.02, 0.04)),
            Dense(4, activation="softmax", kernel_regularizer="l1", bias_regularizer="l2"),
        ]
    )


def _randomize_biases(model, rng):
    for layer in model.layers:
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.uniform(-0.3, 0.3, layer.params["bias"].shape)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_gradcheck_regularized_model(float64, backend):
    rng = np.random.default_rng(1)
    minicnn.set_random_seed(1)
    model = _regularized_cnn()
    model.compile()
    _randomize_biases(model, rng)
    x = rng.random((4, 7, 7, 2))
    y = np.eye(4)[rng.integers(0, 4, 4)]
    errors = gradcheck.check_model(model, x, y, rng=rng)
    assert len(errors) == 7
    worst = max(errors, key=errors.get)
    assert errors[worst] < GRADCHECK_F64, f"{worst}: rel error {errors[worst]:.2e}"


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_penalty_gradient_is_added_exactly_once(backend):
    """Same weights and batch with and without penalties: the gradients differ by exactly the
    penalty gradients, on the layer-by-layer and the fused paths alike."""
    rng = np.random.default_rng(2)
    x = rng.random((6, 7, 7, 2), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]
    grads = []
    for regularized in (True, False):
        minicnn.set_random_seed(2)
        model = _regularized_cnn()
        model.layers[2].rate = 0.0  # no dropout: both runs see the same function
        if not regularized:
            for layer in model.layers:
                layer.regularizers.clear()
        model.compile()
        out = model.forward(x, training=True)
        model.backward(model.loss_and_gradient(y, out)[1])
        if backend == "numba":  # the fused conv unit ran, not the layers one by one
            assert type(model._units()[0]).__name__ == "ConvReluPool"
            assert not model._units()[0]._layerwise
        grads.append(
            [
                (layer, k, layer.grads[k].copy())
                for layer in model.layers
                for k in layer.trainable_names
            ]
        )
    for (layer, k, with_reg), (_, _, without) in zip(*grads):
        reg = layer.regularizers.get(k)
        expected = without + (reg.gradient(layer.params[k]) if reg else 0)
        np.testing.assert_allclose(
            with_reg, expected, rtol=1e-6, atol=1e-7, err_msg=f"{layer.name}/{k}"
        )


# --- the loss fit and evaluate report ------------------------------------------------------------
def test_fit_and_evaluate_report_crossentropy_plus_penalties():
    rng = np.random.default_rng(4)
    x = rng.random((8, 7, 7, 2), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    minicnn.set_random_seed(4)
    model = _regularized_cnn()
    model.layers[2].rate = 0.0
    model.compile(optimizer="sgd")
    # one batch: the epoch's loss is the loss before its update (Keras's running mean)
    out = model.forward(x, training=True)
    ce = model.loss_and_gradient(y, out)[0]
    penalty = model.regularization_loss()
    assert penalty > 0.1 * ce
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(ce + penalty, rel=1e-6)
    ce_now = model.loss_and_gradient(y, model.forward(x))[0]
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        ce_now + model.regularization_loss(), rel=1e-6
    )


# --- saving ---------------------------------------------------------------------------------------
def test_regularized_model_round_trips_through_save(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.random((8, 7, 7, 2), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    minicnn.set_random_seed(5)
    model = _regularized_cnn()
    model.compile()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)
    model.save(tmp_path / "m.npz")
    loaded = minicnn.load_model(tmp_path / "m.npz")
    for ours, theirs in zip(model.layers, loaded.layers):
        assert ours.regularizers == theirs.regularizers, ours.name
    assert loaded.regularization_loss() == model.regularization_loss()
    a = model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=1).history["loss"]
    b = loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=1).history["loss"]
    assert a == b
