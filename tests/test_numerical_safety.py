"""A model never goes silently NaN: non-finite training steps are refused and undone, inference
refuses to return NaN, and every kernel propagates NaN exactly as the layer-by-layer path does.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import optimizers
from minicnn.kernels import naive, numba_ops, numpy_ops
from minicnn.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential
from tests.helpers import assert_state_unchanged, model_state

RNG = np.random.default_rng(11)
X = RNG.random((32, 8, 8, 1)).astype("float32")
Y = np.eye(3, dtype="float32")[RNG.integers(0, 3, 32)]


def seed_like(optimizer, seed=5, batchnorm=False):
    """The seed model's shape on 8x8 images (fused conv+pool+dropouts on the numba backend)."""
    minicnn.set_random_seed(seed)
    layers = [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(2),
              Dropout(0.25), Flatten(), Dropout(0.5), Dense(3, activation="softmax")]
    if batchnorm:
        layers.insert(1, BatchNormalization())
    model = Sequential(layers)
    model.compile(optimizer=optimizer, metrics=["accuracy"])
    return model


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    old = minicnn.config.backend_setting()
    minicnn.set_backend(request.param)
    yield request.param
    minicnn.set_backend(old)


def test_diverging_fit_stops_at_the_last_finite_step(backend):
    # SGD with lr 1 on inputs of 1e18: the first step moves the weights by ~1e18, the next
    # forward pass overflows float32. fit must name the step and keep the state before it.
    # Seed 6: on a third of the seeds the first step kills every relu of the four filters
    # instead, the model outputs its biases and nothing overflows (seed 5 since the dropout
    # masks take 16 bits a unit); the assert on `step` below checks the run did diverge.
    x = X * np.float32(1e18)
    model = seed_like(optimizers.SGD(learning_rate=1.0), seed=6)
    with pytest.raises(FloatingPointError) as e:
        model.fit(x, Y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    message = str(e.value)
    step = int(re.search(r"Epoch 1, step (\d+)/4", message).group(1))
    assert step >= 2 and "not applied" in message
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # the same model, stepped by hand through the steps that succeeded, is bit-identical
    reference = seed_like(optimizers.SGD(learning_rate=1.0), seed=6)
    for k in range(step - 1):
        reference.train_on_batch(x[8 * k : 8 * k + 8], Y[8 * k : 8 * k + 8])
    assert_state_unchanged(
        {**model_state(reference), "loss": model_state(model)["loss"],
         "optimizer": None, "layers": model_state(model)["layers"]},
        _without_optimizer(model), "fit stopped at the last finite step")
    assert model.optimizer.iterations == reference.optimizer.iterations == step - 1


def _without_optimizer(model):
    class View:  # model_state of `model` with the optimizer left out of the comparison
        layers, input_shape, loss, metrics, optimizer = (model.layers, model.input_shape,
                                                         model.loss, model.metrics, None)
    return View


@pytest.mark.parametrize("opt, scale", [(optimizers.SGD, 1e6),
                                        (lambda lr: optimizers.SGD(lr, momentum=0.9), 1e6),
                                        (optimizers.Adam, 1e25)],
                         ids=["sgd", "sgd-momentum", "adam"])
def test_an_overflowing_update_is_refused_whole(backend, opt, scale):
    # SGD: lr 1e38 times a gradient of ~1e5 overflows float32. Adam's step is bounded by its
    # learning rate, but on inputs of 1e25 its second moment g^2 overflows.
    model = seed_like(opt(0.01))
    model.train_on_batch(X[:8], Y[:8])  # one good step: slots and counters to disturb
    if scale == 1e6:
        model.optimizer.learning_rate = 1e38
    before = model_state(model)
    with pytest.raises(FloatingPointError, match=r"update of (conv2d|dense)\S*\.(kernel|bias)"):
        model.train_on_batch(X[:8] * np.float32(scale), Y[:8])
    assert_state_unchanged(before, model, "overflowing update")


@pytest.mark.parametrize("opt", [optimizers.SGD(0.1), optimizers.SGD(0.1, momentum=0.9),
                                 optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                                 optimizers.Adam()], ids=["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_optimizer_refuses_a_non_finite_gradient_before_writing(backend, opt, bad):
    params = [np.ones((4, 3), np.float32), np.zeros(3, np.float32)]
    opt.update(params, [np.full((4, 3), 0.5, np.float32), np.full(3, 0.5, np.float32)])
    before = ([p.copy() for p in params], [v.copy() for v in opt.slot_arrays()], opt.iterations)
    grads = [np.full((4, 3), 0.5, np.float32), np.array([0.5, bad, 0.5], np.float32)]
    with pytest.raises(optimizers.NonFiniteUpdateError, match="gradient holds 1 NaN or inf") as e:
        opt.update(params, grads)
    assert e.value.index == 1
    for got, want in zip(params + opt.slot_arrays(), before[0] + before[1]):
        np.testing.assert_array_equal(got, want)  # parameter 0 untouched too
    assert opt.iterations == before[2]


def test_a_nan_weight_stops_training_before_anything_moves(backend):
    model = seed_like(optimizers.Adam())
    model.train_on_batch(X[:8], Y[:8])
    model.layers[-1].params["kernel"][0, 0] = np.nan
    before = model_state(model)
    with pytest.raises(FloatingPointError, match="loss is nan"):
        model.train_on_batch(X[:8], Y[:8])
    assert_state_unchanged(before, model, "nan weight")  # dropout counters included


def test_a_failed_step_puts_the_moving_statistics_back(backend):
    model = seed_like(optimizers.SGD(learning_rate=0.01), batchnorm=True)
    bn = model.layers[1]
    model.train_on_batch(X[:8], Y[:8])
    model.optimizer.learning_rate = 1e38
    before = model_state(model)
    assert not np.array_equal(bn.params["moving_mean"], 0)  # the good step moved them
    # batchnorm undoes a scaled input, so the gradient is scaled through the loss instead:
    # sample weights of 1e6 make every gradient ~1e6, and 1e38 times that overflows float32
    with pytest.raises(FloatingPointError, match="update of"):
        model.train_on_batch(X[8:16], Y[8:16], sample_weight=np.full(8, 1e6, np.float32))
    assert_state_unchanged(before, model, "moving statistics")


@pytest.mark.parametrize("layer_index, key", [(0, "kernel"), (0, "bias"), (5, "kernel")])
def test_inference_refuses_to_return_nan(backend, layer_index, key):
    model = seed_like(optimizers.Adam())
    model.build((8, 8, 1))
    model.layers[layer_index].params[key].flat[0] = np.nan
    name = f"{model.layers[layer_index].name}.{key}"
    with pytest.raises(FloatingPointError, match=re.escape(name)):
        model.predict(X)
    with pytest.raises(FloatingPointError, match=re.escape(name)):
        model.evaluate(X, Y, verbose=0)
    with pytest.raises(FloatingPointError, match=re.escape(name)):
        model.test_on_batch(X, Y)


# --- NaN through the kernels: every backend, fused or not, the same NaNs ---------------------
def _run_layers(layers, x, training, backend):
    """The layers one by one on `backend`, each Dropout's mask counter rewound to 0 first."""
    old = minicnn.config.backend_setting()
    minicnn.set_backend(backend)
    try:
        for layer in layers:
            if isinstance(layer, Dropout):
                layer.counter = 0
        with np.errstate(invalid="ignore"):  # inf * 0 in the dropout: the point of the test
            for layer in layers:
                x = layer.forward(x, training=training)
        return x
    finally:
        minicnn.set_backend(old)


@pytest.mark.parametrize("where", ["input", "filter", "bias", "inf input"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_fused_unit_propagates_nan_as_the_layers_do(where, training):
    model = seed_like(optimizers.Adam())
    model.build((8, 8, 1))
    x = X.copy()
    if where == "input":
        x[3, 2, 5, 0] = np.nan
    elif where == "inf input":
        x[3, 2, 5, 0] = np.inf  # inf * 0 = NaN where dropout drops it, in both paths
    elif where == "filter":
        model.layers[0].params["kernel"][1, 1, 0, 2] = np.nan
    else:
        model.layers[0].params["bias"][1] = np.nan
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numba")
    try:
        model._set_input_grad_flags()
        unit = model._units()[0]  # the whole seed network: conv .. dropout_1 -> dense
        assert type(unit).__name__ == "ConvReluPoolDense" and len(unit.layers) == 6
        for layer in unit.layers:
            if isinstance(layer, Dropout):
                layer.counter = 0
        with np.errstate(invalid="ignore"):
            probs = unit.forward(x, training=training).copy()
        fused = unit.dense.cache[0].copy()  # the flattened, dropped-out conv output
        logits = unit.dense.preactivation.copy()
    finally:
        minicnn.set_backend(old)
    for backend in ("numba", "numpy"):
        layerwise = _run_layers(unit.layers[:-1], x, training, backend)
        np.testing.assert_array_equal(np.isnan(fused), np.isnan(layerwise), err_msg=backend)
        np.testing.assert_array_equal(np.isinf(fused), np.isinf(layerwise), err_msg=backend)
        ok = np.isfinite(fused)
        np.testing.assert_array_equal(fused[~ok & ~np.isnan(fused)],
                                      layerwise[~ok & ~np.isnan(fused)])  # inf signs
        np.testing.assert_allclose(fused[ok], layerwise[ok], rtol=1e-5, atol=1e-6,
                                   err_msg=backend)
        with np.errstate(invalid="ignore", over="ignore"):
            expected = _run_layers(unit.layers, x, training, backend)
        np.testing.assert_array_equal(np.isnan(probs), np.isnan(expected), err_msg=backend)
        np.testing.assert_array_equal(np.isnan(logits), np.isnan(unit.dense.preactivation))
    assert not np.isfinite(fused).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_max_pool_nan_rule_is_the_same_on_every_backend(data):
    n_nan = data.draw(st.integers(1, 12))
    shape = (2, 6, 7, 3)
    x = np.random.default_rng(data.draw(st.integers(0, 2**31))).standard_normal(shape)
    flat = data.draw(st.lists(st.integers(0, x.size - 1), min_size=n_nan, max_size=n_nan))
    x.flat[flat] = np.nan
    pool, strides, pads = (2, 3), (2, 2), (0, 0, 0, 1)  # uneven windows, padding included
    outs = [m.maxpool2d_forward(x, pool, strides, pads) for m in (naive, numpy_ops, numba_ops)]
    for name, (out, arg) in zip(("numpy", "numba"), outs[1:]):
        np.testing.assert_array_equal(out, outs[0][0], err_msg=f"{name} out")  # NaN == NaN
        np.testing.assert_array_equal(arg, outs[0][1], err_msg=f"{name} argmax")
    assert np.isnan(outs[0][0]).any()
