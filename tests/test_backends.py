"""Training with the Numba backend follows the NumPy backend's loss curve; the switch works; the
kernels still run (slowly, as plain Python) with NUMBA_DISABLE_JIT=1, so they stay debuggable."""

import textwrap

import numpy as np
import pytest

import minicnn
from minicnn import architectures
from minicnn.config import numba_available
from minicnn.kernels.dispatch import ops
from minicnn.utils import to_categorical
from tests.helpers import run_without_jit

pytestmark = pytest.mark.skipif(not numba_available(), reason="Numba is not installed")

# Ten SGD steps in float32 on two backends that sum in different orders (loops vs BLAS,
# per-thread partial sums, fused multiply-adds): each op differs by ~1e-7 relative, and so does
# the loss (measured: ~1e-7); 1e-5 relative is the bar.
LOSS_CURVE_F32 = 1e-5
# The same with Adam: m / sqrt(v) turns the rounding noise of a near-zero gradient into a full
# learning-rate step of either sign, and a few such weights move the loss (measured: up to 6e-6
# on the deep model).
LOSS_CURVE_ADAM_F32 = 1e-4
# The weights after ten SGD steps: rounding differences of the gradients times the learning
# rate, on weights of size ~0.1 (measured: ~1e-8). After Adam they are compared through the
# loss only, for the reason above.
WEIGHTS_F32 = 1e-6


def _train(backend, builder, x, y, steps, batch, optimizer="adam"):
    old = minicnn.config.backend_setting()
    minicnn.set_backend(backend)
    try:
        minicnn.set_random_seed(0)
        model = builder(input_shape=x.shape[1:])
        model.compile(optimizer=optimizer, metrics=["accuracy"])
        losses = [
            model.train_on_batch(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])[0]
            for i in range(steps)
        ]
        return np.array(losses), model.get_weights(), model.predict(x[:batch])
    finally:
        minicnn.set_backend(old)


@pytest.mark.parametrize("builder,hw",
                         [(architectures.seed_model, 16), (architectures.deep_model, 14)])
def test_numba_training_follows_numpy(builder, hw):
    rng = np.random.default_rng(0)
    steps, batch = 10, 32
    x = rng.random((steps * batch, hw, hw, 1), dtype=np.float32)
    y = to_categorical(rng.integers(0, 10, steps * batch), 10)
    # dropout on: both backends draw the same masks
    ref_loss, _, _ = _train("numpy", builder, x, y, steps, batch)
    loss, _, _ = _train("numba", builder, x, y, steps, batch)
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_CURVE_ADAM_F32, err_msg="Adam loss curve")
    ref_loss, ref_w, ref_p = _train("numpy", builder, x, y, steps, batch, "sgd")
    loss, w, p = _train("numba", builder, x, y, steps, batch, "sgd")
    np.testing.assert_allclose(loss, ref_loss, rtol=LOSS_CURVE_F32, err_msg="SGD loss curve")
    for i, (a, b) in enumerate(zip(w, ref_w)):
        np.testing.assert_allclose(a, b, atol=WEIGHTS_F32, err_msg=f"weight {i} after SGD")
    np.testing.assert_allclose(p, ref_p, atol=WEIGHTS_F32, err_msg="predictions")


def test_backend_switch():
    old = minicnn.config.backend_setting()
    try:
        minicnn.set_backend("auto")
        assert minicnn.get_backend() == "numba"
        for name in ("naive", "numpy", "numba"):
            minicnn.set_backend(name)
            assert ops().name == name
            assert ops().conv2d_forward.__module__ == {
                "naive": "minicnn.kernels.naive", "numpy": "minicnn.kernels.numpy_ops",
                "numba": "minicnn.kernels.numba_ops"}[name]
        with pytest.raises(ValueError, match="Received: name='cuda'"):
            minicnn.set_backend("cuda")
    finally:
        minicnn.set_backend(old)


def test_compute_scope_keeps_blas_on_one_thread_and_restores_it():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return {
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        }

    with ops("numba").compute_scope():
        assert blas_threads() == {1}
        before_inner = blas_threads()
    after = blas_threads()
    with ops("numpy").compute_scope():
        assert blas_threads() == after  # the NumPy backend leaves BLAS alone
    assert before_inner == {1}


DISABLED_JIT_SCRIPT = textwrap.dedent("""
    import warnings
    import numpy as np
    import numba
    assert numba.config.DISABLE_JIT
    import minicnn
    from minicnn import fusion
    from minicnn.kernels import naive, numba_conv_pool, numba_ops
    from minicnn.kernels.dropout_mask import keep_mask, mask_key, keep_threshold
    from minicnn.layers import Conv2D, MaxPooling2D, Dropout, Flatten, Dense

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 7, 2)); w = rng.standard_normal((3, 3, 2, 3))
    b = rng.standard_normal(3); s, p = (1, 1), (1, 1, 1, 1)
    def close(a, e):
        assert np.allclose(a, e, rtol=1e-12, atol=1e-12), np.abs(a - e).max()
    close(numba_ops.conv2d_forward(x, w, b, s, p), naive.conv2d_forward(x, w, b, s, p))
    d = rng.standard_normal((2, 6, 7, 3))
    close(numba_ops.conv2d_backward_input(d, w, x.shape, s, p),
          naive.conv2d_backward_input(d, w, x.shape, s, p))
    close(numba_ops.conv2d_backward_weights(d, x, (3, 3), s, p),
          naive.conv2d_backward_weights(d, x, (3, 3), s, p))
    out, arg = numba_ops.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    close(out, naive.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))[0])
    with np.errstate(over="ignore"):  # uint64 products wrap, as the hash means them to
        key, thr = np.uint64(mask_key(5, 2)), np.uint64(keep_threshold(0.4))
        out, code = np.ones(300), np.zeros(300, np.int8)
        numba_conv_pool._dropout_rows(out, code, 0, np.array([key]), np.array([thr]),
                                      np.array([1.0]), *numba_conv_pool.dropout_scratch(300))
    assert np.array_equal(code >= 0, keep_mask(5, 2, 300, 0.4))

    minicnn.set_floatx("float64")
    def stack():
        minicnn.set_random_seed(1)
        layers = [Conv2D(3, 3, activation="relu"), MaxPooling2D(), Dropout(0.3, seed=4),
                  Flatten()]
        shape = (8, 8, 2)
        for layer in layers:
            layer.build_for(shape)
            shape = layer.compute_output_shape(shape)
        layers[0].params["bias"][...] = 0.1
        return layers
    ref, layers = stack(), stack()
    minicnn.set_backend("numpy")
    xs = rng.standard_normal((2, 8, 8, 2))
    e = xs
    for layer in ref:
        e = layer.forward(e, training=True)
    unit = fusion.plan(layers + [Dense(2)], "numba")[0]
    with np.errstate(over="ignore"):
        close(unit.forward(xs, training=True), e)
    g = np.ones_like(e)
    unit.backward(g)
    for layer in reversed(ref):
        g = layer.backward(g)
    close(layers[0].grads["kernel"], ref[0].grads["kernel"])
    print("ok")
""")


def test_kernels_run_with_the_jit_disabled():
    run_without_jit(DISABLED_JIT_SCRIPT)
