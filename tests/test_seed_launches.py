"""The seed unit's launches: its backward in one launch, and the worker pool across fork().

conv_pool_dense_backward_c1 does in one launch what took two (the Dense's weight gradient,
split by columns, and the conv's, split by samples): it must give the two-launch form's bits,
the Dense's dW must not depend on the chunk count, and it must equal h.T @ dz. A process made
by fork() after the pool started (whose threads it does not inherit) must still compute.
"""

import multiprocessing
import os

import numpy as np
import pytest

from minicnn.config import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="the kernels need Numba")

if numba_available():
    from minicnn.kernels import numba_conv_pool, numba_dense, numba_threads
    from minicnn.kernels.dropout_mask import keep_threshold, mask_key
    from minicnn.kernels.geometry import conv_geometry
    from minicnn.kernels.numba_threads import run_chunks


def _forward_operands(n, dtype, seed=0, K=3):
    """The seed unit's forward operands (a 3x3 conv on 10x9x1 inputs, 2x2 pool, two dropouts,
    a Dense(K)), with output buffers filled with NaN so that a chunk left out would show."""
    rng = np.random.default_rng(seed)
    g = conv_geometry((10, 9), (3, 3), (1, 1), (0, 0, 0, 0), (2, 2), (2, 2))
    F = 5
    M = g.Hq * g.Wq * F
    x = rng.standard_normal((n, 10, 9, 1)).astype(dtype)
    w = rng.standard_normal((3, 3, 1, F)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) * 0.3
    keys = np.array([mask_key(3, 1), mask_key(8, 4)], np.uint64)
    thresholds = np.array([keep_threshold(0.25), keep_threshold(0.5)], np.uint64)
    scales = np.array([1 / 0.75, 2.0], dtype)
    wt = rng.standard_normal((K, M)).astype(dtype)
    bd = rng.standard_normal(K).astype(dtype)
    out = np.full((n, g.Hq, g.Wq, F), np.nan, dtype)
    code = np.full(out.shape, 9, np.int8)
    z = np.full((n, K), np.nan, dtype)
    return [x, w, b, g, keys, thresholds, scales, wt, bd, out, code, z]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, T", [(1, 1), (2, 2), (7, 2), (7, 3), (16, 5)])
def test_one_launch_backward_gives_the_two_launch_bits(dtype, n, T):
    fwd = _forward_operands(n, dtype)
    run_chunks(numba_conv_pool.conv_pool_dense_forward_c1, n, *fwd, chunks=1)
    x, g, scales, wt, out, code = fwd[0], fwd[3], fwd[6], fwd[7], fwd[9], fwd[10]
    rng = np.random.default_rng(n)
    K = wt.shape[0]
    dz = rng.standard_normal((n, K)).astype(dtype)
    dzp = np.empty((n, K + (-K) % 4), dtype)
    numba_dense.pad_and_sum(dz, dzp, np.empty(K, dtype))
    h = out.reshape(n, -1)
    wd = np.ascontiguousarray(wt.T)

    def parts(T):
        return np.zeros((T, 9 * 5), dtype), np.zeros((T, g.Wq * 5), dtype)

    dwd = np.full(wd.shape, np.nan, dtype)  # NaN: a column no chunk wrote would show
    pw, pb = parts(T)
    run_chunks(numba_conv_pool.conv_pool_dense_backward_c1, n, dzp, h, dwd, wt, code, x,
               scales, g, pw, pb, chunks=T)

    two_dwd = np.full(wd.shape, np.nan, dtype)  # the two launches it replaces
    two_pw, two_pb = parts(T)
    run_chunks(numba_dense.dense_backward, h.shape[1], dzp, h, wd, False,
               np.empty((0, 0), dtype), two_dwd)
    run_chunks(numba_conv_pool.conv_pool_dense_backward_3x3, n, dz, wt, code, x, scales, g,
               two_pw, two_pb, chunks=T)
    for a, b in ((dwd, two_dwd), (pw, two_pw), (pb, two_pb)):
        np.testing.assert_array_equal(a, b)

    one_dwd = np.full(wd.shape, np.nan, dtype)  # the Dense's dW: the same bits for one chunk
    run_chunks(numba_conv_pool.conv_pool_dense_backward_c1, n, dzp, h, one_dwd, wt,
               code, x, scales, g, *parts(1), chunks=1)
    np.testing.assert_array_equal(dwd, one_dwd)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dwd, h.T @ dz, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, T", [(1, 1), (4, 1), (9, 1), (9, 2), (16, 3)])
def test_ten_logits_take_one_pass_with_the_general_bits(dtype, n, T):
    """With the seed's Dense(10) behind two dropouts, the backward makes four samples'
    gradients at the flat output in one pass (conv_pool_dense_backward_k10): it must give the
    bits of the general route, sample by sample, including a chunk's last few samples, and so
    must its one-launch form."""
    fwd = _forward_operands(n, dtype, K=10)
    run_chunks(numba_conv_pool.conv_pool_dense_forward_c1, n, *fwd, chunks=1)
    x, g, scales, wt, code = fwd[0], fwd[3], fwd[6], fwd[7], fwd[10]
    dz = np.random.default_rng(n).standard_normal((n, 10)).astype(dtype)
    pw, pb = np.zeros((T, 9 * 5), dtype), np.zeros((T, g.Wq * 5), dtype)
    assert numba_conv_pool.is_k10(wt, scales)
    run_chunks(numba_conv_pool.conv_pool_dense_backward_k10, n, dz, wt, code, x, scales, g,
               pw, pb, chunks=T)
    dzp = np.zeros((n, 12), dtype)  # the one-launch form reads dz padded to 12 logits
    dzp[:, :10] = dz
    h = fwd[9].reshape(n, -1)
    dwd, one_w, one_b = np.empty((h.shape[1], 10), dtype), np.zeros_like(pw), np.zeros_like(pb)
    run_chunks(numba_conv_pool.conv_pool_dense_backward_c1_k10, n, dzp, h, dwd, wt, code, x,
               scales, g, one_w, one_b, chunks=T)

    M = wt.shape[1]  # the general route: a pair of rows, then the scales, then dW
    want_w, want_b = np.zeros_like(pw), np.zeros_like(pb)
    for t in range(T):
        dw, db = want_w[t].reshape(3, 3, 1, 5), want_b[t, :5]
        for s in range(t * n // T, (t + 1) * n // T):
            row, twin, gs = np.empty(M, dtype), np.empty(M, dtype), np.empty(M, dtype)
            numba_conv_pool._dense_dx_rows(dz[s], dz[s], wt, row, twin)
            numba_conv_pool._scaled(row, scales, gs)
            numba_conv_pool._dw3x3_pool2x2(x[s], gs.reshape(g.Hq, g.Wq, 5), code[s], dw, db)
    for got in ((pw, pb), (one_w, one_b)):
        np.testing.assert_array_equal(got[0], want_w)
        np.testing.assert_array_equal(got[1], want_b)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dwd, h.T @ dz, rtol=tol, atol=tol)  # the Dense's dW as well
    assert np.abs(pw).sum() > 0  # gradients did flow: the comparison is not of zeros


def _child_trains(queue):
    """In a forked child: train a step and predict with the numba backend; report the
    probabilities."""
    try:
        import minicnn
        from minicnn import architectures

        minicnn.set_backend("numba")
        minicnn.set_random_seed(0)
        model = architectures.build("seed")
        model.compile(loss="categorical_crossentropy", optimizer="adam")
        rng = np.random.default_rng(0)
        x = rng.random((8, 28, 28, 1), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
        model.train_on_batch(x, y)
        queue.put(model.predict(x, verbose=0))
    except BaseException as e:  # the parent reports it
        queue.put(("error", repr(e)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_makes_its_own_worker_pool():
    import minicnn
    from minicnn import architectures

    minicnn.set_backend("numba")
    model = architectures.build("seed")
    model.predict(np.zeros((4, 28, 28, 1), np.float32), verbose=0)  # the parent's pool starts
    assert numba_threads._workers  # the parent's workers run
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_trains, args=(queue,))
    child.start()
    child.join(120)  # the result is small: the child's queue does not block its exit
    assert child.exitcode == 0  # without a new pool the child's first launch waits forever
    probs = queue.get(timeout=10)
    assert not (isinstance(probs, tuple) and probs[0] == "error"), probs
    assert probs.shape == (8, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
