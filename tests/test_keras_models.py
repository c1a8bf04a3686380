"""The model the Keras way: Input, JSON in both directions, clone_model, Keras 2's
predict_proba / predict_classes, and a training loop written by hand (compute_gradients +
apply_gradients) that is fit's own step (issue 13).

Oracles: Keras 3 itself (`keras` marker, weights copied in, reference tolerances), Keras 2's
documented behaviour for the methods Keras 3 removed, and minicnn's own train_on_batch, which
the hand-written loop must reproduce bit for bit.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minicnn
from minicnn import architectures, losses, optimizers
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from minicnn.models import Sequential, clone_model, model_from_json
from reference.tolerances import FORWARD, GRADIENT
from tests.helpers import assert_close, assert_state_unchanged, model_state

RNG = np.random.default_rng(21)
X = RNG.random((16, 28, 28, 1), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 16)]


def keras_module():
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    return keras


def seed(seed=0):
    minicnn.set_random_seed(seed)
    return architectures.seed_model()


# --- Input, build, pop -----------------------------------------------------------------------
def test_input_first_builds_the_model_as_input_shape_does():
    a = Sequential([Input(shape=(28, 28, 1)), Conv2D(32, 3, activation="relu"),
                    MaxPooling2D(2), Flatten(), Dense(10, activation="softmax")])
    assert a.built and a.input_shape == (28, 28, 1) and len(a.layers) == 4
    b = Sequential([Dense(3)])
    b.build((None, 5))  # Keras's spelling, batch axis as None
    assert b.input_shape == (5,) and b.layers[0].kernel.shape == (5, 3)
    with pytest.raises(ValueError, match="already been configured to use input shape"):
        a.add(Input((28, 28, 1)))
    with pytest.raises(ValueError, match="must come first"):
        Sequential([Dense(2), Input((3,))])
    layer = a.pop()
    assert isinstance(layer, Dense) and len(a.layers) == 3 and a.output_shapes()[-1] == (5408,)


# --- JSON and configs ------------------------------------------------------------------------
def test_to_json_and_back_gives_the_same_network():
    model = seed()
    again = model_from_json(model.to_json())
    assert again.get_config() == model.get_config()
    lines = []
    again.summary(print_fn=lines.append)
    theirs = []
    model.summary(print_fn=theirs.append)
    assert lines[1:] == theirs[1:]  # the name line aside: both read "sequential..."
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    restored = Sequential.from_config(json.loads(model.to_json())["config"])
    assert restored.count_params() == 54410 and restored.optimizer is None


@pytest.mark.keras
def test_keras_json_builds_the_same_minicnn_network_and_back():
    keras = keras_module()
    k = keras.Sequential([keras.Input((28, 28, 1)),
                          keras.layers.Conv2D(32, (3, 3), activation="relu"),
                          keras.layers.MaxPooling2D((2, 2)), keras.layers.Dropout(0.25),
                          keras.layers.Flatten(), keras.layers.Dropout(0.5),
                          keras.layers.Dense(10, activation="softmax")])
    ours = model_from_json(k.to_json())
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in k.layers]
    ours.set_weights(k.get_weights())  # the same layouts: no transposes
    assert_close("minicnn from Keras JSON", ours.predict(X), k.predict(X, verbose=0), FORWARD)
    # and Keras reads minicnn's JSON
    mine = seed()
    back = keras.models.model_from_json(mine.to_json())
    assert [layer.name for layer in back.layers] == [layer.name for layer in mine.layers]
    back.set_weights(ours.get_weights())
    assert_close("Keras from minicnn JSON", back.predict(X, verbose=0), ours.predict(X), FORWARD)


def test_clone_model_has_the_config_and_fresh_weights():
    model = seed()
    model.compile(metrics=["accuracy"])
    twin = clone_model(model)
    assert twin.get_config() == model.get_config() and twin.optimizer is None
    assert not np.array_equal(twin.get_weights()[0], model.get_weights()[0])
    narrower = clone_model(model, clone_function=lambda layer: (
        Dense(5, activation="softmax") if isinstance(layer, Dense)
        else type(layer).from_config(layer.get_config())))
    assert narrower.output_shapes()[-1] == (5,)
    with pytest.raises(TypeError, match="model"):
        clone_model("model")


# --- Keras 2's predict_proba / predict_classes -----------------------------------------------
def test_predict_classes_is_the_argmax_and_predict_proba_the_prediction():
    model = seed()
    with pytest.warns(FutureWarning, match=r"np.argmax\(model.predict\(x\), axis=-1\)"):
        classes = model.predict_classes(X, verbose=0)
    with pytest.warns(FutureWarning, match=r"model.predict\(x\)"):
        proba = model.predict_proba(X, verbose=0)
    np.testing.assert_array_equal(proba, model.predict(X))
    np.testing.assert_array_equal(classes, proba.argmax(axis=-1))
    assert classes.shape == (16,) and classes.dtype.kind == "i"


def test_predict_classes_thresholds_one_sigmoid_unit_at_one_half():
    # Keras 2: (proba > 0.5).astype('int32'), shape (N, 1); exactly 0.5 is class 0
    model = Sequential([Dense(1, activation="sigmoid", input_shape=(1,))])
    model.set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    logits = np.log(np.array([[0.2 / 0.8], [1.0], [0.7 / 0.3]], np.float32))  # p = .2, .5, .7
    with pytest.warns(FutureWarning, match=r"> 0.5\).astype\('int32'\)"):
        classes = model.predict_classes(logits, verbose=0)
    assert classes.tolist() == [[0], [0], [1]] and classes.dtype == np.int32


def test_predict_proba_warns_when_outputs_are_not_probabilities(capsys):
    model = Sequential([Dense(2, input_shape=(3,))])  # linear outputs
    model.set_weights([np.full((3, 2), 2.0, np.float32), np.zeros(2, np.float32)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict_proba(np.ones((4, 3), np.float32))
    assert any("invalid probability values" in str(w.message) for w in caught)
    # Keras 2.0's default verbose=1: the seed's notebook shows the bar, "1/1 [===...]"
    assert "1/1" in capsys.readouterr().out


# --- a training loop written by hand ---------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"], indirect=True)
def test_hand_written_loop_is_fits_step_bit_for_bit(backend):
    a, b = seed(3), seed(3)
    for m in (a, b):
        m.compile(optimizer=optimizers.Adam(), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    for step in range(3):
        xb, yb = X[step * 5:(step + 1) * 5], Y[step * 5:(step + 1) * 5]
        loss_a = a.train_on_batch(xb, yb)[0]
        loss_b, grads = b.compute_gradients(xb, yb)  # dropout on, as in fit
        b.optimizer.apply_gradients(zip(grads, b.trainable_variables))
        assert loss_b == loss_a
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert [layer.counter for layer in b.layers if hasattr(layer, "counter")] == \
        [layer.counter for layer in a.layers if hasattr(layer, "counter")]
    # Keras 3's argument order works too, and fit continues from the same optimizer state
    loss, grads = b.compute_gradients(X[:4], Y[:4], training=False)
    b.optimizer.apply(grads, b.trainable_variables)
    a.optimizer.apply(grads, a.trainable_variables)
    b.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=0)
    a.fit(X, Y, epochs=1, batch_size=8, verbose=0, seed=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.keras
def test_compute_gradients_match_keras_gradient_tape():
    keras = keras_module()
    from reference._keras import BACKEND
    from reference.twin import to_keras

    if BACKEND != "tensorflow":
        pytest.skip(f"needs Keras on TensorFlow (a GradientTape); this process runs {BACKEND}")
    import tensorflow as tf

    model = seed(5)
    model.compile(loss="categorical_crossentropy")
    twin = to_keras(model)
    with tf.GradientTape() as tape:
        loss = keras.losses.CategoricalCrossentropy()(Y, twin(X, training=False))
    theirs = tape.gradient(loss, twin.trainable_variables)
    value, ours = model.compute_gradients(X, Y, training=False)
    assert value == pytest.approx(float(loss), rel=FORWARD)
    for v, g, t in zip(model.trainable_variables, ours, theirs):
        assert_close(f"d loss / d {v.path}", g, t.numpy(), GRADIENT)


def test_compute_gradients_with_a_loss_object_and_a_failure_that_changes_nothing():
    model = seed()
    _, grads = model.compute_gradients(X, Y, loss=losses.CategoricalCrossentropy(),
                                       training=False)
    assert [g.shape for g in grads] == [v.shape for v in model.trainable_variables]
    model.compile(loss="categorical_crossentropy")
    model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, 3e38))  # z overflows
    before = model_state(model)
    with pytest.raises(FloatingPointError, match="the loss is"):
        model.compute_gradients(X, Y)
    assert_state_unchanged(before, model, "compute_gradients with an overflowing layer")
    with pytest.raises(ValueError, match="needs a loss"):
        seed().compute_gradients(X, Y)


def test_an_optimizer_from_another_model_is_refused_before_anything_changes():
    a, b = seed(1), Sequential([Flatten(input_shape=(28, 28, 1)), Dense(10,
                                                                      activation="softmax")])
    a.compile(optimizer=optimizers.SGD(0.1, momentum=0.9))
    a.train_on_batch(X, Y)
    b.compile(optimizer=a.optimizer)
    before = model_state(b)
    with pytest.raises(ValueError, match="compile with a new optimizer"):
        b.fit(X, Y, verbose=0)
    assert_state_unchanged(before, b, "fit with another model's optimizer")
    zeros = [np.zeros(v.shape, np.float32) for v in b.trainable_variables]
    with pytest.raises(ValueError, match="already holds state for 4 variables"):
        a.optimizer.apply(zeros, b.trainable_variables)  # its slots came from a's fit
    a.optimizer.apply([np.zeros(v.shape, np.float32) for v in a.trainable_variables],
                      a.trainable_variables)  # now it knows a's variables, as Keras's would
    with pytest.raises(ValueError, match="Unknown variable"):
        a.optimizer.apply(zeros, b.trainable_variables)


def test_layers_with_dropout_and_input_train_as_keras_writes_them():
    model = Sequential([Input((28, 28, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(),
                        Dropout(0.25), Flatten(), Dense(10, activation="softmax")])
    model.compile(loss=minicnn.losses.categorical_crossentropy,  # the seed's spelling
                  optimizer=minicnn.optimizers.Adam(), metrics=["accuracy"])
    history = model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 2


@pytest.mark.keras
def test_lambda_callback_sees_what_keras_shows_it():
    keras = keras_module()
    seen = {"ours": [], "keras": []}

    def recorder(who):
        return dict(on_train_begin=lambda logs: seen[who].append("train_begin"),
                    on_epoch_end=lambda epoch, logs: seen[who].append((epoch, sorted(logs))),
                    on_train_batch_end=lambda batch, logs: seen[who].append(batch))

    x, y = X[:8], Y[:8]
    ours = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(10, activation="softmax")])
    theirs = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10, activation="softmax")])
    for model, cb in ((ours, minicnn.callbacks.LambdaCallback(**recorder("ours"))),
                      (theirs, keras.callbacks.LambdaCallback(**recorder("keras")))):
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb])
    assert seen["ours"] == seen["keras"]
    with pytest.raises(TypeError, match="on_epoch_end"):
        minicnn.callbacks.LambdaCallback(on_epoch_end=5)
