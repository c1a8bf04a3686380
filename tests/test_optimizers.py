"""Adam and SGD against numbers printed by Keras 3.15 / TensorFlow 2.21 (float32), and against
the textbook Adam they must NOT equal; the compiled update (numba backend) against the NumPy one
bit for bit. The Keras comparisons run on both backends."""

import numpy as np
import pytest

import minicnn
from minicnn.optimizers import SGD, Adam

# keras.optimizers.Adam(), w = [3.0, -1.5], two steps with g = [1e-9, -2e-9] (tiny: sqrt(v) ~ eps)
KERAS_ADAM_TINY = [[2.999999761581421, -1.4999994039535522],
                   [2.9999992847442627, -1.4999985694885254]]
KERAS_ADAM_TINY_M = [[1.000000013351432e-10, -2.000000026702864e-10],
                     [1.9000000184288268e-10, -3.8000000368576536e-10]]
KERAS_ADAM_TINY_V = [[9.999999682655225e-22, 3.99999987306209e-21],
                     [1.9989998880951655e-21, 7.995999552380662e-21]]
# the same with g = [0.5, -1.0]
KERAS_ADAM_LARGE = [[2.999000072479248, -1.4989999532699585],
                    [2.998000144958496, -1.497999906539917]]
# keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), g = [0.5, -1.0]
KERAS_SGD_NESTEROV = [[2.9049999713897705, -1.309999942779541],
                      [2.7695000171661377, -1.0389999151229858]]


def run(opt, g, steps=2):
    w = np.array([3.0, -1.5], dtype=np.float32)
    trace = []
    for _ in range(steps):
        opt.update([w], [np.asarray(g, dtype=np.float32)])
        trace.append((w.copy(), *(s[0].copy() for s in opt.slots.values())))
    return trace


BOTH = pytest.mark.parametrize("backend", ["numpy", "numba"], indirect=True)


@BOTH
def test_adam_two_tiny_steps_match_keras(backend):
    trace = run(Adam(), [1e-9, -2e-9])
    for step, (w, m, v) in enumerate(trace):
        np.testing.assert_array_equal(w, np.float32(KERAS_ADAM_TINY[step]))
        np.testing.assert_allclose(m, KERAS_ADAM_TINY_M[step], rtol=1e-6)
        np.testing.assert_allclose(v, KERAS_ADAM_TINY_V[step], rtol=1e-6)


def test_adam_is_not_the_textbook_form():
    # textbook: w -= lr * m_hat / (sqrt(v_hat) + eps); with g ~ eps the two differ visibly
    w, m, v, lr, b1, b2, eps = 3.0, 0.0, 0.0, 1e-3, 0.9, 0.999, 1e-7
    for t in (1, 2):
        m = b1 * m + (1 - b1) * 1e-9
        v = b2 * v + (1 - b2) * 1e-18
        w -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    assert abs(w - KERAS_ADAM_TINY[1][0]) > 1e-5
    assert run(Adam(), [1e-9, -2e-9])[1][0][0] == pytest.approx(KERAS_ADAM_TINY[1][0], abs=1e-7)


@BOTH
def test_adam_large_gradient_matches_keras(backend):
    for step, (w, *_rest) in enumerate(run(Adam(), [0.5, -1.0])):
        np.testing.assert_allclose(w, KERAS_ADAM_LARGE[step], rtol=0, atol=2.5e-7)  # 1 ulp at 3


@BOTH
def test_sgd_nesterov_matches_keras(backend):
    for step, (w, *_rest) in enumerate(run(SGD(0.1, momentum=0.9, nesterov=True), [0.5, -1.0])):
        np.testing.assert_allclose(w, KERAS_SGD_NESTEROV[step], rtol=0, atol=2.5e-7)


def test_plain_sgd_by_hand():
    (w, *_), = run(SGD(0.1), [0.5, -1.0], steps=1)
    np.testing.assert_allclose(w, [2.95, -1.4], rtol=1e-7)


def test_optimizer_state_round_trip():
    opt = Adam()
    w = np.ones(3, np.float32)
    opt.update([w], [np.full(3, 0.1, np.float32)])
    state = opt.get_state()
    other = Adam()
    other.set_state(state, [w])
    assert other.iterations == 1
    np.testing.assert_array_equal(other.slots["velocities"][0], opt.slots["velocities"][0])


@pytest.mark.parametrize("make,match", [
    (lambda: Adam(learning_rate=-1), "learning_rate"),
    (lambda: Adam(beta_1=1.0), "beta_1"),
    (lambda: SGD(momentum=2), "momentum"),
])
def test_invalid_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [
    lambda: Adam(learning_rate=0.01),
    lambda: Adam(learning_rate=0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
    lambda: SGD(0.05, momentum=0.9),
    lambda: SGD(0.05, momentum=0.8, nesterov=True),
], ids=["adam", "adam-args", "sgd-momentum", "sgd-nesterov"])
def test_compiled_update_is_bit_identical_to_numpy(make, dtype):
    """Ten steps on a (3, 3, 2, 5) kernel and a bias with gradients spanning 12 decades: the
    one-pass Numba kernel must not differ in a single bit (it is compiled without fastmath)."""
    rng = np.random.default_rng(7)
    shapes = [(3, 3, 2, 5), (5,)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[(rng.standard_normal(s) * 10.0 ** rng.integers(-10, 2, s)).astype(dtype)
              for s in shapes] for _ in range(10)]
    finals = {}
    for name in ("numpy", "numba"):
        old = minicnn.config.backend_setting()
        minicnn.set_backend(name)
        try:
            opt, params = make(), [w.copy() for w in start]
            for g in grads:
                opt.update(params, g)
        finally:
            minicnn.set_backend(old)
        finals[name] = params + opt.slot_arrays()
    assert not np.array_equal(finals["numpy"][0], start[0])  # the steps moved the weights
    for a, b in zip(finals["numpy"], finals["numba"]):
        np.testing.assert_array_equal(a, b)


def test_compiled_update_skips_non_contiguous_parameters():
    """A parameter that cannot be viewed flat still gets its step (NumPy path), in place."""
    w_full = np.ones((4, 6), np.float32)
    w = w_full[:, ::2]  # a strided view: the kernel cannot write through a flat copy of it
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numba")
    try:
        Adam(learning_rate=0.1).update([w], [np.ones((4, 3), np.float32)])
    finally:
        minicnn.set_backend(old)
    np.testing.assert_allclose(w_full[:, ::2], 0.9, rtol=1e-5)  # eps shifts it by 1e-6
    np.testing.assert_array_equal(w_full[:, 1::2], 1.0)
