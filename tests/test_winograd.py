"""Winograd F(2x2, 3x3) (numba_winograd) against its NumPy twin, the direct convolution and the
direct fused kernels: outputs, winner codes, dropout masks and NaN.

Three oracles: naive.winograd_conv2d_forward (the same algorithm, as matrices), the direct
sums (naive.conv2d_forward; numpy_ops' im2col + BLAS for many channels, where the naive loops
are too slow), and the fused direct kernels numba_conv_pool.conv_pool_forward[_3x3]. Shapes are
small; Hypothesis is derandomised and has no deadline (the first example of each dtype carries
the JIT compile or the cache load).
"""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minicnn.kernels import naive, numpy_ops
from minicnn.kernels.dropout_mask import keep_mask, keep_threshold, mask_key
from minicnn.kernels.geometry import conv_geometry, window_2d
from tests.helpers import assert_close, run_without_jit
from tests.tolerances import KERNEL_F32, KERNEL_F64

numba_ops = pytest.importorskip("minicnn.kernels.numba_ops")
from minicnn.kernels import numba_conv_pool, numba_winograd  # noqa: E402
from minicnn.kernels.numba_threads import run_chunks  # noqa: E402

TOL = {np.float32: KERNEL_F32, np.float64: KERNEL_F64}
SETTINGS = dict(max_examples=30, deadline=None, derandomize=True)


def winograd_conv(x, w, b, pads):
    """numba_winograd.winograd_forward on the batch, whatever the channel count."""
    N, H, W, _ = x.shape
    g = conv_geometry((H, W), (3, 3), (1, 1), pads)
    U = numba_winograd.winograd_filters(w, x.dtype)
    bp = numba_winograd.padded_bias(b, U.shape[2], x.dtype)
    out = np.empty((N, g.Ho, g.Wo, w.shape[3]), x.dtype)
    run_chunks(numba_winograd.winograd_forward, N, x, U, bp, g, out)
    return out


def dropouts(seeds, rates, counter, dtype):
    """(keys, thresholds, scales) for the fused kernels, as fusion.ConvReluPool makes them."""
    keys = np.array([mask_key(s, counter) for s in seeds], np.uint64)
    thresholds = np.array([keep_threshold(r) for r in rates], np.uint64)
    return keys, thresholds, np.array([1 / (1 - r) for r in rates], dtype)


def pool_forward(kernel, x, w, b, pads, drop):
    """A fused kernel (3x3 conv, 2x2 pool) on the batch -> (out, code)."""
    N, H, W, _ = x.shape
    g = conv_geometry((H, W), (3, 3), (1, 1), pads, (2, 2), (2, 2))
    out = np.empty((N, g.Hq, g.Wq, w.shape[3]), x.dtype)
    code = np.empty(out.shape, np.int8)
    if kernel is numba_winograd.winograd_pool_forward:
        U = numba_winograd.winograd_filters(w, x.dtype)
        w, b = U, numba_winograd.padded_bias(b, U.shape[2], x.dtype)
    run_chunks(kernel, N, x, w, b, g, *drop, out, code)
    return out, code


def pool_relu_dropout(z, seeds, rates, counter):
    """The fused unit's rules applied to a conv output z, in NumPy: 2x2 max-pool (naive's
    first-maximum and NaN rules), relu, the dropout masks in order -> (out, code)."""
    pooled, arg = naive.maxpool2d_forward(z, (2, 2), (2, 2), (0, 0, 0, 0))
    alive = pooled > 0
    out = np.where(alive | np.isnan(pooled), pooled, 0).astype(z.dtype)
    code = np.where(alive, arg, -1).astype(np.int8)
    for seed, rate in zip(seeds, rates):
        keep = keep_mask(seed, counter, out.size, rate).reshape(out.shape)
        out = out * np.where(keep, z.dtype.type(1 / (1 - rate)), z.dtype.type(0))
        code = np.where(keep, code, np.int8(-1))
    return out, code


@st.composite
def cases(draw, max_hw=9, channels=(1, 2, 3, 5), filters=(1, 2, 4, 6)):
    """A 3x3 stride-1 conv: 'valid', 'same' or uneven explicit pads (0 to 2 a side), odd and
    even sizes, float32 or float64."""
    padding = draw(st.sampled_from(["valid", "same", "explicit"]))
    h = draw(st.integers(3 if padding == "valid" else 1, max_hw))
    w = draw(st.integers(3 if padding == "valid" else 1, max_hw))
    n = draw(st.integers(1, 3))
    c, f = draw(st.sampled_from(channels)), draw(st.sampled_from(filters))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    if padding == "explicit":
        pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
        assume(h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3)
    else:
        _, pads = window_2d((h, w), (3, 3), (1, 1), padding)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return dict(
        x=rng.standard_normal((n, h, w, c)).astype(dtype),
        w=rng.standard_normal((3, 3, c, f)).astype(dtype),
        b=rng.standard_normal(f).astype(dtype),
        pads=pads,
        dtype=dtype,
    )


@settings(**SETTINGS)
@given(cases())
def test_winograd_matches_its_twin_and_the_direct_sum(case):
    x, w, b, pads, tol = case["x"], case["w"], case["b"], case["pads"], TOL[case["dtype"]]
    out = winograd_conv(x, w, b, pads)
    assert out.dtype == case["dtype"]
    assert_close("winograd vs its twin", out, naive.winograd_conv2d_forward(x, w, b, pads), tol)
    assert_close("winograd vs direct", out, naive.conv2d_forward(x, w, b, (1, 1), pads), tol)


def test_the_twin_matches_the_direct_sum(rng):
    x = rng.standard_normal((2, 7, 6, 3))
    w, b = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4)
    for pads in ((0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 2)):
        assert_close(f"twin {pads}", naive.winograd_conv2d_forward(x, w, b, pads),
                     naive.conv2d_forward(x, w, b, (1, 1), pads), KERNEL_F64)


# Channel and filter counts around the kernel's pass widths (CB = FB = 64): one partial pass,
# whole passes, a whole pass and a bit.
@pytest.mark.parametrize("c, f", [(8, 64), (17, 5), (64, 65), (65, 128), (130, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_channels_match_im2col(rng, c, f, dtype):
    x = rng.standard_normal((3, 9, 8, c)).astype(dtype)
    w = (rng.standard_normal((3, 3, c, f)) / np.sqrt(9 * c)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    for pads in ((0, 0, 0, 0), (1, 1, 1, 1)):
        assert_close(f"winograd C={c} F={f} {pads}", winograd_conv(x, w, b, pads),
                     numpy_ops.conv2d_forward(x, w, b, (1, 1), pads), TOL[dtype])


@pytest.mark.parametrize("h, w, c, f", [(7, 6, 32, 16), (8, 9, 48, 8), (5, 5, 64, 32)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_gradient_by_winograd_matches_im2col(rng, h, w, c, f, padding, dtype):
    # numba_ops runs dx of these by Winograd: the forward kernel on dout, zero-padded by
    # 2 - pad, with the kernel flipped and its channel axes swapped
    (ho, wo), pads = window_2d((h, w), (3, 3), (1, 1), padding)
    dout = rng.standard_normal((3, ho, wo, f)).astype(dtype)
    k = (rng.standard_normal((3, 3, c, f)) / np.sqrt(9 * f)).astype(dtype)
    assert numba_ops._winograd(conv_geometry((h, w), (3, 3), (1, 1), pads), f, c)
    assert_close(f"dx C={c} F={f} {padding}",
                 numba_ops.conv2d_backward_input(dout, k, (3, h, w, c), (1, 1), pads),
                 numpy_ops.conv2d_backward_input(dout, k, (3, h, w, c), (1, 1), pads), TOL[dtype])


@st.composite
def fused_cases(draw):
    """cases() with the fused unit's extras: dropouts (none, one or two) and NaN."""
    case = draw(cases(max_hw=10))
    k = draw(st.integers(0, 2))
    case["seeds"] = draw(st.lists(st.integers(0, 99), min_size=k, max_size=k))
    case["rates"] = draw(st.lists(st.sampled_from([0.25, 0.5]), min_size=k, max_size=k))
    case["counter"] = draw(st.integers(0, 5))
    nan = draw(st.sampled_from([None, None, "x", "w"]))
    if nan is not None:
        case[nan].flat[draw(st.integers(0, case[nan].size - 1))] = np.nan
    return case


@settings(**SETTINGS)
@given(fused_cases())
def test_fused_winograd_is_the_plain_one_pooled(case):
    # the same arithmetic for each conv output, so every bit agrees: values, NaN, ties, codes
    # (a whole pool window needs 4x4 padded input pixels)
    x, w, b, pads = case["x"], case["w"], case["b"], case["pads"]
    assume(x.shape[1] + pads[0] + pads[1] >= 4 and x.shape[2] + pads[2] + pads[3] >= 4)
    seeds, rates, counter = case["seeds"], case["rates"], case["counter"]
    drop = dropouts(seeds, rates, counter, x.dtype)
    with np.errstate(invalid="ignore"):
        out, code = pool_forward(numba_winograd.winograd_pool_forward, x, w, b, pads, drop)
        z = winograd_conv(x, w, b, pads)
        ref_out, ref_code = pool_relu_dropout(z[:, : 2 * out.shape[1], : 2 * out.shape[2]],
                                              seeds, rates, counter)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(code, ref_code)


@settings(**SETTINGS)
@given(fused_cases(), st.booleans())
def test_fused_winograd_matches_the_direct_fused_kernels(case, small_integers):
    x, w, b, pads = case["x"], case["w"], case["b"], case["pads"]
    assume(x.shape[1] + pads[0] + pads[1] >= 4 and x.shape[2] + pads[2] + pads[3] >= 4)
    # NaN spreads over a whole tile here, over a window there (numba_winograd's docstring)
    assume(not np.isnan(x).any() and not np.isnan(w).any())
    if small_integers:
        # every sum exact in both algorithms (Winograd's quarters included): equal ties, so
        # the codes must agree bit for bit, ties and all
        x, w, b = (np.round(a * 1.5) for a in (x, w, b))
    drop = dropouts(case["seeds"], case["rates"], case["counter"], x.dtype)
    out, code = pool_forward(numba_winograd.winograd_pool_forward, x, w, b, pads, drop)
    direct = numba_conv_pool.conv_pool_forward_3x3 if x.shape[3] > 1 else \
        numba_conv_pool.conv_pool_forward_3x3_c1
    for kernel in (direct, numba_conv_pool.conv_pool_forward):
        ref_out, ref_code = pool_forward(kernel, x, w, b, pads, drop)
        if small_integers:
            np.testing.assert_array_equal(out, ref_out, err_msg=kernel.__name__)
            np.testing.assert_array_equal(code, ref_code, err_msg=kernel.__name__)
            continue
        assert_close(f"fused out vs {kernel.__name__}", out, ref_out, TOL[case["dtype"]])
        # codes: equal wherever rounding cannot decide, i.e. the window's two largest conv
        # outputs (and the largest and 0, for relu) are further apart than the tolerance
        z = naive.conv2d_forward(x, w, b, (1, 1), pads)[:, : 2 * out.shape[1], : 2 * out.shape[2]]
        N, Hq, Wq, F = out.shape
        windows = np.sort(z.reshape(N, Hq, 2, Wq, 2, F).transpose(0, 1, 3, 5, 2, 4)
                          .reshape(N, Hq, Wq, F, 4), axis=-1)
        margin = 1e-4 * np.abs(z).max()
        clear = (windows[..., 3] - windows[..., 2] > margin) & (np.abs(windows[..., 3]) > margin)
        np.testing.assert_array_equal(code[clear], ref_code[clear], err_msg=kernel.__name__)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_go_to_the_first_maximum(dtype):
    # every conv output of a window equal (a constant image, a filter of one tap): code 0
    x = np.ones((1, 6, 6, 8), dtype)
    w = np.zeros((3, 3, 8, 3), dtype)
    w[1, 1] = 1.0
    b = np.array([0.0, -8.0, -9.0], dtype)  # relu keeps 8, drops 0 and -1
    out, code = pool_forward(numba_winograd.winograd_pool_forward, x, w, b, (0, 0, 0, 0),
                             dropouts([], [], 0, dtype))
    assert (out[..., 0] == 8).all() and (code[..., 0] == 0).all()
    assert (out[..., 1:] == 0).all() and (code[..., 1:] == -1).all()


def test_numba_ops_picks_winograd_by_the_rule(monkeypatch, rng):
    ran = set()

    def spy(kernel):
        def run(*args):
            ran.add(kernel.__name__)
            return kernel(*args)
        return run

    for name in ("winograd_forward", "winograd_pool_forward"):
        monkeypatch.setattr(numba_winograd, name, spy(getattr(numba_winograd, name)))
    # on both sides of the rule: (C, F) = (7, 64), (8, 32) no; (8, 48), (16, 32) yes
    for c, f in ((7, 64), (8, 32), (8, 48), (16, 32)):
        yes = numba_ops._winograd(conv_geometry((8, 7), (3, 3), (1, 1), (0, 0, 0, 0)), c, f)
        assert yes == ((c, f) in ((8, 48), (16, 32)))
        x = rng.standard_normal((2, 8, 7, c)).astype(np.float32)
        w = rng.standard_normal((3, 3, c, f)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)
        ran.clear()
        out = numba_ops.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1))
        assert ran == ({"winograd_forward"} if yes else set()), (c, f, ran)
        assert_close(f"conv2d_forward C={c} F={f}", out,
                     numpy_ops.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1)), KERNEL_F32)
        ran.clear()
        g = conv_geometry((8, 7), (3, 3), (1, 1), (0, 0, 0, 0), (2, 2), (2, 2))
        out = np.empty((2, g.Hq, g.Wq, f), np.float32)
        code = np.empty(out.shape, np.int8)
        numba_ops.conv_pool_forward(x, w, b, g, *dropouts([3], [0.5], 1, np.float32), out, code)
        assert ran == ({"winograd_pool_forward"} if yes else set()), (c, f, ran)
        ran.clear()
        numba_ops.conv2d_forward(x, w, b, (2, 2), (0, 0, 0, 0))  # stride 2: direct
        numba_ops.conv2d_forward(x, w[:2], b, (1, 1), (0, 0, 0, 0))  # 2x3: direct
        assert ran == set()


def test_importing_the_backend_compiles_no_winograd_kernel():
    code = (
        "import minicnn.kernels.numba_ops, minicnn.fusion\n"
        "from minicnn.kernels import numba_winograd as nw\n"
        "ks = [nw.winograd_forward, nw.winograd_pool_forward, nw._products]\n"
        "assert all(not k.signatures for k in ks), [k.signatures for k in ks]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_seed_model_compiles_no_winograd_kernel():
    # its convs have one input channel: a cold start of the seed model must not pay for these
    code = (
        "import numpy as np, minicnn\n"
        "from minicnn import models\n"
        "from minicnn.kernels import numba_winograd as nw\n"
        "minicnn.set_backend('numba')\n"
        "m = models.build('seed'); m.compile(loss='categorical_crossentropy', optimizer='adam')\n"
        "x = np.zeros((8, 28, 28, 1), np.float32); y = np.eye(10, dtype=np.float32)[:8]\n"
        "m.train_on_batch(x, y); m.predict(x)\n"
        "ks = [nw.winograd_forward, nw.winograd_pool_forward]\n"
        "assert all(not k.signatures for k in ks), [k.signatures for k in ks]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_winograd_runs_with_the_jit_disabled():
    run_without_jit(
        "import numpy as np\n"
        "from tests.test_winograd import winograd_conv, pool_forward, dropouts\n"
        "from minicnn.kernels import naive, numba_winograd\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((2, 5, 6, 3)); w = rng.standard_normal((3, 3, 3, 2))\n"
        "b = rng.standard_normal(2)\n"
        "for pads in ((0, 0, 0, 0), (1, 1, 1, 1)):\n"
        "    ref = naive.conv2d_forward(x, w, b, (1, 1), pads)\n"
        "    assert np.allclose(winograd_conv(x, w, b, pads), ref, atol=1e-12)\n"
        "out, code = pool_forward(numba_winograd.winograd_pool_forward, x, w, b,\n"
        "                         (0, 0, 0, 0), dropouts([1], [0.5], 0, x.dtype))\n"
        "assert out.shape == code.shape == (2, 1, 2, 2)\n"
        "print('ok')\n"
    )
