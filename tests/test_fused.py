"""The fused Numba unit (Conv2D(relu) -> MaxPooling2D -> Dropout/Flatten) against the layers.

The oracle is the same stack run layer by layer on the NumPy backend: forward output, input
gradient, kernel and bias gradients, and the dropout counters must agree. Both draw their
dropout masks from the same hash, so dropout can stay on.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import architectures
from minicnn.config import numba_available  # noqa: E402
from minicnn.fusion import ConvReluPool, plan  # noqa: E402
from minicnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from tests.helpers import assert_close
from tests.tolerances import KERNEL_F32, KERNEL_F64

pytestmark = pytest.mark.skipif(not numba_available(), reason="the fused unit needs Numba")


def fuse(layers):
    """The units the numba backend's planner makes of layers."""
    return plan(layers, "numba")


TOL = {"float32": KERNEL_F32, "float64": KERNEL_F64}


def _stack(spec, input_shape, dtype):
    """Fresh, built layers from spec (a list of (class, kwargs)), the same weights every time."""
    minicnn.set_random_seed(7)
    layers = [cls(dtype=dtype, **kw) for cls, kw in spec]
    shape = input_shape
    for layer in layers:
        layer.build_for(shape)
        shape = layer.compute_output_shape(shape)
    rng = np.random.default_rng(3)
    for layer in layers:  # non-zero biases, so relu's threshold and db are really exercised
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape) * 0.3
    return layers


@st.composite
def fused_cases(draw):
    kh, kw = draw(st.sampled_from([(3, 3), (3, 3), (2, 2), (1, 3)]))
    conv = dict(
        filters=draw(st.integers(1, 5)),
        kernel_size=(kh, kw),
        strides=draw(st.sampled_from([(1, 1), (1, 1), (2, 1)])),
        padding=draw(st.sampled_from(["valid", "same"])),
        activation="relu",
        use_bias=draw(st.booleans()),
    )
    spec = [(Conv2D, conv)]
    if draw(st.booleans()):
        size = draw(st.sampled_from([(2, 2), (2, 2), (3, 2), (1, 1)]))
        strides = draw(st.sampled_from([None, (1, 1), (2, 1)]))
        spec.append((MaxPooling2D, dict(pool_size=size, strides=strides)))
    for kind in draw(st.lists(st.sampled_from(["dropout", "flatten"]), max_size=3)):
        if kind == "flatten" and any(cls is Flatten for cls, _ in spec):
            continue
        spec.append(
            (
                Dropout,
                dict(rate=draw(st.sampled_from([0.0, 0.3, 0.5])), seed=draw(st.integers(0, 99))),
            )
            if kind == "dropout"
            else (Flatten, {})
        )
    h, w = draw(st.integers(7, 11)), draw(st.integers(7, 11))
    return dict(
        spec=spec,
        # 8 and more input channels take the winners-only backward (SPARSE_MIN_CHANNELS)
        input_shape=(h, w, draw(st.sampled_from([1, 2, 3, 8, 10]))),
        n=draw(st.integers(1, 5)),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        training=draw(st.booleans()),
        needs_input_grad=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31)),
    )


# The deep model's second conv, shrunk: many channels behind a pool, dropout on, with and
# without the input gradient: the winners-only backward. And 'same' padding with a stride.
WINNERS_ONLY = [
    dict(spec=[(Conv2D, dict(filters=12, kernel_size=3, activation="relu")), (MaxPooling2D, {}),
               (Dropout, dict(rate=0.25, seed=1)), (Flatten, {})],
         input_shape=(10, 10, 16), n=3, dtype=dtype, training=True, needs_input_grad=grad, seed=5)
    for dtype, grad in (("float32", True), ("float64", True), ("float32", False))
] + [
    dict(spec=[(Conv2D, dict(filters=5, kernel_size=3, strides=(2, 1), padding="same",
                             activation="relu")), (MaxPooling2D, dict(pool_size=(2, 2)))],
         input_shape=(9, 8, 8), n=2, dtype="float64", training=False, needs_input_grad=True,
         seed=6)
]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(fused_cases())
@example(WINNERS_ONLY[0])
@example(WINNERS_ONLY[1])
@example(WINNERS_ONLY[2])
@example(WINNERS_ONLY[3])
def test_fused_unit_matches_the_layers(case):
    spec, dtype = case["spec"], case["dtype"]
    ref_layers = _stack(spec, case["input_shape"], dtype)
    layers = _stack(spec, case["input_shape"], dtype)
    for stack in (ref_layers, layers):
        stack[0].needs_input_grad = case["needs_input_grad"]
    units = fuse(layers + [Dense(3)])  # a last layer, which is never fused
    assert isinstance(units[0], ConvReluPool) and units[0].layers == layers
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], *case["input_shape"])).astype(dtype)
    ref_out = x
    for layer in ref_layers:
        ref_out = _forward(layer, ref_out, case["training"])
    dout = rng.standard_normal(ref_out.shape).astype(dtype)
    ref_dx = dout
    for layer in reversed(ref_layers):
        ref_dx = _backward(layer, ref_dx)

    out = units[0].forward(x, training=case["training"])
    dx = units[0].backward(dout)
    tol = TOL[dtype]
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    assert_close("output", out, ref_out, tol)
    assert_close("kernel gradient", layers[0].grads["kernel"], ref_layers[0].grads["kernel"], tol)
    if layers[0].use_bias:
        assert_close("bias gradient", layers[0].grads["bias"], ref_layers[0].grads["bias"], tol)
    if case["needs_input_grad"]:
        assert_close("input gradient", dx, ref_dx, tol)
    else:
        assert dx is None
    for a, b in zip(layers, ref_layers):
        if isinstance(a, Dropout):
            assert a.counter == b.counter


def _forward(layer, x, training):
    return _with_numpy(lambda: layer.forward(x, training=training))


def _backward(layer, dout):
    return _with_numpy(lambda: layer.backward(dout))


def _with_numpy(fn):
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")
    try:
        return fn()
    finally:
        minicnn.set_backend(old)


def test_injected_masks_fall_back_to_the_layers():
    spec = [
        (Conv2D, dict(filters=4, kernel_size=3, activation="relu")),
        (MaxPooling2D, {}),
        (Dropout, dict(rate=0.5, seed=1)),
        (Flatten, {}),
    ]
    ref, layers = _stack(spec, (8, 8, 2), "float64"), _stack(spec, (8, 8, 2), "float64")
    keep = np.random.default_rng(0).random((3, 3, 3, 4)) > 0.5
    ref[2].mask_source = layers[2].mask_source = lambda shape: keep
    unit = fuse(layers + [Dense(2)])[0]
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 2))
    out = unit.forward(x, training=True)
    expected = x
    for layer in ref:
        expected = _forward(layer, expected, True)
    assert_close("output with injected masks", out, expected, KERNEL_F64)
    dout = np.ones_like(out)
    unit.backward(dout)
    for layer in reversed(ref):
        dout = _backward(layer, dout)
    assert_close("kernel gradient", layers[0].grads["kernel"], ref[0].grads["kernel"], KERNEL_F64)


def test_buffers_follow_the_batch_size():
    spec = [(Conv2D, dict(filters=3, kernel_size=3, activation="relu")), (MaxPooling2D, {})]
    layers = _stack(spec, (6, 6, 1), "float64")
    unit = fuse(layers + [Dense(2)])[0]
    rng = np.random.default_rng(0)
    for n in (5, 2, 5, 7):
        x = rng.standard_normal((n, 6, 6, 1))
        expected = x
        for layer in _stack(spec, (6, 6, 1), "float64"):
            expected = _forward(layer, expected, False)
        assert_close(f"output at batch {n}", unit.forward(x), expected, KERNEL_F64)


def _kinds(units):
    return [
        type(u).__name__
        if not isinstance(u, ConvReluPool)
        else "Fused(" + ",".join(type(layer).__name__ for layer in u.layers) + ")"
        for u in units
    ]


def test_fuse_groups_the_seed_and_deep_models():
    seed = architectures.seed_model()  # built, so its first layer needs no input gradient
    seed._set_input_grad_flags()
    assert _kinds(fuse(seed.layers)) == [
        "Fused(Conv2D,MaxPooling2D,Dropout,Flatten,Dropout,Dense)",  # the whole network
    ]
    assert _kinds(fuse(architectures.deep_model().layers)) == [
        "Fused(Conv2D)",
        "Fused(Conv2D,MaxPooling2D,Dropout,Flatten)",
        "Dense",
        "Dropout",
        "Dense",
    ]


def test_fuse_leaves_what_it_cannot_prove_equal():
    def kinds(*layers):
        model = minicnn.Sequential(list(layers))
        model.build((8, 8, 1))
        return _kinds(fuse(model.layers))

    # no relu, a 'same' pool, an Activation layer: nothing to fuse with the conv's output
    assert kinds(Conv2D(2, 3), MaxPooling2D(), Flatten(), Dense(2)) == [
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert kinds(
        Conv2D(2, 3, activation="relu"), MaxPooling2D(padding="same"), Flatten(), Dense(2)
    ) == ["Fused(Conv2D)", "MaxPooling2D", "Flatten", "Dense"]
    assert kinds(Conv2D(2, 3, activation="tanh"), Activation("relu"), Flatten(), Dense(2)) == [
        "Conv2D",
        "Activation",
        "Flatten",
        "Dense",
    ]
    # the last layer stays a unit of its own, whatever it is
    assert kinds(Conv2D(2, 3, activation="relu"), MaxPooling2D()) == [
        "Fused(Conv2D)",
        "MaxPooling2D",
    ]
    assert kinds(Conv2D(2, 3, activation="relu"), MaxPooling2D(), Flatten()) == [
        "Fused(Conv2D,MaxPooling2D)",
        "Flatten",
    ]
    assert kinds(Conv2D(2, 3, activation="relu")) == ["Conv2D"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_the_seed_network_as_one_unit_matches_its_layers(dtype, n):
    """ConvReluPoolDense (conv, pool, dropouts, flatten and the last Dense in two kernels)
    against the same layers run one by one on the NumPy backend: output, logits, every
    gradient and the dropout counters, dropout on."""
    def stack():
        spec = [(Conv2D, dict(filters=6, kernel_size=3, activation="relu")),
                (MaxPooling2D, dict(pool_size=2)), (Dropout, dict(rate=0.3, seed=5)),
                (Flatten, {}), (Dropout, dict(rate=0.5, seed=9)),
                (Dense, dict(units=4, activation="softmax"))]
        layers = _stack(spec, (9, 11, 1), dtype)
        layers[0].needs_input_grad = False
        return layers

    ref, layers = stack(), stack()
    (unit,) = fuse(layers)
    assert type(unit).__name__ == "ConvReluPoolDense"
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 9, 11, 1)).astype(dtype)
    dz = rng.standard_normal((n, 4)).astype(dtype)
    probs = unit.forward(x, training=True)
    with minicnn.config.using_backend("numpy"):
        expected = x
        for layer in ref:
            expected = layer.forward(expected, training=True)
        ref[-1].backward_linear(dz)
        g = ref[-1].backward_linear(dz)
        for layer in reversed(ref[:-1]):
            g = layer.backward(g)
    tol = TOL[dtype]
    assert_close("probabilities", probs, expected, tol)
    assert_close("logits", layers[-1].preactivation, ref[-1].preactivation, tol)
    assert unit.backward_linear(dz) is None
    for i in (0, 5):
        for k in ("kernel", "bias"):
            assert_close(f"{ref[i].name} d{k}", layers[i].grads[k], ref[i].grads[k], tol)
    assert [d.counter for d in layers if isinstance(d, Dropout)] == [1, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,pads", [((2, 9, 11, 1), (1, 1, 1, 1)), ((3, 8, 6, 3), (0,) * 4),
                                        ((1, 6, 5, 2), (0, 1, 0, 1))])
def test_the_no_pool_3x3_kernels_give_the_general_kernels_bits(dtype, shape, pads):
    """conv_relu_forward_3x3 and conv_relu_backward_3x3 (the deep model's first conv: 3x3,
    stride 1, no pool) are the general conv_pool_forward and conv_pool_backward with their
    other routes left out: the same out, codes and partial gradients, bit for bit, dropout on;
    and numba_ops routes exactly their case to them."""
    from minicnn.kernels import numba_conv_pool, numba_ops
    from minicnn.kernels.dropout_mask import keep_threshold, mask_key
    from minicnn.kernels.geometry import conv_geometry
    from minicnn.kernels.numba_threads import run_chunks

    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    F = 5
    w = rng.standard_normal((3, 3, shape[3], F)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    drop = (np.array([mask_key(4, 1)], np.uint64), np.array([keep_threshold(0.3)], np.uint64),
            np.array([1 / 0.7], dtype))
    g = conv_geometry(shape[1:3], (3, 3), (1, 1), pads, (1, 1), (1, 1))
    assert numba_conv_pool.is_3x3_no_pool(g)
    results = []
    for kernel in (numba_conv_pool.conv_relu_forward_3x3, numba_conv_pool.conv_pool_forward):
        out = np.empty((shape[0], g.Hq, g.Wq, F), dtype)
        code = np.empty(out.shape, np.int8)
        run_chunks(kernel, shape[0], x, w, b, g, *drop, out, code)
        results.append((out, code))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert (results[0][1] == -1).any() and (results[0][1] == 0).any()  # relu and dropout bite
    # the backward (no dx: a first layer) likewise: conv_relu_backward_3x3's partial dw and db
    code = results[0][1]
    dout = rng.standard_normal(code.shape).astype(dtype)
    parts = []
    for kernel in (numba_conv_pool.conv_relu_backward_3x3, numba_conv_pool.conv_pool_backward):
        T = 2
        parts_w, parts_b = np.zeros((T, 9 * shape[3] * F + 7), dtype), np.zeros((T, g.Wq * F),
                                                                                 dtype)
        run_chunks(kernel, shape[0], dout, code, x, drop[2], g, parts_w, parts_b, chunks=T)
        parts.append((parts_w, parts_b))
    np.testing.assert_array_equal(parts[0][0], parts[1][0])
    np.testing.assert_array_equal(parts[0][1], parts[1][1])
    assert parts[0][0].any() and parts[0][1].any()
    # the rule: a stride, a pool, another kernel size or fewer than 4 columns out: not its case
    assert not numba_conv_pool.is_3x3_no_pool(conv_geometry((9, 11), (3, 3), (2, 1), pads))
    assert not numba_conv_pool.is_3x3_no_pool(conv_geometry((9, 11), (3, 3), (1, 1), pads,
                                                            (2, 2), (2, 2)))
    assert not numba_conv_pool.is_3x3_no_pool(conv_geometry((9, 11), (2, 3), (1, 1), pads))
    assert not numba_conv_pool.is_3x3_no_pool(conv_geometry((9, 5), (3, 3), (1, 1),
                                                            (0, 0, 0, 0)))
    ran = []
    monkey = numba_conv_pool.conv_relu_forward_3x3
    try:
        numba_conv_pool.conv_relu_forward_3x3 = lambda *a: ran.append(1) or monkey(*a)
        out = np.empty((shape[0], g.Hq, g.Wq, F), dtype)
        numba_ops.conv_pool_forward(x, w, b, g, *drop, out, np.empty(out.shape, np.int8))
    finally:
        numba_conv_pool.conv_relu_forward_3x3 = monkey
    assert ran and np.array_equal(out, results[0][0])
