"""Initializers with Keras's names, arguments and defaults (issue 13).

Three oracles: the formula (bounds, mean and variance of a large sample against the
distribution the docstring states, within 5 standard errors); Keras's own samples (a two-sample
Kolmogorov-Smirnov test on the same shape: Keras's random stream cannot be reproduced in NumPy,
its distribution can), with a deliberately wrong pairing that the same test must reject; and,
for the constant ones and the layer path, exact values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import minicnn
from minicnn import initializers as I  # noqa: N812
from minicnn.layers import Conv2D, Dense

DENSE = (300, 200)          # fan_in 300, fan_out 200
CONV = (3, 3, 40, 60)       # fan_in 360, fan_out 540
N_SIGMA = 5                 # sample moments within 5 standard errors: a false alarm ~ 1e-6

# name -> (distribution, scale, mode) as Keras defines it
SCALING = {
    "glorot_uniform": ("uniform", 1.0, "fan_avg"),
    "glorot_normal": ("truncated_normal", 1.0, "fan_avg"),
    "he_uniform": ("uniform", 2.0, "fan_in"),
    "he_normal": ("truncated_normal", 2.0, "fan_in"),
    "lecun_uniform": ("uniform", 1.0, "fan_in"),
    "lecun_normal": ("truncated_normal", 1.0, "fan_in"),
}


def fans(shape):
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def check_moments(name, x, mean, var, low=None, high=None):
    """Sample mean and variance within N_SIGMA standard errors of the stated ones."""
    n = x.size
    assert abs(x.mean() - mean) <= N_SIGMA * math.sqrt(var / n), f"{name}: mean {x.mean()}"
    # the variance's standard error, with the fourth moment estimated from the sample
    m4 = ((x - x.mean()) ** 4).mean()
    assert abs(x.var() - var) <= N_SIGMA * math.sqrt((m4 - var**2) / n), \
        f"{name}: variance {x.var()} vs {var}"
    if low is not None:
        assert x.min() >= low and x.max() <= high, f"{name}: range [{x.min()}, {x.max()}]"


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("name", sorted(SCALING))
def test_variance_scaling_family_matches_its_formula(name, shape):
    dist, scale, mode = SCALING[name]
    fan_in, fan_out = fans(shape)
    n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    x = I.get(name)(shape).astype(np.float64)  # standalone: Keras's (shape, dtype=None)
    assert x.shape == shape and I.get(name)(shape).dtype == np.float32
    if dist == "uniform":
        limit = math.sqrt(3 * scale / n)
        check_moments(name, x, 0.0, limit**2 / 3, -limit, limit)
        assert x.max() > 0.99 * limit and x.min() < -0.99 * limit
    else:
        # variance scale / n after truncation (Keras's documented stddev), cut at 2 s
        s = math.sqrt(scale / n) / 0.87962566103423978
        check_moments(name, x, 0.0, scale / n, -2 * s, 2 * s)


def test_random_uniform_normal_truncated_with_keras_defaults():
    u = I.RandomUniform()((400, 400)).astype(np.float64)
    check_moments("random_uniform", u, 0.0, 0.1**2 / 12, -0.05, 0.05)
    g = I.RandomNormal(mean=1.0, stddev=2.0)((400, 400)).astype(np.float64)
    check_moments("random_normal", g, 1.0, 4.0)
    t = I.TruncatedNormal(mean=0.5, stddev=0.05)((400, 400)).astype(np.float64)
    # stddev is the untruncated one: the variance after cutting at 2 sigma is 0.7737 sigma^2
    check_moments("truncated_normal", t, 0.5, 0.05**2 * 0.77374, 0.4, 0.6)
    v = I.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal")
    check_moments("untruncated", v((300, 500)).astype(np.float64), 0.0, 3.0 / 500)
    assert I.get("variance_scaling").get_config()["distribution"] == "truncated_normal"


def test_constant_initializers_and_orthogonal_exactly():
    np.testing.assert_array_equal(I.Zeros()((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(I.get("ones")((4,)), np.ones(4, np.float32))
    np.testing.assert_array_equal(I.Constant(0.5)((2, 2), "float64"), np.full((2, 2), 0.5))
    np.testing.assert_array_equal(I.Identity(gain=2.0)((2, 3)), [[2, 0, 0], [0, 2, 0]])
    for shape in ((50, 20), (20, 50), (3, 3, 4, 16)):
        q = I.Orthogonal(gain=1.5, seed=1)(shape, "float64").reshape(-1, shape[-1])
        gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
        np.testing.assert_allclose(gram, 1.5**2 * np.eye(len(gram)), atol=1e-12)


def test_seeds_as_keras_3_a_standalone_initializer_repeats_itself():
    a, b = I.GlorotUniform(seed=7), I.GlorotUniform(seed=7)
    np.testing.assert_array_equal(a((5, 5)), b((5, 5)))
    unseeded = I.HeNormal()
    np.testing.assert_array_equal(unseeded((5, 5)), unseeded((5, 5)))  # Keras 3 does the same
    assert not np.array_equal(I.HeNormal()((5, 5)), I.HeNormal()((5, 5)))
    # inside layers an unseeded initializer draws from minicnn's seeded stream: per layer
    shared = I.RandomNormal(stddev=1.0)
    minicnn.set_random_seed(0)
    d1, d2 = Dense(4, kernel_initializer=shared), Dense(4, kernel_initializer=shared)
    d1.build((None, 3))
    d2.build((None, 3))
    assert not np.array_equal(d1.kernel.numpy(), d2.kernel.numpy())
    seeded = Dense(4, kernel_initializer=I.RandomNormal(seed=3))
    seeded.build((None, 3))
    np.testing.assert_array_equal(seeded.kernel.numpy(), I.RandomNormal(seed=3)((3, 4)))


def test_the_layer_path_draws_exactly_what_minicnn_always_drew():
    # the glorot_uniform limit sqrt(6 / (fan_in + fan_out)), one uniform draw from the layer's
    # generator: the seed model's weights after set_random_seed are unchanged by issue 13
    conv = Conv2D(32, 3)
    conv.build_for((28, 28, 1), rng=np.random.default_rng(42))
    limit = math.sqrt(6.0 / (9 * 1 + 9 * 32))
    expected = np.random.default_rng(42).uniform(-limit, limit, size=(3, 3, 1, 32))
    np.testing.assert_array_equal(conv.kernel.numpy(), expected.astype(np.float32))
    dense = Dense(10, kernel_initializer="he_normal")
    dense.build_for((50,), rng=np.random.default_rng(1))
    rng = np.random.default_rng(1)
    z = rng.standard_normal((50, 10))
    while (np.abs(z) > 2).any():  # the redraw rule, written out
        bad = np.abs(z) > 2
        z[bad] = rng.standard_normal(int(bad.sum()))
    np.testing.assert_array_equal(dense.kernel.numpy(),
                                  (z * (math.sqrt(2 / 50) / 0.87962566103423978))
                                  .astype(np.float32))


def test_plain_functions_in_both_conventions():
    def keras_style(shape, dtype=None):
        return np.full(shape, 0.25)

    def minicnn_style(shape, rng, dtype):
        return np.full(shape, 0.5, dtype=dtype)

    for fn, value in ((keras_style, 0.25), (minicnn_style, 0.5)):
        layer = Dense(2, kernel_initializer=fn)
        layer.build((None, 3))
        assert layer.kernel.numpy().tolist() == [[value] * 2] * 3
    layer = Dense(2, kernel_initializer=np.arange(6.0).reshape(3, 2))  # Keras: a tensor
    layer.build((None, 3))
    assert layer.kernel.numpy()[2, 1] == 5.0


ALL = ["Constant", "Zeros", "Ones", "Identity", "RandomUniform", "RandomNormal",
       "TruncatedNormal", "VarianceScaling", "Orthogonal", "GlorotUniform", "GlorotNormal",
       "HeUniform", "HeNormal", "LecunUniform", "LecunNormal"]


@pytest.mark.parametrize("name", ALL)
def test_every_initializer_round_trips_its_config(name):
    init = getattr(I, name)()
    again = type(init).from_config(init.get_config())
    assert again == init and I.get(I.serialize(init)) == init
    assert I.get(name) == init  # the class name is a Keras name too


# --- against Keras ---------------------------------------------------------------------------
def keras_module():
    pytest.importorskip("tensorflow")
    pytest.importorskip("scipy")
    from reference._keras import keras

    return keras


@pytest.mark.keras
@pytest.mark.parametrize("name", ALL)
def test_configs_and_names_are_keras_own(name):
    keras = keras_module()
    ours, theirs = getattr(I, name)(), getattr(keras.initializers, name)()
    expected = theirs.get_config()
    if name == "Identity":  # Keras 3.15 leaves gain out of the config (so its round trip
        expected = {**expected, "gain": 1.0}  # loses it); minicnn keeps it
    assert ours.get_config() == expected
    assert I.serialize(ours) == {**keras.initializers.serialize(theirs), "config": expected}
    assert type(I.get(keras.initializers.serialize(theirs))) is type(ours)


RANDOM = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
          "lecun_normal", "random_uniform", "random_normal", "truncated_normal", "orthogonal"]


@pytest.mark.keras
@pytest.mark.parametrize("name", RANDOM)
def test_samples_have_keras_distribution(name):
    keras = keras_module()
    from scipy import stats

    shape = (120, 90)
    ours = I.get(name).__class__(seed=11)(shape).ravel()
    theirs = keras.initializers.get(name).__class__(seed=11)(shape).numpy().ravel()
    p = stats.ks_2samp(ours, theirs).pvalue
    assert p > 1e-4, f"{name}: KS p = {p:.2e}"
    if name == "orthogonal":  # (and, exactly, the same orthogonality)
        np.testing.assert_allclose(ours.reshape(shape).T @ ours.reshape(shape), np.eye(90),
                                   atol=1e-5)


@pytest.mark.keras
def test_the_distribution_test_can_fail():
    keras = keras_module()
    from scipy import stats

    ours = I.HeNormal(seed=1)((120, 90)).ravel()
    wrong = keras.initializers.GlorotNormal(seed=1)((120, 90)).numpy().ravel()
    assert stats.ks_2samp(ours, wrong).pvalue < 1e-10


@pytest.mark.keras
def test_constant_initializers_equal_keras_exactly():
    keras = keras_module()
    for name, args in (("Zeros", ()), ("Ones", ()), ("Constant", (0.3,)), ("Identity", (1.5,))):
        for shape in ((3, 4), (4, 4)):
            np.testing.assert_array_equal(getattr(I, name)(*args)(shape),
                                          getattr(keras.initializers, name)(*args)(shape))
