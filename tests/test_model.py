"""Sequential: the summary table, fit's bookkeeping, reproducibility, learning, and bad input."""

import numpy as np
import pytest

import minicnn
from minicnn import Sequential
from minicnn.architectures import seed_model
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.utils import to_categorical

# Keras 3.15's model.summary() for the seed model on an 80-column terminal (KERAS_FACTS.md)
KERAS_SEED_SUMMARY = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ max_pooling2d (MaxPooling2D)    │ (None, 13, 13, 32)     │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dropout (Dropout)               │ (None, 13, 13, 32)     │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ flatten (Flatten)               │ (None, 5408)           │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dropout_1 (Dropout)             │ (None, 5408)           │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 10)             │        54,090 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 54,410 (212.54 KB)
 Trainable params: 54,410 (212.54 KB)
 Non-trainable params: 0 (0.00 B)"""


def seed_model_like_the_notebook():
    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dropout(0.5))
    model.add(Dense(10, activation="softmax"))
    model.compile(loss=minicnn.losses.categorical_crossentropy,
                  optimizer=minicnn.optimizers.Adam(), metrics=["accuracy"])
    return model


def test_summary_matches_keras_exactly():
    minicnn.clear_session()
    model = seed_model_like_the_notebook()
    lines = []
    model.summary(print_fn=lines.append)
    assert "\n".join(lines) == KERAS_SEED_SUMMARY
    assert model.layers[0].get_weights()[0].shape == (3, 3, 1, 32)
    assert model.count_params() == 54_410


def test_summary_after_training_counts_optimizer_params(rng):
    model = seed_model_like_the_notebook()
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    model.train_on_batch(x, to_categorical(rng.integers(0, 10, 8), 10))
    lines = []
    model.summary(print_fn=lines.append)
    # what Keras prints after fit: Adam's m and v for every weight + iterations + learning rate
    assert lines[-4:] == [" Total params: 163,232 (637.63 KB)",
                          " Trainable params: 54,410 (212.54 KB)",
                          " Non-trainable params: 0 (0.00 B)",
                          " Optimizer params: 108,822 (425.09 KB)"]


def test_same_seed_builds_bit_identical_models():
    minicnn.set_random_seed(7)
    a = seed_model().get_weights()
    minicnn.set_random_seed(7)
    b = seed_model().get_weights()
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    # Glorot limits of KERAS_FACTS.md: conv 0.142134, dense 0.0332779
    assert 0.13 < np.abs(a[0]).max() <= 0.142134 and np.abs(a[2]).max() <= 0.0332779
    assert not a[1].any() and not a[3].any()  # zero biases


@pytest.mark.parametrize("backend", ["numpy"], indirect=True)
def test_fit_logs_the_size_weighted_running_mean_before_each_update(backend, rng):
    """Keras's epoch loss is sum_b loss_b * n_b / N with each loss_b taken before its update;
    replay the same batches with train_on_batch on an identical twin and compare."""
    x = rng.random((50, 28, 28, 1), dtype=np.float32)
    y = to_categorical(rng.integers(0, 10, 50), 10)
    minicnn.set_random_seed(3)
    model = seed_model_like_the_notebook()
    hist = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    minicnn.set_random_seed(3)
    twin = seed_model_like_the_notebook()
    losses, accs, sizes = [], [], []
    for start in range(0, 50, 16):
        loss, acc = twin.train_on_batch(x[start:start + 16], y[start:start + 16])
        losses.append(loss)
        accs.append(acc)
        sizes.append(len(x[start:start + 16]))
    assert sizes == [16, 16, 16, 2]
    assert hist.history["loss"][0] == pytest.approx(np.average(losses, weights=sizes), rel=1e-12)
    assert hist.history["accuracy"][0] == pytest.approx(np.average(accs, weights=sizes))
    for wa, wb in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_evaluate_equals_loss_of_predictions(rng):
    model = seed_model_like_the_notebook()
    x = rng.random((40, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, 40)
    y = to_categorical(labels, 10)
    loss, acc = model.evaluate(x, y, batch_size=16, verbose=0)
    p = model.predict(x, batch_size=7).astype(np.float64)
    assert p.shape == (40, 10)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(40), labels])), rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(1) == labels))


def test_fit_history_and_validation_keys(rng):
    model = seed_model_like_the_notebook()
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = to_categorical(rng.integers(0, 10, 64), 10)
    hist = model.fit(x, y, batch_size=32, epochs=2, validation_split=0.25, verbose=0)
    assert sorted(hist.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert hist.epoch == [0, 1] and all(len(v) == 2 for v in hist.history.values())


def test_fit_prints_keras_style_log(rng, capsys):
    model = seed_model_like_the_notebook()
    x = rng.random((40, 28, 28, 1), dtype=np.float32)
    y = to_categorical(rng.integers(0, 10, 40), 10)
    model.fit(x, y, batch_size=16, epochs=1, validation_data=(x[:8], y[:8]))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/1"
    assert out[1].startswith("3/3 ━━━━━━━━━━━━━━━━━━━━ ")
    assert " - accuracy: " in out[1] and out[1].index("accuracy") < out[1].index(" loss")
    assert out[1].split(" - ")[-2].startswith("val_accuracy: ")


def test_seed_model_learns_real_digits():
    """The seed model on 1,500 real MNIST digits (the offline sample): loss falls and accuracy
    on held-out digits is far above chance (10%)."""
    import warnings

    from minicnn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = datasets.load("mnist")
    x = data.x_train[:1500].reshape(-1, 28, 28, 1).astype("float32") / 255
    y = to_categorical(data.y_train[:1500], 10)
    xt = data.x_test[:500].reshape(-1, 28, 28, 1).astype("float32") / 255
    yt = to_categorical(data.y_test[:500], 10)
    minicnn.set_random_seed(0)
    model = seed_model_like_the_notebook()
    hist = model.fit(x, y, batch_size=64, epochs=3, verbose=0, seed=0)
    assert hist.history["loss"][-1] < 0.6 * hist.history["loss"][0]
    assert model.evaluate(xt, yt, verbose=0)[1] > 0.75


# --- bad input: a clear error that names the problem, before anything changes ----------------
def test_bad_input_errors(rng):
    model = seed_model_like_the_notebook()
    before = model.get_weights()
    x = rng.random((4, 28, 28, 1), dtype=np.float32)
    y = to_categorical([1, 2, 3, 4], 10)
    with pytest.raises(ValueError, match=r"expected shape \(None, 28, 28, 1\)"):
        model.fit(rng.random((4, 28, 28)), y, verbose=0)
    bad = x.copy()
    bad[0, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match="one-hot.*to_categorical"):
        model.fit(x, np.array([1, 2, 3, 4]), verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:3], verbose=0)
    with pytest.raises(TypeError, match="dtype"):
        model.predict(np.array([["a"] * 784] * 2).reshape(2, 28, 28, 1))
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match=r"weight 'kernel' has shape \(3, 3, 1, 32\)"):
        model.set_weights([np.zeros((3, 3, 32, 1))] + before[1:])
    for wa, wb in zip(before, model.get_weights()):
        np.testing.assert_array_equal(wa, wb)  # nothing changed by any of the failures


def test_model_used_before_compile(rng):
    model = seed_model()
    with pytest.raises(ValueError, match="compile"):
        model.fit(rng.random((2, 28, 28, 1)), np.eye(10)[:2], verbose=0)
    assert model.predict(rng.random((2, 28, 28, 1))).shape == (2, 10)  # predict needs no compile


@pytest.mark.parametrize("make,match", [
    (lambda: Dropout(1.5), r"rate.*Received: rate=1.5"),
    (lambda: Dropout(1.0), "rate"),
    (lambda: Conv2D(0, 3), "filters"),
    (lambda: Conv2D(4, (3, 0)), "kernel_size"),
    (lambda: Conv2D(4, 3, padding="full"), "padding"),
    (lambda: Dense(-2), "units"),
    (lambda: Dense(3, activation="swish2"), "activation"),
    (lambda: MaxPooling2D(strides=0), "strides"),
])
def test_invalid_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_kernel_larger_than_valid_input():
    with pytest.raises(ValueError, match="does not fit"):
        Sequential([Conv2D(2, 5, input_shape=(3, 3, 1))])


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2], 3), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="out of range"):
        to_categorical([3], 3)
