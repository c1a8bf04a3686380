"""The vectorised NumPy kernels against the naive loops, and the loops against hand-worked cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.kernels import naive, numpy_ops
from minicnn.kernels.geometry import window_1d, window_2d
from tests.helpers import assert_close
from tests.tolerances import KERNEL_F32, KERNEL_F64

TOL = {np.float32: KERNEL_F32, np.float64: KERNEL_F64}


@st.composite
def conv_cases(draw, max_hw=8):
    """A random conv/pool geometry that is valid for its padding."""
    padding = draw(st.sampled_from(["valid", "same"]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h = draw(st.integers(kh if padding == "valid" else 1, max_hw))
    w = draw(st.integers(kw if padding == "valid" else 1, max_hw))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    (ho, wo), pads = window_2d((h, w), (kh, kw), strides, padding)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return dict(x=rng.standard_normal((n, h, w, c)).astype(dtype),
                w=rng.standard_normal((kh, kw, c, f)).astype(dtype),
                b=rng.standard_normal(f).astype(dtype),
                dout=rng.standard_normal((n, ho, wo, f)).astype(dtype),
                dpool=rng.standard_normal((n, ho, wo, c)).astype(dtype),
                strides=strides, pads=pads, dtype=dtype, k=(kh, kw))


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_conv_numpy_matches_naive(case):
    x, w, b, s, p, tol = case["x"], case["w"], case["b"], case["strides"], case["pads"], \
        TOL[case["dtype"]]
    ref = naive.conv2d_forward(x, w, b, s, p)
    assert_close("conv forward (im2col)", numpy_ops.conv2d_forward(x, w, b, s, p), ref, tol)
    assert_close("conv forward (offsets)", numpy_ops.conv2d_forward_offsets(x, w, b, s, p), ref,
                 tol)
    dout = case["dout"]
    assert_close("conv dx", numpy_ops.conv2d_backward_input(dout, w, x.shape, s, p),
                 naive.conv2d_backward_input(dout, w, x.shape, s, p), tol)
    assert_close("conv dw", numpy_ops.conv2d_backward_weights(dout, x, case["k"], s, p),
                 naive.conv2d_backward_weights(dout, x, case["k"], s, p), tol)


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_maxpool_numpy_matches_naive(case):
    x, s, p, k = case["x"], case["strides"], case["pads"], case["k"]
    out, arg = numpy_ops.maxpool2d_forward(x, k, s, p)
    ref_out, ref_arg = naive.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(out, ref_out)  # a max is exact: no rounding anywhere
    np.testing.assert_array_equal(arg, ref_arg)
    dout = case["dpool"]
    assert_close("pool dx", numpy_ops.maxpool2d_backward(dout, arg, x.shape, k, s, p),
                 naive.maxpool2d_backward(dout, ref_arg, x.shape, k, s, p), TOL[case["dtype"]])


def test_dense_numpy_matches_naive(rng):
    x, w, b, dout = (rng.standard_normal(s) for s in ((4, 7), (7, 3), (3,), (4, 3)))
    assert_close("dense out", numpy_ops.dense_forward(x, w, b), naive.dense_forward(x, w, b),
                 KERNEL_F64)
    for name, a, e in zip(("dx", "dw", "db"), numpy_ops.dense_backward(dout, x, w),
                          naive.dense_backward(dout, x, w)):
        assert_close(f"dense {name}", a, e, KERNEL_F64)


def test_conv_3x3_on_4x4_by_hand():
    # x = 0..15 row-major, a kernel with 1 at the centre and -1 at top-left:
    # out[i, j] = x[i+1, j+1] - x[i, j] = 5 everywhere (one row down and one across is +4+1).
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.zeros((3, 3, 1, 1))
    w[1, 1, 0, 0], w[0, 0, 0, 0] = 1.0, -1.0
    expected = np.full((1, 2, 2, 1), 5.0) + 0.5
    for impl in (naive.conv2d_forward, numpy_ops.conv2d_forward):
        np.testing.assert_array_equal(impl(x, w, np.array([0.5]), (1, 1), (0, 0, 0, 0)),
                                      expected)
    # 'same' padding on 4x4 pads one pixel each side; top-left output sees x[0,0] at the centre
    # and a padded zero at top-left: 0 - 0 + 0.5.
    out = naive.conv2d_forward(x, w, np.array([0.5]), (1, 1), (1, 1, 1, 1))
    assert out.shape == (1, 4, 4, 1) and out[0, 0, 0, 0] == 0.5 and out[0, 3, 3, 0] == 5.5
    # dw by hand: dL/dw[p,q] = sum_ij x[i+p, j+q] * dout[i,j]; with dout = 1 at (0,0) only,
    # dw[p,q] = x[p,q].
    dout = np.zeros((1, 2, 2, 1))
    dout[0, 0, 0, 0] = 1.0
    dw = naive.conv2d_backward_weights(dout, x, (3, 3), (1, 1), (0, 0, 0, 0))
    np.testing.assert_array_equal(dw[:, :, 0, 0], x[0, :3, :3, 0])


def test_maxpool_2x2_known_argmax():
    x = np.array([[1, 3, 2, 0],
                  [4, 2, 9, 9],
                  [0, 0, 5, 1],
                  [0, 7, 1, 5]], dtype=np.float64).reshape(1, 4, 4, 1)
    for impl in (naive.maxpool2d_forward, numpy_ops.maxpool2d_forward):
        out, arg = impl(x, (2, 2), (2, 2), (0, 0, 0, 0))
        np.testing.assert_array_equal(out[0, :, :, 0], [[4, 9], [7, 5]])
        # the tie 9, 9 goes to the first in row-major order (index 2 of [2, 0, 9, 9]);
        # the tie 5, 5 in the last window to index 0 of [5, 1, 1, 5]
        np.testing.assert_array_equal(arg[0, :, :, 0], [[2, 2], [3, 0]])
    dx = naive.maxpool2d_backward(np.ones((1, 2, 2, 1)), arg, x.shape, (2, 2), (2, 2),
                                  (0, 0, 0, 0))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 1, 0],
                                                  [0, 1, 0, 0]])


@pytest.mark.parametrize("n,k,s,padding,expected", [
    (28, 3, 1, "valid", (26, 0, 0)), (26, 2, 2, "valid", (13, 0, 0)), (5, 2, 2, "valid", (2, 0, 0)),
    (28, 3, 1, "same", (28, 1, 1)), (5, 2, 2, "same", (3, 0, 1)), (6, 3, 2, "same", (3, 0, 1)),
    (7, 4, 1, "same", (7, 1, 2)),
])
def test_window_sizes_follow_keras(n, k, s, padding, expected):
    # 'same' puts the odd padding pixel after (bottom/right), as TensorFlow does
    assert window_1d(n, k, s, padding) == expected


def test_valid_window_larger_than_input_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        window_1d(2, 3, 1, "valid")
