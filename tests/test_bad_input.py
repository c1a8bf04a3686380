"""The misuse corpus: every public entry point, given bad arguments, raises a clear error that
names the argument, and leaves the model bit-identical (weights, optimizer object, settings,
iterations and slots, layers, compile state, dropout counters).

Each case is (id, call, exception type, words the message must contain). The model the calls
are made on has been trained one epoch, so it has Adam slots and advanced dropout counters
that a careless implementation could disturb. Keras's accepted forms (NumPy scalars,
batch_size=None, metrics as a string, validation_data with sample weights) are tested to work.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import callbacks, initializers, optimizers, regularizers
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
from tests.helpers import assert_state_unchanged, model_state

RNG = np.random.default_rng(7)
X = RNG.random((24, 8, 8, 1)).astype("float32")
Y = np.eye(3, dtype="float32")[RNG.integers(0, 3, 24)]


def make_model():
    minicnn.set_random_seed(3)
    model = Sequential([
        Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        MaxPooling2D(2),
        Dropout(0.25),
        Flatten(),
        Dropout(0.5),
        Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=optimizers.Adam(), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, seed=0)
    return model


@pytest.fixture(params=["numba", "numpy"])
def trained(request):
    old = minicnn.config.backend_setting()
    minicnn.set_backend(request.param)
    yield make_model()
    minicnn.set_backend(old)


def big_float64():
    x = X.astype(np.float64)
    x[0, 0, 0, 0] = 1e39  # finite in float64, inf in float32
    return x


def with_nan(a):
    a = a.copy()
    a.flat[min(3, a.size - 1)] = np.nan
    return a


# (id, call on the model, exception type, words in the message)
MODEL_CASES = [
    # fit: arguments
    ("fit batch_size=0", lambda m: m.fit(X, Y, batch_size=0, verbose=0), ValueError,
     "batch_size"),
    ("fit batch_size=-1", lambda m: m.fit(X, Y, batch_size=-1, verbose=0), ValueError,
     "Received: batch_size=-1"),
    ("fit batch_size=8.0", lambda m: m.fit(X, Y, batch_size=8.0, verbose=0), TypeError,
     "batch_size=8.0"),
    ("fit batch_size='8'", lambda m: m.fit(X, Y, batch_size="8", verbose=0), TypeError,
     "batch_size"),
    ("fit batch_size=True", lambda m: m.fit(X, Y, batch_size=True, verbose=0), TypeError,
     "batch_size"),
    ("fit epochs=-1", lambda m: m.fit(X, Y, epochs=-1, verbose=0), ValueError, "epochs"),
    ("fit epochs=2.0", lambda m: m.fit(X, Y, epochs=2.0, verbose=0), TypeError, "epochs"),
    ("fit verbose=3", lambda m: m.fit(X, Y, verbose=3), ValueError, "verbose"),
    ("fit verbose='loud'", lambda m: m.fit(X, Y, verbose="loud"), ValueError, "verbose"),
    ("fit validation_split='0.2'", lambda m: m.fit(X, Y, validation_split="0.2", verbose=0),
     TypeError, "validation_split"),
    ("fit validation_split=1", lambda m: m.fit(X, Y, validation_split=1.0, verbose=0),
     ValueError, "validation_split"),
    ("fit validation_split=nan", lambda m: m.fit(X, Y, validation_split=float("nan"),
                                                  verbose=0), ValueError, "validation_split"),
    ("fit validation_split too small", lambda m: m.fit(X[:1], Y[:1], validation_split=0.5,
                                                        verbose=0), ValueError, "not sufficient"),
    ("fit validation_data bare array", lambda m: m.fit(X, Y, validation_data=X, verbose=0),
     TypeError, "validation_data"),
    ("fit validation_data 1-tuple", lambda m: m.fit(X, Y, validation_data=(X,), verbose=0),
     TypeError, "validation_data"),
    ("fit validation_data 4-tuple", lambda m: m.fit(X, Y, validation_data=(X, Y, None, 1),
                                                     verbose=0), TypeError, "validation_data"),
    ("fit validation_data bad x shape", lambda m: m.fit(X, Y, validation_data=(X[:, :6], Y),
                                                         verbose=0), ValueError, "incompatible"),
    ("fit validation_data y of 4 classes",
     lambda m: m.fit(X, Y, validation_data=(X, np.eye(4)[np.arange(24) % 4]), verbose=0),
     ValueError,
     "one-hot"),
    ("fit validation_data NaN", lambda m: m.fit(X, Y, validation_data=(with_nan(X), Y),
                                                 verbose=0), ValueError, "val_x"),
    ("fit shuffle='yes'", lambda m: m.fit(X, Y, shuffle="yes", verbose=0), TypeError,
     "shuffle"),
    ("fit seed=-1", lambda m: m.fit(X, Y, seed=-1, verbose=0), ValueError, "seed=-1"),
    ("fit seed='abc'", lambda m: m.fit(X, Y, seed="abc", verbose=0), TypeError, "seed"),
    ("fit seed=1.5", lambda m: m.fit(X, Y, seed=1.5, verbose=0), TypeError, "seed"),
    ("fit initial_epoch=-1", lambda m: m.fit(X, Y, initial_epoch=-1, verbose=0), ValueError,
     "initial_epoch"),
    ("fit callbacks='x'", lambda m: m.fit(X, Y, callbacks="x", verbose=0), TypeError,
     "callbacks"),
    ("fit callbacks=[object()]", lambda m: m.fit(X, Y, callbacks=[object()], verbose=0),
     TypeError, "callbacks"),
    ("fit sample_weight wrong length", lambda m: m.fit(X, Y, sample_weight=np.ones(5),
                                                        verbose=0), ValueError, "sample_weight"),
    ("fit sample_weight NaN", lambda m: m.fit(X, Y, sample_weight=with_nan(np.ones(24)),
                                               verbose=0), ValueError, "sample_weight"),
    # fit: data
    ("fit x NaN", lambda m: m.fit(with_nan(X), Y, verbose=0), ValueError, "NaN"),
    ("fit x inf", lambda m: m.fit(X * np.inf, Y, verbose=0), ValueError, "NaN or inf"),
    ("fit x beyond float32", lambda m: m.fit(big_float64(), Y, verbose=0), ValueError,
     "beyond the range of float32"),
    ("fit x strings", lambda m: m.fit(np.full((24, 8, 8, 1), "a"), Y, verbose=0), TypeError,
     "dtype"),
    ("fit x complex", lambda m: m.fit(X.astype(complex), Y, verbose=0), TypeError, "dtype"),
    ("fit x ragged list", lambda m: m.fit([[1, 2], [3]], Y, verbose=0), TypeError, "x"),
    ("fit x None", lambda m: m.fit(None, Y, verbose=0), TypeError, "x"),
    ("fit x 2 channels", lambda m: m.fit(np.repeat(X, 2, axis=3), Y, verbose=0), ValueError,
     "incompatible"),
    ("fit x 1-D", lambda m: m.fit(X.reshape(-1), Y, verbose=0), ValueError, "ndim"),
    ("fit x empty", lambda m: m.fit(X[:0], Y[:0], verbose=0), ValueError, "0 samples"),
    ("fit y class indices", lambda m: m.fit(X, np.arange(24) % 3, verbose=0), ValueError,
     "to_categorical"),
    ("fit y 4 classes", lambda m: m.fit(X, np.eye(4)[np.arange(24) % 4], verbose=0),
     ValueError, "one-hot"),
    ("fit y too short", lambda m: m.fit(X, Y[:3], verbose=0), ValueError, "same number"),
    ("fit y NaN", lambda m: m.fit(X, with_nan(Y), verbose=0), ValueError, "y"),
    ("fit y None", lambda m: m.fit(X, None, verbose=0), TypeError, "y"),
    ("fit CSVLogger into a missing folder",
     lambda m: m.fit(X, Y, verbose=0, callbacks=[callbacks.CSVLogger("/no/such/dir/log.csv")]),
     FileNotFoundError, "/no/such/dir"),
    ("fit ModelCheckpoint under a file",
     lambda m: m.fit(X, Y, verbose=0, callbacks=[callbacks.ModelCheckpoint(
         os.path.join(__file__, "ckpt.npz"))]), NotADirectoryError, "not a folder"),
    # evaluate / predict / on_batch
    ("evaluate batch_size=-1", lambda m: m.evaluate(X, Y, batch_size=-1, verbose=0),
     ValueError, "batch_size"),
    ("evaluate empty", lambda m: m.evaluate(X[:0], Y[:0], verbose=0), ValueError, "0 samples"),
    ("evaluate return_dict='yes'", lambda m: m.evaluate(X, Y, return_dict="yes", verbose=0),
     TypeError, "return_dict"),
    ("evaluate sample_weight 2-D", lambda m: m.evaluate(X, Y, sample_weight=np.ones((24, 2)),
                                                         verbose=0), ValueError, "sample_weight"),
    ("predict batch_size=-1", lambda m: m.predict(X, batch_size=-1), ValueError, "batch_size"),
    ("predict batch_size=0", lambda m: m.predict(X, batch_size=0), ValueError, "batch_size"),
    ("predict x NaN", lambda m: m.predict(with_nan(X)), ValueError, "NaN"),
    ("predict x wrong shape", lambda m: m.predict(X[:, :7]), ValueError, "incompatible"),
    ("predict x object", lambda m: m.predict(np.array([None] * 4)), TypeError, "dtype"),
    ("call training='no'", lambda m: m(X, training="no"), TypeError, "training"),
    ("train_on_batch empty", lambda m: m.train_on_batch(X[:0], Y[:0]), ValueError,
     "0 samples"),
    ("train_on_batch NaN", lambda m: m.train_on_batch(with_nan(X), Y), ValueError, "NaN"),
    ("train_on_batch y mismatch", lambda m: m.train_on_batch(X, Y[:5]), ValueError,
     "same number"),
    ("test_on_batch empty", lambda m: m.test_on_batch(X[:0], Y[:0]), ValueError, "0 samples"),
    # compile
    ("compile metrics=['foo']", lambda m: m.compile(optimizer="sgd", metrics=["foo"]),
     ValueError, "metrics"),
    ("compile metrics=5", lambda m: m.compile(optimizer="sgd", metrics=5), TypeError, "metrics"),
    ("compile loss='mse'", lambda m: m.compile(optimizer="sgd", loss="mse"), ValueError, "loss"),
    ("compile optimizer='rmsprop'", lambda m: m.compile(optimizer="rmsprop"), ValueError,
     "optimizer"),
    ("compile optimizer=5", lambda m: m.compile(optimizer=5), ValueError, "optimizer"),
    # building
    ("add a Conv2D after Dense", lambda m: m.add(Conv2D(2, 3)), ValueError, "cannot take"),
    ("add a non-layer", lambda m: m.add("dense"), TypeError, "Layer"),
    ("add a layer twice", lambda m: m.add(m.layers[-1]), ValueError, "already"),
    ("build another shape", lambda m: m.build((9, 9, 1)), ValueError, "built for"),
    ("build with 0 channels", lambda m: m.build((8, 8, 0)), ValueError, "input_shape"),
    # weights
    ("set_weights too few", lambda m: m.set_weights(m.get_weights()[:-1]), ValueError,
     "expects 4"),
    ("set_weights wrong shape", lambda m: m.set_weights([w.T for w in m.get_weights()]),
     ValueError, "shape"),
    ("set_weights NaN", lambda m: m.set_weights([with_nan(w) for w in m.get_weights()]),
     ValueError, "NaN"),
    ("set_weights not a list", lambda m: m.set_weights(5), TypeError, "weights"),
    ("load_weights missing file", lambda m: m.load_weights("/no/such/file.npz"),
     FileNotFoundError, "/no/such/file.npz"),
    # optimizer settings after compile
    ("learning_rate = inf", lambda m: setattr(m.optimizer, "learning_rate", float("inf")),
     ValueError, "learning_rate"),
    ("learning_rate = 'x'", lambda m: setattr(m.optimizer, "learning_rate", "x"), TypeError,
     "learning_rate"),
    # the Keras API of issue 13: a hand-written loop, Variables, Keras 2's methods, configs
    ("compute_gradients x NaN", lambda m: m.compute_gradients(with_nan(X), Y), ValueError, "NaN"),
    ("compute_gradients y too short", lambda m: m.compute_gradients(X, Y[:3]), ValueError,
     "same number"),
    ("compute_gradients training='yes'", lambda m: m.compute_gradients(X, Y, training="yes"),
     TypeError, "training"),
    ("compute_gradients loss='mse'", lambda m: m.compute_gradients(X, Y, loss="mse"), ValueError,
     "loss"),
    ("compute_gradients empty", lambda m: m.compute_gradients(X[:0], Y[:0]), ValueError,
     "0 samples"),
    ("compute_gradients sample_weight", lambda m: m.compute_gradients(X, Y, np.ones(3)),
     ValueError, "sample_weight"),
    ("predict_classes batch_size=-1", lambda m: m.predict_classes(X, batch_size=-1, verbose=0),
     ValueError, "batch_size"),
    ("predict_proba x NaN", lambda m: m.predict_proba(with_nan(X), verbose=0), ValueError, "NaN"),
    ("build (None, 9, 9, 1)", lambda m: m.build((None, 9, 9, 1)), ValueError, "built for"),
    ("add Input to a built model", lambda m: m.add(Input((8, 8, 1))), ValueError,
     "already been configured"),
    ("apply raw arrays", lambda m: m.optimizer.apply(
        [np.zeros_like(w) for w in m.get_weights()], m.get_weights()), TypeError,
     "optimizer.update(params, grads)"),
    ("apply one gradient short", lambda m: m.optimizer.apply(
        [np.zeros(v.shape, np.float32) for v in m.trainable_variables][:-1],
        m.trainable_variables), ValueError, "one gradient per variable"),
    ("apply a NaN gradient", lambda m: m.optimizer.apply(
        [with_nan(np.zeros(v.shape, np.float32)) for v in m.trainable_variables],
        m.trainable_variables), FloatingPointError, "non-finite"),
    ("apply gradients of the wrong shape", lambda m: m.optimizer.apply(
        [np.zeros(v.shape, np.float32).T for v in m.trainable_variables],
        m.trainable_variables), ValueError, "shape"),
    ("apply_gradients not pairs", lambda m: m.optimizer.apply_gradients([1, 2, 3]), TypeError,
     "grads_and_vars"),
    ("apply another model's variables", lambda m: m.optimizer.apply(
        [np.zeros((3, 2), np.float32)], [Sequential([Dense(2, input_shape=(3,),
                                                           use_bias=False)]).layers[0].kernel]),
     ValueError, "do not match"),
    ("kernel.assign wrong shape", lambda m: m.layers[0].kernel.assign(np.zeros((3, 3))),
     ValueError, "must match"),
    ("kernel.assign NaN", lambda m: m.layers[0].kernel.assign(
        with_nan(m.layers[0].kernel.numpy())), ValueError, "NaN"),
    ("kernel.assign strings", lambda m: m.layers[-1].bias.assign(["a", "b", "c"]), TypeError,
     "value"),
    ("learning_rate variable := -1", lambda m: m.optimizer.variables[1].assign(-1.0), ValueError,
     "learning_rate"),
    ("iteration variable := -1", lambda m: m.optimizer.variables[0].assign(-1), ValueError,
     "iterations"),
    ("layer.activation = 'swishy'", lambda m: setattr(m.layers[0], "activation", "swishy"),
     ValueError, "activation function identifier"),
    ("compile loss reduction='sum'", lambda m: m.compile(
        optimizer="sgd", loss=minicnn.losses.CategoricalCrossentropy(reduction="sum")),
     ValueError, "reduction"),
    ("compile loss axis=0", lambda m: m.compile(
        optimizer="sgd", loss=minicnn.losses.CategoricalCrossentropy(axis=0)), ValueError,
     "axis"),
]


@pytest.mark.filterwarnings("ignore:predict_(classes|proba) is Keras 2 API:FutureWarning")
@pytest.mark.parametrize("case", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_rejected_call_names_the_problem_and_changes_nothing(trained, case):
    what, call, error, words = case
    before = model_state(trained)
    with pytest.raises(error) as e:
        call(trained)
    assert words in str(e.value), f"{what}: message {str(e.value)!r} lacks {words!r}"
    assert_state_unchanged(before, trained, what)


def test_rejected_call_on_an_unbuilt_model_leaves_it_unbuilt():
    model = Sequential([Conv2D(4, 3), Flatten(), Dense(3, activation="softmax")])
    model.compile(metrics=["accuracy"])
    for call in (lambda: model.fit(X, Y[:, :2], verbose=0),        # y does not fit the output
                 lambda: model.fit(X[:, :2, :2], Y, verbose=0),    # 2x2 image, 3x3 kernel
                 lambda: model.predict(np.zeros((2, 8, 8, 0))),    # 0 channels
                 lambda: model.fit(X, Y, validation_data=(X, Y[:, :2]), verbose=0)):
        with pytest.raises(ValueError):
            call()
        assert not model.built and all(not layer.built for layer in model.layers)
        assert model.input_shape is None


def test_a_rejected_add_leaves_the_model_usable():
    model = make_model()
    p = model.predict(X)
    with pytest.raises(ValueError):
        model.add(MaxPooling2D(2))  # (3,) cannot be pooled
    assert len(model.layers) == 6
    np.testing.assert_array_equal(model.predict(X), p)


# --- constructors and free functions: (id, call, type, words) ------------------------------
CONSTRUCTOR_CASES = [
    ("Conv2D filters=0", lambda: Conv2D(0, 3), ValueError, "Received filters=0"),
    ("Conv2D filters=2.5", lambda: Conv2D(2.5, 3), TypeError, "filters=2.5"),
    ("Conv2D filters='8'", lambda: Conv2D("8", 3), TypeError, "filters='8'"),
    ("Conv2D filters=True", lambda: Conv2D(True, 3), TypeError, "filters=True"),
    ("Conv2D kernel_size=0", lambda: Conv2D(8, 0), ValueError, "kernel_size=0"),
    ("Conv2D kernel_size=(3,)", lambda: Conv2D(8, (3,)), TypeError, "kernel_size"),
    ("Conv2D kernel_size=3.0", lambda: Conv2D(8, 3.0), TypeError, "kernel_size=3.0"),
    ("Conv2D kernel_size=None", lambda: Conv2D(8, None), TypeError, "kernel_size=None"),
    ("Conv2D kernel_size='3'", lambda: Conv2D(8, "3"), TypeError, "kernel_size"),
    ("Conv2D strides=0", lambda: Conv2D(8, 3, strides=0), ValueError, "strides"),
    ("Conv2D padding='full'", lambda: Conv2D(8, 3, padding="full"), ValueError, "padding"),
    ("Conv2D activation='swish'", lambda: Conv2D(8, 3, activation="swish"), ValueError,
     "activation"),
    ("Conv2D use_bias='yes'", lambda: Conv2D(8, 3, use_bias="yes"), TypeError, "use_bias"),
    ("Conv2D kernel_initializer='nope'", lambda: Conv2D(8, 3, kernel_initializer="nope"),
     ValueError, "nope"),
    ("Conv2D kernel_regularizer='l3'", lambda: Conv2D(8, 3, kernel_regularizer="l3"),
     ValueError, "l3"),
    ("Conv2D name=5", lambda: Conv2D(8, 3, name=5), TypeError, "name"),
    ("Conv2D name='a/b'", lambda: Conv2D(8, 3, name="a/b"), ValueError, "name"),
    ("Conv2D input_shape 0 channels", lambda: Conv2D(8, 3, input_shape=(28, 28, 0)),
     ValueError, "input_shape"),
    ("Conv2D input_shape='28'", lambda: Conv2D(8, 3, input_shape="28"), TypeError,
     "input_shape"),
    ("Conv2D dtype='int32'", lambda: Conv2D(8, 3, dtype="int32"), ValueError, "dtype"),
    ("Dense units=0", lambda: Dense(0), ValueError, "Received: units=0"),
    ("Dense units=True", lambda: Dense(True), TypeError, "units"),
    ("Dense units='10'", lambda: Dense("10"), TypeError, "units"),
    ("Dropout rate=1", lambda: Dropout(1.0), ValueError, "rate=1.0"),
    ("Dropout rate=-0.1", lambda: Dropout(-0.1), ValueError, "rate"),
    ("Dropout rate=nan", lambda: Dropout(float("nan")), ValueError, "rate"),
    ("Dropout rate='0.5'", lambda: Dropout("0.5"), TypeError, "rate"),
    ("Dropout seed=-1", lambda: Dropout(0.5, seed=-1), ValueError, "seed"),
    ("MaxPooling2D pool_size=0", lambda: MaxPooling2D(0), ValueError, "pool_size"),
    ("MaxPooling2D pool_size 3-D", lambda: MaxPooling2D((2, 2, 2)), TypeError, "pool_size"),
    ("MaxPooling2D strides=0", lambda: MaxPooling2D(2, strides=0), ValueError, "strides"),
    ("MaxPooling2D padding='x'", lambda: MaxPooling2D(2, padding="x"), ValueError, "padding"),
    ("BatchNormalization momentum=2", lambda: BatchNormalization(momentum=2), ValueError,
     "momentum"),
    ("BatchNormalization epsilon=0", lambda: BatchNormalization(epsilon=0), ValueError,
     "epsilon"),
    ("BatchNormalization axis='x'", lambda: BatchNormalization(axis="x"), TypeError, "axis"),
    ("BatchNormalization center='no'", lambda: BatchNormalization(center="no"), TypeError,
     "center"),
    ("Activation('swish')", lambda: Activation("swish"), ValueError, "activation"),
    ("Adam learning_rate='x'", lambda: optimizers.Adam(learning_rate="x"), TypeError,
     "learning_rate"),
    ("Adam learning_rate=inf", lambda: optimizers.Adam(learning_rate=float("inf")), ValueError,
     "learning_rate=inf"),
    ("Adam learning_rate=0", lambda: optimizers.Adam(learning_rate=0), ValueError,
     "learning_rate"),
    ("Adam learning_rate=nan", lambda: optimizers.Adam(learning_rate=float("nan")),
     ValueError, "learning_rate"),
    ("Adam beta_1=1", lambda: optimizers.Adam(beta_1=1.0), ValueError, "beta_1"),
    ("Adam epsilon=0", lambda: optimizers.Adam(epsilon=0), ValueError, "epsilon"),
    ("SGD momentum=1.5", lambda: optimizers.SGD(momentum=1.5), ValueError, "momentum"),
    ("SGD nesterov='yes'", lambda: optimizers.SGD(nesterov="yes"), TypeError, "nesterov"),
    ("EarlyStopping patience=-1", lambda: callbacks.EarlyStopping(patience=-1), ValueError,
     "patience"),
    ("EarlyStopping patience=1.5", lambda: callbacks.EarlyStopping(patience=1.5), TypeError,
     "patience"),
    ("EarlyStopping mode='up'", lambda: callbacks.EarlyStopping(mode="up"), ValueError,
     "mode"),
    ("EarlyStopping monitor=5", lambda: callbacks.EarlyStopping(monitor=5), TypeError,
     "monitor"),
    ("EarlyStopping min_delta='x'", lambda: callbacks.EarlyStopping(min_delta="x"), TypeError,
     "min_delta"),
    ("ModelCheckpoint '.h5'", lambda: callbacks.ModelCheckpoint("best.h5"), ValueError,
     ".npz"),
    ("ModelCheckpoint filepath=5", lambda: callbacks.ModelCheckpoint(5), TypeError,
     "filepath"),
    ("CSVLogger filename=5", lambda: callbacks.CSVLogger(5), TypeError, "filename"),
    ("CSVLogger separator=''", lambda: callbacks.CSVLogger("a.csv", separator=""), ValueError,
     "separator"),
    ("L1 l1=-1", lambda: regularizers.L1(-1), ValueError, "l1"),
    ("L2 l2=nan", lambda: regularizers.L2(float("nan")), ValueError, "l2"),
    ("set_random_seed(-1)", lambda: minicnn.set_random_seed(-1), ValueError, "seed"),
    ("set_random_seed('abc')", lambda: minicnn.set_random_seed("abc"), TypeError, "seed"),
    ("Sequential(layers=Dense(2))", lambda: Sequential(Dense(2)), TypeError, "layers"),
    ("Sequential(name='')", lambda: Sequential(name=""), ValueError, "name"),
    ("set_backend('gpu')", lambda: minicnn.set_backend("gpu"), ValueError, "gpu"),
    ("set_floatx('float16')", lambda: minicnn.set_floatx("float16"), ValueError, "float16"),
    ("to_categorical(['a'])", lambda: minicnn.utils.to_categorical(["a"]), TypeError, "dtype"),
    ("to_categorical([-1])", lambda: minicnn.utils.to_categorical([-1]), ValueError, ">= 0"),
    # issue 13: Keras's arguments and the new entry points
    ("Conv2D channels_first", lambda: Conv2D(8, 3, data_format="channels_first"), ValueError,
     "data_format"),
    ("Conv2D dilation_rate=2", lambda: Conv2D(8, 3, dilation_rate=2), ValueError,
     "dilation_rate"),
    ("Conv2D groups=2", lambda: Conv2D(8, 3, groups=2), ValueError, "groups"),
    ("Dense trainable=False", lambda: Dense(2, trainable=False), ValueError, "trainable"),
    ("Dense foo=1", lambda: Dense(2, foo=1), ValueError, "foo"),
    ("Dense input_dim=0", lambda: Dense(2, input_dim=0), ValueError, "input_shape"),
    ("Dropout noise_shape", lambda: Dropout(0.5, noise_shape=(1, 2)), ValueError,
     "noise_shape"),
    ("Input()", lambda: Input(), ValueError, "shape"),
    ("Input shape (0,)", lambda: Input((0,)), ValueError, "shape"),
    ("Input sparse=True", lambda: Input((3,), sparse=True), ValueError, "sparse"),
    ("Adam clipnorm=1", lambda: optimizers.Adam(clipnorm=1.0), ValueError, "clipnorm"),
    ("Adam amsgrad=True", lambda: optimizers.Adam(amsgrad=True), ValueError, "amsgrad"),
    ("Adam foo=1", lambda: optimizers.Adam(foo=1), ValueError, "foo"),
    ("Adam name=5", lambda: optimizers.Adam(name=5), TypeError, "name"),
    ("RandomNormal stddev='x'", lambda: initializers.RandomNormal(stddev="x"), TypeError,
     "stddev"),
    ("VarianceScaling scale=-1", lambda: initializers.VarianceScaling(scale=-1), ValueError,
     "scale"),
    ("VarianceScaling mode=[]", lambda: initializers.VarianceScaling(mode=[]), ValueError,
     "mode"),
    ("GlorotUniform seed=-1", lambda: initializers.GlorotUniform(seed=-1), ValueError, "seed"),
    ("GlorotUniform seed='a'", lambda: initializers.GlorotUniform(seed="a"), TypeError, "seed"),
    ("Constant('a')", lambda: initializers.Constant("a"), TypeError, "value"),
    ("initializer shape -1", lambda: initializers.Zeros()((-1, 2)), ValueError, "shape"),
    ("CCE from_logits='yes'", lambda: minicnn.losses.CategoricalCrossentropy(from_logits="yes"),
     TypeError, "from_logits"),
    ("CCE label_smoothing=2", lambda: minicnn.losses.CategoricalCrossentropy(label_smoothing=2),
     ValueError, "label_smoothing"),
    ("CCE reduction='avg'", lambda: minicnn.losses.CategoricalCrossentropy(reduction="avg"),
     ValueError, "reduction"),
    ("SCCE ignore_class=0", lambda: minicnn.losses.SparseCategoricalCrossentropy(ignore_class=0),
     ValueError, "ignore_class"),
    ("cce shapes differ", lambda: minicnn.losses.categorical_crossentropy(np.eye(3), np.eye(2)),
     ValueError, "same shape"),
    ("set_epsilon(0)", lambda: minicnn.backend.set_epsilon(0), ValueError, "value"),
    ("set_image_data_format channels_first",
     lambda: minicnn.backend.set_image_data_format("channels_first"), ValueError, "data_format"),
    ("model_from_json junk", lambda: minicnn.models.model_from_json("{nope"), ValueError,
     "model_from_json"),
    ("model_from_json Functional", lambda: minicnn.models.model_from_json(
        '{"class_name": "Functional", "config": {}}'), ValueError, "Sequential"),
    ("model_from_json unknown layer", lambda: minicnn.models.model_from_json(
        '{"class_name": "Sequential", "config": {"layers": [{"class_name": "LSTM"}]}}'),
     ValueError, "LSTM"),
    ("model_from_json 5", lambda: minicnn.models.model_from_json(5), TypeError, "json_string"),
    ("clone_model('x')", lambda: minicnn.models.clone_model("x"), TypeError, "model"),
    ("Sequential(trainable=False)", lambda: Sequential(trainable=False), ValueError,
     "trainable"),
    ("Dense.from_config units=0", lambda: Dense.from_config({"units": 0}), ValueError, "units"),
    ("Dense.from_config 5", lambda: Dense.from_config(5), TypeError, "config"),
    ("L1L2.from_config l1=-1", lambda: regularizers.L1L2.from_config({"l1": -1}), ValueError,
     "l1"),
    ("metrics.get('auc')", lambda: minicnn.metrics.get("auc"), ValueError, "auc"),
]


@pytest.mark.parametrize("case", CONSTRUCTOR_CASES, ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_bad_argument_is_refused_by_name(case):
    what, call, error, words = case
    with pytest.raises(error) as e:
        call()
    assert words in str(e.value), f"{what}: message {str(e.value)!r} lacks {words!r}"


def test_wrong_type_errors_are_both_type_and_value_errors():
    # Keras raises ValueError for most bad arguments, Python's convention is TypeError for a
    # wrong type: both `except` clauses catch minicnn's.
    for call in (lambda: Conv2D("8", 3), lambda: optimizers.Adam(learning_rate="x")):
        with pytest.raises(TypeError):
            call()
        with pytest.raises(ValueError):
            call()


# --- what Keras accepts, minicnn accepts -----------------------------------------------------
def test_numpy_scalars_are_accepted_everywhere():
    conv = Conv2D(np.int64(4), np.int32(3), strides=(np.int64(1), 1))
    dense = Dense(np.int64(3), activation="softmax")
    drop = Dropout(np.float32(0.5), seed=np.int64(1))
    assert (conv.filters, conv.kernel_size, dense.units, drop.rate) == (4, (3, 3), 3, 0.5)
    assert type(conv.filters) is int and type(drop.rate) is float
    opt = optimizers.Adam(learning_rate=np.float32(0.01), beta_1=np.float64(0.8))
    assert opt.learning_rate == pytest.approx(0.01) and type(opt.learning_rate) is float
    model = Sequential([conv, Flatten(), drop, dense])
    model.compile(optimizer=opt, metrics=["accuracy"])
    model.fit(X, Y, batch_size=np.int64(8), epochs=np.int64(1), verbose=0,
              validation_split=np.float32(0.25), seed=np.int64(0))
    assert model.optimizer.iterations == 3  # 18 training samples in batches of 8


def test_batch_size_none_means_32_as_keras():
    model = make_model()
    before = model.optimizer.iterations
    model.fit(np.repeat(X, 3, axis=0), np.repeat(Y, 3, axis=0), batch_size=None, epochs=1,
              verbose=0)
    assert model.optimizer.iterations - before == 3  # ceil(72 / 32)
    np.testing.assert_array_equal(model.predict(X, batch_size=None), model.predict(X))


def test_metrics_as_a_string_and_verbose_auto(capsys):
    model = make_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics="accuracy")
    assert model.metrics == ["accuracy"]
    model.fit(X, Y, epochs=1, verbose="auto")
    assert "accuracy:" in capsys.readouterr().out


def test_validation_data_with_sample_weights_weights_the_validation_loss():
    model = make_model()
    w = np.zeros(24, "float32")
    w[:12] = 2.0
    hist = model.fit(X, Y, epochs=1, verbose=0, validation_data=(X, Y, w), shuffle=False)
    # Keras's weighted loss: sum(w * l) / N, N the number of samples (not the sum of weights)
    per = -np.log((model.predict(X) * Y).sum(axis=1).astype(np.float64))
    assert hist.history["val_loss"][0] == pytest.approx((w * per).sum() / 24, rel=1e-5)


def test_sample_weight_scales_the_gradient_as_keras():
    # a weight of 2 on every sample is the same step as doubling the loss: for SGD, w - 2 lr g
    a, b = make_model(), make_model()
    for m in (a, b):
        m.compile(optimizer=optimizers.SGD(0.1), metrics=["accuracy"])
    a.train_on_batch(X, Y, sample_weight=np.full(24, 2.0))
    b.compile(optimizer=optimizers.SGD(0.2), metrics=["accuracy"])
    b.train_on_batch(X, Y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)


def test_predict_on_no_samples_is_an_empty_array():
    model = make_model()
    out = model.predict(X[:0])
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_epochs_not_after_initial_epoch_trains_nothing_as_keras():
    model = make_model()
    before = model_state(model)
    hist = model.fit(X, Y, epochs=2, initial_epoch=2, verbose=0)
    assert hist.history == {}
    assert_state_unchanged(before, model, "fit(epochs=2, initial_epoch=2)")


# --- fuzzing: any junk value for any argument is accepted or refused by name ------------------
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(2**62, 2**64),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
    st.sampled_from([np.int64(2), np.float32(0.5), np.float64(np.nan), np.array(2),
                     np.array([1, 2]), (1,), (1, 2, 3), (0, 1), [2, 2], {}, object()]),
)
CONSTRUCTORS = [
    (Conv2D, {"filters": 2, "kernel_size": 3},
     ["filters", "kernel_size", "strides", "padding", "activation", "use_bias", "name"]),
    (Dense, {"units": 2}, ["units", "activation", "use_bias", "name"]),
    (Dropout, {"rate": 0.5}, ["rate", "seed", "name"]),
    (MaxPooling2D, {}, ["pool_size", "strides", "padding"]),
    (BatchNormalization, {}, ["axis", "momentum", "epsilon", "center", "scale"]),
    (optimizers.Adam, {}, ["learning_rate", "beta_1", "beta_2", "epsilon"]),
    (optimizers.SGD, {}, ["learning_rate", "momentum", "nesterov"]),
    (callbacks.EarlyStopping, {}, ["patience", "min_delta", "mode", "baseline",
                                   "restore_best_weights", "start_from_epoch"]),
    (initializers.VarianceScaling, {}, ["scale", "mode", "distribution", "seed"]),
    (initializers.RandomUniform, {}, ["minval", "maxval", "seed"]),
    (initializers.Orthogonal, {}, ["gain", "seed"]),
    (minicnn.losses.CategoricalCrossentropy, {}, ["from_logits", "label_smoothing", "axis",
                                                  "reduction", "name", "dtype"]),
    (Input, {"shape": (3,)}, ["shape", "dtype", "sparse", "name", "optional"]),
    (Conv2D, {"filters": 2, "kernel_size": 3}, ["data_format", "dilation_rate", "groups",
                                                "trainable", "kernel_constraint"]),
]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(which=st.integers(0, len(CONSTRUCTORS) - 1), pick=st.integers(0, 10), junk=JUNK)
def test_fuzzed_constructor_arguments_are_accepted_or_refused_by_name(which, pick, junk):
    cls, base, args = CONSTRUCTORS[which]
    arg = args[pick % len(args)]
    try:
        cls(**{**base, arg: junk})
    except (TypeError, ValueError) as e:
        assert arg in str(e), f"{cls.__name__}({arg}={junk!r}): {e}"


FIT_ARGS = ["batch_size", "epochs", "verbose", "validation_split", "shuffle", "seed",
            "initial_epoch", "callbacks", "validation_data", "sample_weight"]


@settings(max_examples=120, deadline=None, derandomize=True)
@given(pick=st.integers(0, len(FIT_ARGS) - 1), junk=JUNK)
def test_fuzzed_fit_arguments_are_accepted_or_refused_without_a_trace(pick, junk):
    arg = FIT_ARGS[pick]
    if arg == "epochs" and isinstance(junk, (int, np.integer)) and junk > 3:
        return  # valid, and would train for that many epochs
    model = _FUZZ_MODEL
    before = model_state(model)
    try:
        model.fit(X[:8], Y[:8], **{"epochs": 1, "verbose": 0, arg: junk})
    except (TypeError, ValueError) as e:
        named = arg in str(e) or (arg == "validation_data" and "val_" in str(e))
        assert named, f"fit({arg}={junk!r}): {e}"
        assert_state_unchanged(before, model, f"fit({arg}={junk!r})")


_FUZZ_MODEL = make_model()
