"""Layers used the Keras way: build with the batch axis, call on arrays, kernel/bias Variables,
activation set after construction, get_config/from_config (also across minicnn and Keras),
Keras's arguments and Keras's error messages (issue 13).

The oracle is Keras 3 on TensorFlow (the `keras` marker) with minicnn's weights copied in,
and the FORWARD tolerance of reference/tolerances.py; the other tests check hand-computed cases.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import minicnn
from minicnn import initializers
from minicnn.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    MaxPooling2D,
)
from minicnn.model import Sequential
from minicnn.variables import Variable
from reference.tolerances import FORWARD
from tests.helpers import assert_close

RNG = np.random.default_rng(13)

# One layer of each class with non-default arguments: (minicnn layer, input shape with batch)
# (each builder takes the top module, minicnn or keras, so the same line builds both)
LAYERS = [
    (lambda m: m.layers.Dense(5, activation="relu", use_bias=False, kernel_initializer="he_normal",
                              kernel_regularizer=m.regularizers.L2(0.02)), (3, 7)),
    (lambda m: m.layers.Dense(4, activation="softmax", bias_initializer="ones"), (2, 6)),
    (lambda m: m.layers.Conv2D(6, (3, 2), strides=(2, 1), padding="same", activation="tanh"),
     (2, 9, 8, 3)),
    (lambda m: m.layers.Conv2D(4, 3, activation="sigmoid",
                               kernel_regularizer=m.regularizers.L1L2(0.1, 0.2)), (2, 7, 7, 2)),
    (lambda m: m.layers.MaxPooling2D(pool_size=(3, 2), strides=(1, 2), padding="same"),
     (2, 7, 8, 3)),
    (lambda m: m.layers.MaxPooling2D(2), (2, 6, 6, 3)),
    (lambda m: m.layers.Dropout(0.3, seed=5), (4, 5)),
    (lambda m: m.layers.Flatten(), (2, 3, 4, 5)),
    (lambda m: m.layers.Activation("softmax"), (3, 6)),
    (lambda m: m.layers.BatchNormalization(momentum=0.9, epsilon=0.01, center=False),
     (4, 3, 3, 5)),
]
IDS = ["dense", "dense-softmax", "conv-same", "conv-valid", "pool-same", "pool", "dropout",
       "flatten", "activation", "batchnorm"]


def keras_module():
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    return keras


# --- build, call, variables ------------------------------------------------------------------
def test_build_takes_keras_shape_with_the_batch_axis():
    layer = Dense(2)
    layer.build((1, 2))  # the example: AttributeError before
    assert layer.built and layer.built_input_shape == (2,)
    assert layer.kernel.shape == (2, 2) and layer.bias.shape == (2,)
    conv = Conv2D(8, 3)
    conv.build((None, 10, 9, 3))
    assert conv.kernel.shape == (3, 3, 3, 8)
    conv.build((None, 10, 9, 3))  # again, same shape: nothing happens
    with pytest.raises(ValueError, match="built for inputs of shape"):
        conv.build((None, 10, 9, 4))
    with pytest.raises(ValueError, match="batch axis first"):
        Dense(2).build((3,))


@pytest.mark.keras
@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_layer_called_on_an_array_computes_what_keras_computes(make, shape):
    keras = keras_module()
    ours, theirs = make(minicnn), make(keras)
    ours.build(shape)
    theirs.build(shape)
    assert [tuple(w.shape) for w in theirs.weights] == [w.shape for w in ours.weights]
    weights = [w.numpy() + RNG.normal(0, 0.1, w.shape).astype(np.float32) for w in ours.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x = RNG.standard_normal(shape).astype(np.float32)
    assert_close(f"{ours.name} output", ours(x), np.asarray(theirs(x)), FORWARD)


def test_kernel_and_bias_are_live_variables():
    layer = Dense(3, use_bias=False)
    with pytest.raises(AttributeError, match="You must build the layer before accessing `kernel`"):
        layer.kernel  # noqa: B018
    layer.build((None, 2))
    assert layer.bias is None  # as Keras with use_bias=False
    kernel = layer.kernel
    assert isinstance(kernel, Variable) and kernel.path == f"{layer.name}/kernel"
    kernel.assign(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(layer(np.array([[1.0, 1.0]])), [[3.0, 5.0, 7.0]])
    assert (kernel * 2)[1, 2] == 10.0 and np.asarray(kernel).dtype == np.float32
    copy = kernel.numpy()
    copy[0, 0] = 99.0
    assert layer.get_weights()[0][0, 0] == 0.0  # numpy() is a copy
    with pytest.raises(TypeError, match="assign_add"):
        kernel += 1
    bn = BatchNormalization()
    bn.build((None, 4))
    assert [v.name for v in bn.trainable_weights] == ["gamma", "beta"]
    assert [v.name for v in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    assert bn.moving_variance.numpy().tolist() == [1.0] * 4


@pytest.mark.keras
def test_weights_lists_match_keras_names_shapes_and_trainability():
    keras = keras_module()
    for make, shape in LAYERS:
        ours, theirs = make(minicnn), make(keras)
        ours.build(shape)
        theirs.build(shape)
        for attr in ("weights", "trainable_weights", "non_trainable_weights"):
            assert [(v.name, v.shape, v.trainable) for v in getattr(ours, attr)] == \
                [(v.name, tuple(v.shape), v.trainable) for v in getattr(theirs, attr)], attr


@pytest.mark.keras
def test_setting_activation_after_construction_acts_as_in_keras():
    keras = keras_module()
    x = RNG.standard_normal((5, 8, 8, 1)).astype(np.float32)

    def pair():
        minicnn.set_random_seed(0)
        ours = Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2),
                           Flatten(), Dense(3, activation="softmax")])
        theirs = keras.Sequential([keras.Input((8, 8, 1)),
                                   keras.layers.Conv2D(4, 3, activation="relu"),
                                   keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                                   keras.layers.Dense(3, activation="softmax")])
        theirs.set_weights(ours.get_weights())
        return ours, theirs

    ours, theirs = pair()
    ours.predict(x)  # the numba backend fuses conv + relu + pool: the plan must follow
    for model in (ours, theirs):
        model.layers[0].activation = None
        model.layers[-1].activation = None
    # Keras is called eagerly: its predict() keeps the graph it traced first, activation and all
    assert_close("logits after activation=None", ours.predict(x), theirs(x), FORWARD)
    assert (ours.predict(x) < 0).any()  # linear outputs: no softmax, no relu
    ours.layers[0].activation = "tanh"  # minicnn resolves a name as the constructor does;
    theirs.layers[0].activation = keras.activations.tanh  # Keras's setter wants the function
    assert_close("tanh conv", ours.predict(x), theirs(x), FORWARD)
    with pytest.raises(ValueError, match="activation function identifier"):
        ours.layers[0].activation = "swishy"
    assert ours.layers[0].activation.name == "tanh"  # a refused value changes nothing


def test_activation_functions_are_accepted_as_keras_allows():
    layer = Dense(3, activation=minicnn.activations.softmax)
    assert layer.activation.name == "softmax"
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(minicnn.activations.softmax(x).sum(), 1.0)
    np.testing.assert_allclose(minicnn.activations.relu(np.array([-2.0, 0.5, 9.0]),
                                                        negative_slope=0.1, max_value=6.0),
                               [-0.2, 0.5, 6.0])


# --- configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_get_config_from_config_round_trips_every_layer(make, shape):
    layer = make(minicnn)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    layer.build(shape)
    clone.build(shape)
    clone.set_weights(layer.get_weights())
    x = RNG.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(clone(x), layer(x))


def test_initializer_objects_survive_the_config():
    layer = Dense(3, kernel_initializer=initializers.RandomNormal(stddev=0.5, seed=3),
                  bias_initializer=initializers.Constant(0.25))
    clone = Dense.from_config(layer.get_config())
    for a in (layer, clone):
        a.build((None, 4))
    np.testing.assert_array_equal(clone.kernel.numpy(), layer.kernel.numpy())  # seeded
    assert clone.bias.numpy().tolist() == [0.25] * 3


@pytest.mark.keras
@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_configs_cross_between_minicnn_and_keras(make, shape):
    keras = keras_module()
    ours, theirs = make(minicnn), make(keras)
    cls = type(ours)
    # Keras's full config (module keys, dtype policy, constraints, ...) builds minicnn's layer
    from_keras = cls.from_config(theirs.get_config())
    assert _comparable(from_keras.get_config()) == _comparable(ours.get_config())
    # and minicnn's config builds Keras's
    kcls = getattr(keras.layers, cls.__name__)
    assert kcls.from_config(ours.get_config()).get_config() == _keras_comparable(
        theirs.get_config(), ours.get_config())


def _comparable(config):
    """A minicnn config with Keras's spellings of the same values (names of initialisers)."""
    out = dict(config, name=None)
    for key in ("kernel_initializer", "bias_initializer"):
        if isinstance(out.get(key), dict):
            out[key] = _init_name(out[key]["class_name"])
    return out


def _init_name(class_name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def _keras_comparable(config, ours):
    """Keras's config of the layer built from minicnn's config: the name and seed are ours."""
    return {**config, "name": ours["name"], **({"seed": ours["seed"]} if "seed" in ours else {})}


# --- Keras's arguments minicnn does not implement ---------------------------------------------
ACCEPTED_AT_DEFAULT = [
    lambda: Conv2D(4, 3, data_format="channels_last", dilation_rate=(1, 1), groups=1,
                   kernel_constraint=None, bias_constraint=None, activity_regularizer=None),
    lambda: Conv2D(4, 3, data_format="CHANNELS_LAST"),
    lambda: Dense(3, trainable=True, autocast=False, lora_rank=None, quantization_config=None),
    lambda: Dense(32, input_dim=784),  # Keras 2's spelling of input_shape=(784,)
    lambda: Dropout(0.5, noise_shape=None),
    lambda: MaxPooling2D(2, data_format=None),
    lambda: Flatten(data_format="channels_last"),
    lambda: BatchNormalization(gamma_initializer="ones", beta_regularizer=None, renorm=False,
                               synchronized=False),
    lambda: Activation("relu", trainable=True),
]
REFUSED = [
    ("channels_first", lambda: Conv2D(4, 3, data_format="channels_first"), "data_format"),
    ("dilation", lambda: Conv2D(4, 3, dilation_rate=2), "dilation_rate"),
    ("groups", lambda: Conv2D(4, 3, groups=2), "groups"),
    ("constraint", lambda: Dense(3, kernel_constraint="non_neg"), "kernel_constraint"),
    ("activity", lambda: Dense(3, activity_regularizer="l2"), "activity_regularizer"),
    ("frozen", lambda: Dense(3, trainable=False), "trainable"),
    ("lora", lambda: Dense(3, lora_rank=4), "lora_rank"),
    ("noise_shape", lambda: Dropout(0.5, noise_shape=(None, 1)), "noise_shape"),
    ("renorm", lambda: BatchNormalization(renorm=True), "renorm"),
    ("bn init", lambda: BatchNormalization(gamma_initializer="zeros"), "gamma_initializer"),
    ("unknown", lambda: Dense(3, foo=1), "Unrecognized keyword arguments passed to Dense"),
    ("pool kwarg", lambda: MaxPooling2D(2, dilation_rate=1), "Unrecognized keyword arguments"),
]


@pytest.mark.parametrize("make", ACCEPTED_AT_DEFAULT)
def test_keras_arguments_at_their_defaults_are_accepted(make):
    layer = make()
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    if isinstance(layer, Dense) and layer.input_shape:
        assert layer.input_shape == (784,)


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_keras_arguments_minicnn_does_not_compute_are_refused_by_name(case):
    _, make, words = case
    with pytest.raises(ValueError, match=re.escape(words)):
        make()


# --- Keras's error messages -------------------------------------------------------------------
# (call, the text both messages hold; None: Keras's own text before 'Received'). Where minicnn
# must word it differently (it has no SeedGenerator or learning-rate schedules) the shared text
# is given explicitly.
MESSAGES = [
    (lambda m: m.layers.Dense(0), None),
    (lambda m: m.layers.Dense(-3), None),
    (lambda m: m.layers.Dense(2.5), None),
    (lambda m: m.layers.Dense(2, foo=1), "Unrecognized keyword arguments passed to Dense: "
                                         "{'foo': 1}"),
    (lambda m: m.layers.Dense(2, trainable="yes"), None),
    (lambda m: m.layers.Dense(2, activation="swishy"),
     "Could not interpret activation function identifier: "),
    (lambda m: m.layers.Dense(2, kernel_initializer="nope"),
     "Could not interpret initializer identifier: nope"),
    (lambda m: m.layers.Dense(2, kernel_regularizer="l3"),
     "Could not interpret regularizer identifier: "),
    (lambda m: m.layers.Conv2D(0, 3), None),
    (lambda m: m.layers.Conv2D(8, 0), "Received kernel_size=0, including values {0} that do "
                                      "not satisfy `value > 0`"),
    (lambda m: m.layers.Conv2D(8, (3,)), None),
    (lambda m: m.layers.Conv2D(8, 3, strides=0), None),
    (lambda m: m.layers.Conv2D(8, 3, padding="full"), "The `padding` argument must be a "
                                                      "list/tuple or one of {"),
    (lambda m: m.layers.Conv2D(8, 3, data_format="nhwc"), None),
    (lambda m: m.layers.Conv2D(8, 3, groups=0), None),
    (lambda m: m.layers.MaxPooling2D(0), None),
    (lambda m: m.layers.MaxPooling2D((2, 2, 2)), None),
    (lambda m: m.layers.Dropout(1.5), None),
    (lambda m: m.layers.Dropout(-0.1), None),
    (lambda m: m.layers.Flatten(data_format="x"), None),
    (lambda m: m.layers.BatchNormalization(foo=1), "Unrecognized keyword arguments passed to "
                                                   "BatchNormalization"),
    (lambda m: m.layers.Input(), "You must pass a `shape` argument."),
    (lambda m: m.optimizers.Adam(learning_rate="x"), "Argument `learning_rate` should be float"),
    (lambda m: m.optimizers.Adam(foo=1), "Argument(s) not recognized: {'foo': 1}"),
    (lambda m: m.optimizers.SGD(momentum=1.5), "`momentum` must be a float between [0, 1]."),
    (lambda m: m.regularizers.L1(-1), "Invalid value for argument l1: expected a non-negative "
                                      "float."),
    (lambda m: m.regularizers.L2(float("nan")), "Invalid value for argument l2: expected a "
                                                "non-negative float."),
    (lambda m: m.initializers.VarianceScaling(scale=0), None),
    (lambda m: m.initializers.VarianceScaling(mode="x"), "Invalid `mode` argument: x. Please "
                                                         "use one of {"),
    (lambda m: m.initializers.VarianceScaling(distribution="x"),
     "Invalid `distribution` argument: x.Please use one of {"),
    (lambda m: m.initializers.GlorotUniform(seed="a"), "`seed` argument should be "),
    (lambda m: m.initializers.Orthogonal()((3,)), "The tensor to initialize must be at least "
                                                  "two-dimensional. Received: shape=(3,) of "
                                                  "rank 1."),
    (lambda m: m.initializers.Identity()((2, 2, 2)), "Identity matrix initializer can only be "
                                                     "used for 2D matrices."),
    (lambda m: m.losses.CategoricalCrossentropy(reduction="avg"),
     "Invalid value for argument `reduction`. Expected one of {"),
    (lambda m: m.losses.categorical_crossentropy(np.eye(2), np.eye(2), axis=True),
     "`axis` must be of type `int`. Received: axis=True of type <class 'bool'>"),
    (lambda m: m.backend.set_image_data_format("x"), None),
    (lambda m: m.models.Sequential().add("x"), "can be added to a Sequential model. Received: "),
]


@pytest.mark.keras
@pytest.mark.parametrize("case", MESSAGES, ids=range(len(MESSAGES)))
def test_errors_have_keras_type_and_wording(case):
    keras = keras_module()
    call, shared = case
    with pytest.raises(Exception) as theirs:
        call(keras)
    with pytest.raises(Exception) as ours:
        call(minicnn)
    assert isinstance(ours.value, type(theirs.value)), (type(ours.value), type(theirs.value))
    if shared is None:
        shared = str(theirs.value).split("Received")[0]
    assert shared in str(theirs.value), f"Keras now says: {theirs.value}"
    assert shared in str(ours.value), f"minicnn says: {ours.value}\nKeras says: {theirs.value}"


def test_a_keras_style_custom_layer_builds_through_super():
    class Scaled(Dense):
        """Keras style: build(input_shape) with the batch axis, then super().build."""

        def build(self, input_shape):
            self.seen = input_shape
            super().build(input_shape)
            self.params["kernel"] *= 0

    layer = Scaled(2)
    out = layer(np.ones((3, 4), np.float32))
    assert layer.seen == (None, 4) and layer.built and layer.built_input_shape == (4,)
    np.testing.assert_array_equal(out, np.zeros((3, 2)))
    model = Sequential([Scaled(3, input_shape=(5,))])
    assert model.layers[0].seen == (None, 5) and model.layers[0].kernel.shape == (5, 3)
