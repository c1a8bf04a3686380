"""BatchNormalization: float64 gradient checks, the Numba kernels against the NumPy lesson over
random shapes, the moving statistics and inference by hand, weights, summary and saving."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import gradcheck
from minicnn.config import numba_available
from minicnn.kernels import naive
from minicnn.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
)
from minicnn.model import Sequential
from tests.helpers import assert_close
from tests.tolerances import GRADCHECK_F64, KERNEL_F32, KERNEL_F64

# the naive backend runs the NumPy functions (they are the readable version already)
BACKENDS = ["numpy"] + (["numba"] if numba_available() else [])


def _layer(shape, rng, **kwargs):
    layer = BatchNormalization(**kwargs)
    layer.build_for(shape[1:])
    C = shape[-1]
    for key, values in (
        ("gamma", rng.uniform(0.5, 1.5, C)),
        ("beta", rng.uniform(-1, 1, C)),
        ("moving_mean", rng.uniform(-1, 1, C)),
        ("moving_variance", rng.uniform(0.5, 2.0, C)),
    ):
        if key in layer.params:
            layer.params[key][...] = values
    return layer


# --- float64 gradient checks ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5, 3)], ids=["2d", "4d"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_gradcheck(float64, backend, shape, training, center, scale):
    rng = np.random.default_rng(0)
    layer = _layer(shape, rng, center=center, scale=scale)
    x = rng.standard_normal(shape) * 2 + 0.5
    errors = gradcheck.check_layer(layer, x, rng=rng, training=training)
    assert set(errors) == {"x", *(["gamma"] if scale else []), *(["beta"] if center else [])}
    worst = max(errors, key=errors.get)
    assert errors[worst] < GRADCHECK_F64, f"{worst}: rel error {errors[worst]:.2e}"


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_gradcheck_model_with_batchnorm(float64, backend):
    rng = np.random.default_rng(1)
    minicnn.set_random_seed(1)
    # no bias right before a BatchNormalization: the mean subtraction cancels it, its gradient
    # is exactly 0 and the check would compare two rounding noises (the Keras idiom too)
    model = Sequential(
        [
            Conv2D(3, (3, 3), use_bias=False, input_shape=(6, 6, 2)),
            BatchNormalization(),
            Activation("relu"),
            MaxPooling2D((2, 2)),
            Flatten(),
            Dense(6, use_bias=False),
            BatchNormalization(momentum=0.5),
            Dense(3, activation="softmax"),
        ]
    )
    model.compile()
    x = rng.random((5, 6, 6, 2))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    errors = gradcheck.check_model(model, x, y, rng=rng)
    worst = max(errors, key=errors.get)
    assert errors[worst] < GRADCHECK_F64, f"{worst}: rel error {errors[worst]:.2e}"


# --- Numba == NumPy over random shapes ---------------------------------------------------------
@pytest.mark.skipif(not numba_available(), reason="needs Numba")
@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    M=st.integers(1, 300),
    C=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_numba_kernels_match_numpy(M, C, dtype, seed):
    from minicnn.kernels import numba_batchnorm as nb

    tol = {np.float32: KERNEL_F32, np.float64: KERNEL_F64}[dtype]
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((M, C)) * rng.uniform(0.1, 3) + rng.uniform(-2, 2)).astype(dtype)
    gamma, beta = rng.uniform(0.5, 1.5, C).astype(dtype), rng.uniform(-1, 1, C).astype(dtype)
    eps = 1e-3
    ours, ref = (
        nb.forward_train(x, gamma, beta, eps),
        naive.batchnorm_forward_train(x, gamma, beta, eps),
    )
    for name, a, b in zip(("out", "mean", "var"), ours, ref):
        assert a.dtype == dtype, name
        assert_close(name, a, b, tol, atol=tol)
    scale, shift = gamma * 0.7, beta - 0.2
    assert_close(
        "inference out",
        nb.forward_infer(x, scale, shift),
        naive.batchnorm_forward_infer(x, scale, shift),
        tol,
    )
    mean, inv = ref[1], (1 / np.sqrt(ref[2] + dtype(eps))).astype(dtype)
    dout = rng.standard_normal((M, C)).astype(dtype)
    for training in (True, False):
        ours = nb.backward(dout, x, gamma, mean, inv, training)
        ref = naive.batchnorm_backward(dout, x, gamma, mean, inv, training)
        for name, a, b in zip(("dx", "dgamma", "dbeta"), ours, ref):
            assert a.dtype == dtype, name
            # dx = k * (M*dout - sum dout - xhat * sum(dout*xhat)) cancels: compare to the
            # magnitude of the terms, not of the (small) result
            assert_close(
                f"{name} (training={training})",
                a,
                b,
                tol,
                atol=tol * M * np.abs(dout).max() * np.abs(gamma * inv).max(),
            )


@pytest.mark.skipif(not numba_available(), reason="needs Numba")
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_layer_gives_the_same_on_numba_and_numpy_nhwc(training):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((16, 9, 7, 12)) * 2 + 1).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    results = {}
    old = minicnn.config.backend_setting()
    try:
        for backend in ("numpy", "numba"):
            minicnn.set_backend(backend)
            layer = _layer(x.shape, np.random.default_rng(6), momentum=0.7)
            out = layer.forward(x, training=training)
            dx = layer.backward(dout)
            results[backend] = [out, dx, *(layer.params[k] for k in layer.weight_names)]
            results[backend] += [layer.grads["gamma"], layer.grads["beta"]]
    finally:
        minicnn.set_backend(old)
    names = ["out", "dx", "gamma", "beta", "moving_mean", "moving_variance", "dgamma", "dbeta"]
    for name, a, b in zip(names, results["numba"], results["numpy"]):
        assert_close(name, a, b, KERNEL_F32, atol=KERNEL_F32)


# --- what the layer computes, by hand ----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_moving_statistics_and_inference_by_hand(float64, backend):
    rng = np.random.default_rng(2)
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build_for((4, 3, 2))
    x = rng.standard_normal((5, 4, 3, 2)) * 3 + 1
    out = layer.forward(x, training=True)
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))  # biased (ddof=0), as tf.nn.moments
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.params["moving_variance"], 0.9 + 0.1 * var, rtol=1e-12)
    layer.params["gamma"][...] = [2.0, 0.5]
    layer.params["beta"][...] = [1.0, -1.0]
    mm, mv = layer.params["moving_mean"].copy(), layer.params["moving_variance"].copy()
    out = layer.forward(x, training=False)
    expected = [2.0, 0.5] * (x - mm) / np.sqrt(mv + 1e-3) + [1.0, -1.0]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.params["moving_mean"], mm)  # inference leaves them


def test_weights_in_keras_order_and_moving_statistics_non_trainable():
    model = Sequential(
        [Dense(4, input_shape=(3,)), BatchNormalization(), Dense(2, activation="softmax")]
    )
    layer = model.layers[1]
    assert layer.weight_names == ["gamma", "beta", "moving_mean", "moving_variance"]
    np.testing.assert_array_equal(
        np.stack(layer.get_weights()), [[1] * 4, [0] * 4, [0] * 4, [1] * 4]
    )
    assert layer.trainable_names == ["gamma", "beta"]
    lines = []
    model.summary(print_fn=lines.append)
    # as Keras prints it: the name and type are wider than the column, so the type wraps
    row = next(i for i, s in enumerate(lines) if "│ batch_normalization" in s)
    assert " 16 │" in lines[row]
    assert lines[row + 1].startswith("│ (BatchNormalization) ")
    assert " Non-trainable params: 8 (32.00 B)" in lines
    assert BatchNormalization(center=False, scale=False).get_config()["center"] is False


def test_optimizer_never_touches_the_moving_statistics():
    rng = np.random.default_rng(3)
    x = rng.random((16, 5), dtype=np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    model = Sequential(
        [BatchNormalization(momentum=0.0, input_shape=(5,)), Dense(2, activation="softmax")]
    )
    model.compile(optimizer="adam")
    model.train_on_batch(x, y)
    bnl = model.layers[0]
    # momentum 0: the moving statistics are exactly the last batch's, no optimizer step added
    np.testing.assert_allclose(bnl.params["moving_mean"], x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(bnl.params["moving_variance"], x.var(axis=0), rtol=1e-5)
    assert len(model.optimizer.slot_arrays()) == 2 * 4  # m and v for gamma, beta, kernel, bias
    assert bnl.needs_input_grad is False  # first layer: no input gradient computed


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="momentum"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        BatchNormalization(epsilon=0.0)
    with pytest.raises(ValueError, match="axis"):
        BatchNormalization(axis="channels")
    layer = BatchNormalization(axis=1)
    with pytest.raises(ValueError, match="last"):
        layer(np.zeros((2, 4, 4, 3), np.float32))
    assert BatchNormalization(axis=3)(np.ones((2, 4, 4, 3), np.float32)).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="built for"):
        layer = BatchNormalization()
        layer(np.zeros((2, 3), np.float32))
        layer(np.zeros((2, 4), np.float32))


def test_batchnorm_model_round_trips_through_save(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.random((32, 6, 6, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]
    minicnn.set_random_seed(4)
    model = Sequential(
        [
            Conv2D(4, (3, 3), input_shape=(6, 6, 1)),
            BatchNormalization(),
            Activation("relu"),
            Flatten(),
            Dense(3, activation="softmax"),
        ]
    )
    model.compile()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
    path = tmp_path / "bn.npz"
    model.save(path)
    loaded = minicnn.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    with zipfile.ZipFile(path) as z, z.open("__minicnn__.npy") as f:
        header = json.loads(str(np.lib.format.read_array(f)[()]))
    weights = header["layers"][1]["weights"]
    assert {k: w["trainable"] for k, w in weights.items()} == {
        "gamma": True,
        "beta": True,
        "moving_mean": False,
        "moving_variance": False,
    }
    a = model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=1).history["loss"]
    b = loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=1).history["loss"]
    assert a == b
