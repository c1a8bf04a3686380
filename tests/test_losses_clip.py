"""CategoricalCrossentropy(clip_probabilities=True): the form Keras computes on JAX and PyTorch
(always from the probabilities, clipped), beside the default TensorFlow form (from a softmax
output's logits). Keras parity of both is in the parity suite; here the math and the plumbing."""

from __future__ import annotations

import numpy as np
import pytest

import minicnn
from minicnn import gradcheck, losses
from minicnn.layers import Dense, Flatten
from minicnn.model import Sequential
from tests.tolerances import GRADCHECK_F64


def _model(clip: bool, activation: str = "softmax") -> Sequential:
    minicnn.set_random_seed(0)
    model = Sequential([Flatten(input_shape=(3, 3, 1)), Dense(4, activation=activation)])
    model.compile(loss=losses.CategoricalCrossentropy(clip_probabilities=clip), optimizer="adam")
    return model


def test_option_survives_compile_and_is_validated():
    x = np.zeros((1, 3, 3, 1), dtype=np.float32)
    model, default = _model(True), _model(False)
    model.forward(x), default.forward(x)
    assert model.loss.clip_probabilities is True
    assert not model._fused_loss()  # no logits: the softmax's own backward runs
    assert default._fused_loss()
    assert losses.get(losses.CategoricalCrossentropy(clip_probabilities=True)).clip_probabilities
    sparse = losses.get(losses.SparseCategoricalCrossentropy(clip_probabilities=True))
    assert isinstance(sparse, losses.SparseCategoricalCrossentropy) and sparse.clip_probabilities
    with pytest.raises(ValueError, match="clip_probabilities"):
        losses.CategoricalCrossentropy(clip_probabilities="yes")


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_clipped_form_gradient_through_the_output_layer(float64, activation, rng):
    model = _model(True, activation)
    x = rng.random((5, 3, 3, 1))
    y = np.eye(4)[rng.integers(0, 4, 5)]
    errors = gradcheck.check_model(model, x, y, rng, max_entries=20)
    assert max(errors.values()) < GRADCHECK_F64, errors


def test_the_forms_agree_until_a_probability_saturates(rng):
    x = rng.random((8, 3, 3, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    a, b = _model(False), _model(True)
    la, lb = a.test_on_batch(x, y), b.test_on_batch(x, y)
    assert lb == pytest.approx(la, rel=1e-6)


def test_confidently_wrong_sample_stops_teaching_when_clipped():
    # logits (0, 20, 0, 0), target 0: p_0 = 2e-9 < 1e-7. From the logits the loss is ~20 and
    # dL/dz_0 = p_0 - 1 = -1; clipped (Keras on JAX / PyTorch) -log(1e-7) = 16.12 and 0.
    model = _model(True)
    z = np.array([[0.0, 20.0, 0.0, 0.0]], dtype=np.float32)
    y = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    p = np.exp(z) / np.exp(z).sum()
    loss, dp = model.loss.with_probabilities(y, p)
    dz = model.layers[-1].activation.backward(dp, z, p)
    assert loss == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert np.all(dz == 0)
    loss_l, dz_l = losses.CategoricalCrossentropy().with_logits(y, z)
    assert loss_l == pytest.approx(20.0, rel=1e-6) and dz_l[0, 0] == pytest.approx(-1.0)


def test_option_survives_save_and_load(tmp_path):
    from minicnn import architectures

    model = architectures.seed_model()
    model.compile(loss=losses.CategoricalCrossentropy(clip_probabilities=True), optimizer="adam")
    model.save(tmp_path / "m.npz")
    loaded = minicnn.load_model(tmp_path / "m.npz")
    assert isinstance(loaded.loss, losses.CategoricalCrossentropy)
    assert loaded.loss.clip_probabilities is True
