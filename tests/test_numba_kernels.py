"""The Numba kernels against the naive loops; the Numba dropout hash against NumPy's, bit for bit.

Shapes are drawn small (the naive loops run at Python speed); Hypothesis is derandomised and has
no deadline because the first example of each dtype carries the JIT compile (or the cache load).
"""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.kernels import naive, numpy_ops
from minicnn.kernels.dropout_mask import (
    GOLDEN,
    keep_mask,
    keep_threshold,
    mask_key,
    mask_words,
    mix64_int,
    uniforms,
)
from minicnn.kernels.geometry import window_2d
from tests.helpers import assert_close, run_without_jit
from tests.tolerances import KERNEL_F32, KERNEL_F64

numba_ops = pytest.importorskip("minicnn.kernels.numba_ops")
from minicnn.kernels import numba_conv_pool  # noqa: E402  (needs Numba, checked above)
from minicnn.kernels.dispatch import table  # noqa: E402

TOL = {np.float32: KERNEL_F32, np.float64: KERNEL_F64}
SETTINGS = dict(max_examples=40, deadline=None, derandomize=True)
API = (
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weights",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "dense_forward",
    "dense_backward",
)


def test_every_backend_table_has_the_same_signatures():
    assert set(API) <= set(numba_ops.__all__)
    for name in API:
        params = [
            list(inspect.signature(getattr(table(b), name)).parameters)
            for b in ("naive", "numpy", "numba")
        ]
        assert params[0] == params[1] == params[2], f"{name}: {params}"


def test_importing_the_backend_compiles_nothing():
    # numba_available() imports numba_ops to decide what 'auto' means: that must stay cheap
    code = (
        "import minicnn.kernels.numba_ops, minicnn.fusion\n"
        "from minicnn.kernels import numba_conv, numba_conv_pool, numba_pool\n"
        "ks = [numba_conv.conv_forward, numba_conv.conv_backward_input,"
        " numba_conv_pool.conv_pool_forward, numba_conv_pool.conv_pool_backward,"
        " numba_pool.maxpool_forward, numba_pool.maxpool_backward]\n"
        "assert all(not k.signatures for k in ks), [k.signatures for k in ks]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _features_after_import(env_extra):
    """numba.config.CPU_FEATURES after importing the kernels, and the code generator's own
    features after a compile, in a fresh process (Numba makes its generator once)."""
    code = (
        "import numba, numpy as np\n"
        "from minicnn.kernels import numba_config\n"
        "from numba.core.codegen import get_host_cpu_features\n"
        "from numba.core.registry import cpu_target\n"
        "numba.njit(lambda a: a.sum())(np.ones(3))\n"
        "print(repr(numba.config.CPU_FEATURES))\n"
        "print(cpu_target.target_context.codegen()._tm_features)\n"
        "print(get_host_cpu_features())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env,
                         capture_output=True, text=True).stdout.splitlines()
    return out[0], out[1], out[2]


def test_kernels_compile_for_full_width_vectors_on_avx512():
    # numba_config lifts LLVM's prefer-256-bit tuning on AVX-512 hosts, and only there
    config, used, host = _features_after_import({})
    if "+avx512f" in host.split(","):
        assert used == host + ",-prefer-256-bit"
        assert config == repr(used)
    else:
        assert config == "None"
        assert "prefer-256-bit" not in used


def test_a_users_cpu_features_are_left_alone():
    _, _, host = _features_after_import({})
    config, used, _ = _features_after_import({"NUMBA_CPU_FEATURES": host})
    assert used == host and config == repr(host)


@st.composite
def conv_cases(draw, max_hw=9):
    """A valid conv/pool geometry; 3x3 stride 1 is drawn often (it has its own fast code)."""
    padding = draw(st.sampled_from(["valid", "same"]))
    kh, kw = draw(st.sampled_from([(3, 3), (3, 3), (1, 1), (2, 3), (4, 2), (3, 1)]))
    h = draw(st.integers(kh if padding == "valid" else 1, max_hw))
    w = draw(st.integers(kw if padding == "valid" else 1, max_hw))
    strides = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (1, 2), (3, 1)]))
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    (ho, wo), pads = window_2d((h, w), (kh, kw), strides, padding)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return dict(
        x=rng.standard_normal((n, h, w, c)).astype(dtype),
        w=rng.standard_normal((kh, kw, c, f)).astype(dtype),
        b=rng.standard_normal(f).astype(dtype),
        dout=rng.standard_normal((n, ho, wo, f)).astype(dtype),
        dpool=rng.standard_normal((n, ho, wo, c)).astype(dtype),
        strides=strides,
        pads=pads,
        dtype=dtype,
        k=(kh, kw),
    )


@settings(**SETTINGS)
@given(conv_cases())
def test_conv_numba_matches_naive(case):
    x, w, b, s, p, tol = (
        case["x"],
        case["w"],
        case["b"],
        case["strides"],
        case["pads"],
        TOL[case["dtype"]],
    )
    out = numba_ops.conv2d_forward(x, w, b, s, p)
    assert out.dtype == case["dtype"]
    assert_close("conv forward", out, naive.conv2d_forward(x, w, b, s, p), tol)
    assert_close(
        "conv forward, no bias",
        numba_ops.conv2d_forward(x, w, None, s, p),
        naive.conv2d_forward(x, w, None, s, p),
        tol,
    )
    dout = case["dout"]
    assert_close(
        "conv dx",
        numba_ops.conv2d_backward_input(dout, w, x.shape, s, p),
        naive.conv2d_backward_input(dout, w, x.shape, s, p),
        tol,
    )
    assert_close(
        "conv dw",
        numba_ops.conv2d_backward_weights(dout, x, case["k"], s, p),
        naive.conv2d_backward_weights(dout, x, case["k"], s, p),
        tol,
    )


@settings(**SETTINGS)
@given(conv_cases())
def test_maxpool_numba_matches_naive(case):
    x, s, p, k = case["x"], case["strides"], case["pads"], case["k"]
    out, arg = numba_ops.maxpool2d_forward(x, k, s, p)
    ref_out, ref_arg = naive.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(out, ref_out)  # a max is exact: no rounding anywhere
    np.testing.assert_array_equal(arg, ref_arg)
    dout = case["dpool"]
    assert_close(
        "pool dx",
        numba_ops.maxpool2d_backward(dout, arg, x.shape, k, s, p),
        naive.maxpool2d_backward(dout, ref_arg, x.shape, k, s, p),
        TOL[case["dtype"]],
    )


def test_maxpool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 4, 4, 2))
    x[0, 1, 1, 0] = x[0, 1, 0, 0] = 5.0  # window (0, 0): two maxima, index 2 comes first
    out, arg = numba_ops.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    assert out[0, 0, 0, 0] == 5.0 and arg[0, 0, 0, 0] == 2
    assert (arg[0, :, :, 1] == 0).all()  # all-equal windows: the first pixel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_numba_matches_naive(rng, dtype):
    x, w, b, dout = (rng.standard_normal(s).astype(dtype) for s in ((5, 7), (7, 3), (3,), (5, 3)))
    assert_close(
        "dense out", numba_ops.dense_forward(x, w, b), naive.dense_forward(x, w, b), TOL[dtype]
    )
    for name, a, e in zip(
        ("dx", "dw", "db"), numba_ops.dense_backward(dout, x, w), naive.dense_backward(dout, x, w)
    ):
        assert_close(f"dense {name}", a, e, TOL[dtype])


def test_conv_on_the_seed_shapes_matches_numpy(rng):
    # the real sizes (and a batch the threads split unevenly): numpy_ops is the oracle here,
    # the naive loops being too slow for 26x26x32 outputs
    x = rng.standard_normal((7, 28, 28, 1)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 32)).astype(np.float32) * 0.3
    b = rng.standard_normal(32).astype(np.float32)
    dout = rng.standard_normal((7, 26, 26, 32)).astype(np.float32)
    p, s = (0, 0, 0, 0), (1, 1)
    assert_close(
        "conv forward",
        numba_ops.conv2d_forward(x, w, b, s, p),
        numpy_ops.conv2d_forward(x, w, b, s, p),
        KERNEL_F32,
    )
    assert_close(
        "conv dw",
        numba_ops.conv2d_backward_weights(dout, x, (3, 3), s, p),
        numpy_ops.conv2d_backward_weights(dout, x, (3, 3), s, p),
        KERNEL_F32,
    )
    assert_close(
        "conv dx",
        numba_ops.conv2d_backward_input(dout, w, x.shape, s, p),
        numpy_ops.conv2d_backward_input(dout, w, x.shape, s, p),
        KERNEL_F32,
    )


def test_bad_input_is_rejected_before_any_work():
    with pytest.raises(ValueError, match="argument x"):
        numba_ops.conv2d_forward(
            np.zeros((2, 3, 3)), np.zeros((1, 1, 1, 1)), None, (1, 1), (0, 0, 0, 0)
        )


@settings(**SETTINGS)
@given(
    seeds=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=3),
    counter=st.integers(0, 10**6),
    rates=st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 0.999]), min_size=3, max_size=3),
    size=st.sampled_from([0, 1, 3, 7, 64, 1000, 5409]),
    first=st.sampled_from([0, 1, 2, 3, 5408, 10_819]),
)
def test_dropout_hash_is_bit_identical_to_numpy(seeds, counter, rates, size, first):
    # first: a sample's units start anywhere in a 64-bit word (four 16-bit uniforms each)
    keys = [mask_key(s, counter + i) for i, s in enumerate(seeds)]
    thresholds = [keep_threshold(r) for r in rates[: len(seeds)]]
    got = _fused_keep(keys, thresholds, size, first)
    expected = np.ones(size, bool)
    for i, (s, r) in enumerate(zip(seeds, rates)):
        expected &= keep_mask(s, counter + i, first + size, r)[first:]
    np.testing.assert_array_equal(got.astype(bool), expected)


def _fused_keep(keys, thresholds, size, first=0):
    """Which of `size` units the fused kernel's dropout pass keeps (units numbered from first)."""
    out, code = np.ones(size), np.zeros(size, np.int8)
    numba_conv_pool._dropout_rows(out, code, first, np.array(keys, np.uint64),
                                  np.array(thresholds, np.uint64), np.full(len(keys), 2.0),
                                  *numba_conv_pool.dropout_scratch(size))
    np.testing.assert_array_equal(out, np.where(code >= 0, 2.0 ** len(keys), 0.0))
    return code >= 0


def test_the_fused_kernels_hash_numbers_units_from_the_samples_offset():
    key, threshold = mask_key(12345, 6), keep_threshold(0.4)
    for first in (200, 201, 202, 203):
        got = _fused_keep([key], [threshold], 300, first=first)
        np.testing.assert_array_equal(got, keep_mask(12345, 6, first + 300, 0.4)[first:])


def test_dropout_uniforms_are_the_hash_words_16_bits_at_a_time():
    # by hand, on Python ints: unit i is bits 16*(i % 4) .. +15 of mix(key + (i // 4) * G)
    key = mask_key(7, 3)
    words = [mix64_int(key + j * GOLDEN) for j in range(3)]
    expected = [(words[i // 4] >> (16 * (i % 4))) & 0xFFFF for i in range(10)]
    assert uniforms(key, 10).tolist() == expected
    assert keep_mask(7, 3, 10, 0.5).tolist() == [u >= 32768 for u in expected]
    assert _fused_keep([key], [32768], 10).tolist() == [u >= 32768 for u in expected]


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**62), st.integers(0, 40))
@settings(max_examples=40, deadline=None)
def test_the_kernels_hash_counter_wraps_as_the_formula(key, first, count):
    # the kernel steps its counter by GOLDEN a word instead of multiplying: the same words
    # modulo 2**64, for any key and any first word (NumPy's twin multiplies)
    words = np.empty(count, np.uint64)
    numba_conv_pool._mask_words(np.uint64(key), np.uint64(first), words)
    np.testing.assert_array_equal(words, mask_words(key, first, count))


def test_dropout_hash_keeps_the_right_fraction():
    keep = _fused_keep([mask_key(0, 0)], [keep_threshold(0.25)], 200_000)
    # binomial standard deviation at n = 2e5, p = 0.75: ~0.001; 0.005 is five of them
    assert abs(keep.mean() - 0.75) < 0.005


def test_the_four_units_of_a_hash_word_are_independent():
    # the four 16-bit fields of one word must not move together: each pair of fields keeps
    # both units 0.75**2 of the time at rate 0.25 (sd ~0.0011 over 2e5 words; 0.006 is five)
    keep = _fused_keep([mask_key(1, 2)], [keep_threshold(0.25)], 800_000).reshape(-1, 4)
    for a in range(4):
        for b in range(a + 1, 4):
            assert abs((keep[:, a] & keep[:, b]).mean() - 0.5625) < 0.006, (a, b)


def test_keep_threshold_rounds_the_rate_down_to_16_bits():
    assert keep_threshold(0.25) == 16384 and keep_threshold(0.5) == 32768
    assert keep_threshold(0.3) == 19660  # drops 19660 / 65536 = 0.29999 of the units
    assert keep_threshold(0.0) == 0


# --- dense ---------------------------------------------------------------------------------------
# numba_dense takes two rows x two outputs per pass (an odd last one pairs with itself), BLOCK
# columns per partial-sum update in the forward, TILE columns per pass in the backward, and four
# (zero-padded) outputs per pass in dx: D and K are drawn across those boundaries, N from 1.
from minicnn.kernels import numba_dense  # noqa: E402  (needs Numba, checked above)
from minicnn.kernels.numba_threads import run_chunks  # noqa: E402


@st.composite
def dense_cases(draw):
    n = draw(st.integers(1, 5))
    d = draw(
        st.one_of(st.integers(1, 3 * numba_dense.BLOCK), st.integers(1, 2 * numba_dense.TILE + 9))
    )
    k = draw(st.one_of(st.integers(1, 6), st.integers(7, 40)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, w, b, dout = (rng.standard_normal(s).astype(dtype) for s in ((n, d), (d, k), (k,), (n, k)))
    return x, w, b, dout, dtype, draw(st.integers(1, 3))


@settings(**SETTINGS)
@given(dense_cases())
def test_dense_kernels_match_naive(case):
    x, w, b, dout, dtype, T = case  # T chunks: more than the threads, or fewer, work the same
    N, K = dout.shape

    def forward(T):
        out = np.full((N, K), np.nan, dtype)  # NaN: an output the kernel skipped would show
        run_chunks(numba_dense.dense_forward, N, x, np.ascontiguousarray(w.T), b, out,
                   chunks=min(T, N))
        return out

    def backward(T, need_dx):
        dx = np.full(x.shape if need_dx else (0, 0), np.nan, dtype)
        dw, db = np.full(w.shape, np.nan, dtype), np.full(K, np.nan, dtype)
        dz = np.empty((N, K + (-K) % 4), dtype)
        numba_dense.pad_and_sum(dout, dz, db)
        D = x.shape[1]
        run_chunks(numba_dense.dense_backward, D, dz, x, w, need_dx, dx, dw, chunks=min(T, D))
        return (dx, dw, db) if need_dx else (dw, db)

    out = forward(T)
    assert_close("dense out", out, naive.dense_forward(x, w, b), TOL[dtype])
    np.testing.assert_array_equal(out, forward(1))  # the same sums in the same order, any T
    ref = naive.dense_backward(dout, x, w)
    for need_dx in (True, False):
        got = backward(T, need_dx)
        for name, a, e in zip(("dx", "dw", "db")[not need_dx :], got, ref[not need_dx :]):
            assert_close(f"dense {name} (need_dx={need_dx})", a, e, TOL[dtype])
    for a, e in zip(backward(T, True), backward(1, True)):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,kernel_forward,kernel_backward",
    [
        ((128, 5408, 10), True, True),  # the seed model's Dense(10)
        ((96, 5407, 11), True, True),  # odd D and K, a short last batch
        ((128, 4096, 24), False, True),  # K past the forward's bound
        ((128, 1024, 160), False, False),  # K past both bounds
        ((16, 5408, 10), False, False),  # too little work to pay for waking the threads
        ((256, 9216, 1), False, True),  # K = 1: BLAS's matrix-vector product forward
    ],
)
def test_dense_dispatch_matches_numpy_on_both_sides_of_the_rule(
    rng, shape, kernel_forward, kernel_backward, dtype
):
    assert numba_ops._dense_forward_on_kernels(*shape) == kernel_forward
    assert numba_ops._dense_backward_on_kernels(*shape) == kernel_backward
    N, D, K = shape
    x, w, b, dout = (rng.standard_normal(s).astype(dtype) for s in ((N, D), (D, K), (K,), (N, K)))
    out = numba_ops.dense_forward(x, w, b)
    assert out.dtype == dtype
    assert_close("dense out", out, numpy_ops.dense_forward(x, w, b), TOL[dtype])
    for name, a, e in zip(
        ("dx", "dw", "db"),
        numba_ops.dense_backward(dout, x, w),
        numpy_ops.dense_backward(dout, x, w),
    ):
        assert a.dtype == dtype and a.flags.c_contiguous, name
        assert_close(f"dense {name}", a, e, TOL[dtype])


DENSE_NO_JIT_SCRIPT = """
import numpy as np
import numba
assert numba.config.DISABLE_JIT
from minicnn.kernels import naive, numba_dense
rng = np.random.default_rng(0)
x, w, b, dout = (rng.standard_normal(s) for s in ((3, 70), (70, 3), (3,), (3, 3)))
from minicnn.kernels.numba_threads import run_chunks
out = np.empty((3, 3))
run_chunks(numba_dense.dense_forward, 3, x, np.ascontiguousarray(w.T), b, out, chunks=2)
dx, dw, db = np.empty((3, 70)), np.empty((70, 3)), np.empty(3)
dz = np.empty((3, 4))
numba_dense.pad_and_sum(dout, dz, db)
run_chunks(numba_dense.dense_backward, 70, dz, x, w, True, dx, dw, chunks=2)
expected = (naive.dense_forward(x, w, b),) + naive.dense_backward(dout, x, w)
for a, e in zip((out, dx, dw, db), expected):
    assert np.allclose(a, e, rtol=1e-12, atol=1e-12), np.abs(a - e).max()
print("ok")
"""


def test_dense_kernels_run_with_the_jit_disabled():
    run_without_jit(DENSE_NO_JIT_SCRIPT)


def test_importing_the_backend_compiles_no_dense_kernel():
    code = (
        "import minicnn.kernels.numba_ops\n"
        "from minicnn.kernels import numba_dense as d\n"
        "assert not d.dense_forward.signatures and not d.dense_backward.signatures\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
