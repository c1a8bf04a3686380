"""Finite-difference gradient checks in float64 with a random upstream gradient (every layer,
the fused softmax + crossentropy, the clipped-probability loss, and whole models)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import gradcheck, losses
from minicnn.architectures import deep_model, seed_model
from minicnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from tests.tolerances import GRADCHECK_F64

pytestmark = pytest.mark.usefixtures("float64")

LAYERS = [
    ("conv valid relu", lambda: Conv2D(3, (3, 3), activation="relu"), (2, 6, 6, 2), False),
    ("conv same stride 2", lambda: Conv2D(2, (3, 2), strides=2, padding="same"), (2, 5, 6, 3),
     False),
    ("conv tanh no bias", lambda: Conv2D(2, 2, activation="tanh", use_bias=False), (1, 4, 4, 1),
     False),
    ("maxpool 2x2", lambda: MaxPooling2D((2, 2)), (2, 5, 5, 3), False),
    ("maxpool 3x3 s2 same", lambda: MaxPooling2D(3, strides=2, padding="same"), (2, 6, 5, 2),
     False),
    ("dense sigmoid", lambda: Dense(4, activation="sigmoid"), (3, 6), False),
    ("dense softmax", lambda: Dense(5, activation="softmax"), (3, 4), False),
    ("flatten", lambda: Flatten(), (2, 3, 2, 2), False),
    ("dropout (training)", lambda: Dropout(0.4), (3, 8), True),
    ("activation relu", lambda: Activation("relu"), (3, 7), False),
]


@pytest.mark.parametrize("backend", ["naive", "numpy"], indirect=True)
@pytest.mark.parametrize("name,make,shape,training", LAYERS, ids=[t[0] for t in LAYERS])
def test_layer_gradients(backend, name, make, shape, training, rng):
    layer = make()
    x = rng.standard_normal(shape)
    layer.build_for(shape[1:])
    for key, err in gradcheck.check_layer(layer, x, rng, training=training).items():
        assert err < GRADCHECK_F64, f"{name}: d{key} relative error {err:.2e}"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # float64 holds throughout
@given(n=st.integers(1, 3), hw=st.integers(3, 7), c=st.integers(1, 3), f=st.integers(1, 3),
       k=st.integers(1, 3), s=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
       seed=st.integers(0, 1000))
def test_conv_gradients_hold_for_random_geometry(n, hw, c, f, k, s, padding, seed):
    rng = np.random.default_rng(seed)
    layer = Conv2D(f, k, strides=s, padding=padding)
    layer.build_for((hw, hw, c))
    errors = gradcheck.check_layer(layer, rng.standard_normal((n, hw, hw, c)), rng)
    assert max(errors.values()) < GRADCHECK_F64, errors


def test_fused_softmax_crossentropy_gradient(rng):
    z = rng.standard_normal((4, 6)) * 3
    y = np.eye(6)[rng.integers(0, 6, 4)]
    loss, dz = losses.CategoricalCrossentropy().with_logits(y, z)
    numeric = gradcheck.numerical_gradient(
        lambda: losses.CategoricalCrossentropy().with_logits(y, z)[0], z)
    assert gradcheck.rel_error(dz, numeric) < GRADCHECK_F64
    # and the value: -mean log p of the true class, computed independently
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[y.astype(bool)])), rel=1e-12)


def test_clipped_probability_crossentropy_gradient(rng):
    p = rng.random((5, 4)) + 0.05          # unnormalised, inside the clip range
    y = np.eye(4)[rng.integers(0, 4, 5)]
    cce = losses.CategoricalCrossentropy()
    _, dp = cce.with_probabilities(y, p)
    numeric = gradcheck.numerical_gradient(lambda: cce.with_probabilities(y, p)[0], p)
    assert gradcheck.rel_error(dp, numeric) < GRADCHECK_F64


def test_clipping_matches_keras_formula():
    # p = 0 for the true class: Keras clips to 1e-7, so the loss is -log(1e-7) = 16.118...
    y = np.array([[0.0, 1.0]])
    assert losses.CategoricalCrossentropy()(y, np.array([[1.0, 0.0]])) == pytest.approx(
        -np.log(1e-7), rel=1e-9)


@pytest.mark.parametrize("backend", ["numpy"], indirect=True)
@pytest.mark.parametrize("build", [seed_model, deep_model], ids=["seed", "deep"])
def test_whole_model_gradients(backend, build, rng):
    """Every parameter of the seed and deep models, dropout on (frozen masks), input included.
    Small images keep it fast; the layer stack is the real one."""
    model = build(input_shape=(10, 10, 1))
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    x = rng.random((3, 10, 10, 1))
    y = np.eye(10)[rng.integers(0, 10, 3)]
    errors = gradcheck.check_model(model, x, y, rng, max_entries=25)
    worst = max(errors, key=errors.get)
    assert errors[worst] < GRADCHECK_F64, f"{worst}: relative error {errors[worst]:.2e}"


def test_sparse_and_categorical_losses_agree(rng):
    z = rng.standard_normal((6, 3))
    labels = rng.integers(0, 3, 6)
    a = losses.SparseCategoricalCrossentropy().with_logits(labels, z)
    b = losses.CategoricalCrossentropy().with_logits(minicnn.utils.to_categorical(labels, 3), z)
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)
