"""EarlyStopping, ModelCheckpoint, CSVLogger and fit's validation_split.

The oracles: crafted validation curves whose stopping epoch is worked out by hand; Keras's own
callbacks driven with the same logs (marked keras); and real fit() runs for the plumbing.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

import minicnn
from minicnn import callbacks, saving
from minicnn.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint
from minicnn.layers import Dense, Flatten
from minicnn.model import Sequential


class FakeModel:
    """Just what the callbacks touch: weights (one number: the epoch they come from), saving
    and stop_training."""

    def __init__(self):
        self.weights = [np.array(-1.0)]
        self.stop_training = False
        self.saved: list[str] = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.asarray(w).copy() for w in weights]

    def save(self, path, **kwargs):
        self.saved.append(os.fspath(path))

    save_weights = save


def drive(cb, curve, monitor="val_loss"):
    """Run cb over a crafted curve as fit() would: weights = epoch index, stop when asked.

    Returns (epochs run, the model)."""
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    epochs = 0
    for epoch, value in enumerate(curve):
        model.weights = [np.array(float(epoch))]
        cb.on_epoch_end(epoch, {"loss": 0.5, monitor: value})
        epochs += 1
        if model.stop_training:
            break
    cb.on_train_end()
    return epochs, model


# --- EarlyStopping on crafted curves (worked by hand) ------------------------------------------
def test_early_stopping_stops_after_patience_and_restores_best():
    # best at epoch 1 (0.8); epochs 2, 3 do not improve: wait reaches 2 = patience at epoch 3
    es = EarlyStopping(patience=2, restore_best_weights=True)
    epochs, model = drive(es, [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    assert epochs == 4 and es.stopped_epoch == 3
    assert es.best == 0.8 and es.best_epoch == 1
    assert model.get_weights()[0] == 1.0  # restored: the weights from the end of epoch 1


def test_early_stopping_min_delta_max_mode_and_no_restore():
    # improvements smaller than min_delta do not count: 0.905 - 0.9 < 0.01
    es = EarlyStopping(monitor="val_accuracy", min_delta=0.01, patience=1)
    epochs, model = drive(es, [0.9, 0.905, 0.95], monitor="val_accuracy")
    assert es.direction == "max"
    assert epochs == 2 and es.stopped_epoch == 1
    assert model.get_weights()[0] == 1.0  # not restored: the last epoch's weights stay


def test_early_stopping_restores_even_without_stopping():
    # Keras 3 restores the best weights at the end of training whether or not it stopped
    es = EarlyStopping(patience=5, restore_best_weights=True)
    epochs, model = drive(es, [1.0, 0.5, 0.7, 0.8])
    assert epochs == 4 and es.stopped_epoch == 0
    assert model.get_weights()[0] == 1.0


def test_early_stopping_baseline_and_start_from_epoch():
    # baseline 0.5: improving on the best but not on the baseline does not reset wait
    # (wait 1, 2, then 3 >= patience at the first epoch that does not improve: epoch 2);
    # without the baseline the same curve runs to the end
    curve = [0.9, 0.8, 0.85, 0.7, 0.4]
    es = EarlyStopping(patience=2, baseline=0.5)
    epochs, _ = drive(es, curve)
    assert epochs == 3 and es.stopped_epoch == 2
    assert drive(EarlyStopping(patience=2), curve)[0] == 5
    # start_from_epoch: the first 2 epochs are not watched at all
    es = EarlyStopping(patience=0, start_from_epoch=2)
    epochs, _ = drive(es, [0.1, 0.2, 0.9, 1.0, 1.1])
    assert epochs == 4 and es.stopped_epoch == 3 and es.best == 0.9


def test_early_stopping_missing_monitor_warns_and_never_stops():
    es = EarlyStopping(monitor="val_loss", patience=0)
    model = FakeModel()
    es.set_model(model)
    es.on_train_begin()
    with pytest.warns(UserWarning, match="val_loss"):
        for epoch in range(3):
            es.on_epoch_end(epoch, {"loss": 1.0})
    assert not model.stop_training


def test_monitor_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="lowest")
    with pytest.raises(ValueError, match="maximized or minimized"):
        EarlyStopping(monitor="val_f1")
    assert EarlyStopping(monitor="val_f1", mode="max").direction == "max"
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match=".npz"):
        ModelCheckpoint("model.keras")


# --- Keras's own callbacks on the same curves ---------------------------------------------------
CURVES = [
    (dict(patience=2, restore_best_weights=True), [1.0, 0.8, 0.9, 0.85, 0.7, 0.6]),
    (dict(patience=1, min_delta=0.05), [1.0, 0.97, 0.96, 0.5, 0.49, 0.48]),
    (dict(patience=2, baseline=0.5, restore_best_weights=True), [0.9, 0.8, 0.7, 0.6, 0.4]),
    (dict(patience=2, baseline=0.5), [0.9, 0.8, 0.85, 0.7, 0.4]),
    (dict(patience=0, start_from_epoch=2), [0.1, 0.2, 0.9, 1.0, 1.1]),
    (dict(patience=5, restore_best_weights=True), [1.0, 0.5, 0.7, 0.8]),
    (dict(patience=1, mode="max", restore_best_weights=True), [0.1, 0.3, 0.2, 0.25, 0.4]),
    (dict(patience=0), [1.0, 1.0, 1.0]),
]


@pytest.mark.keras
@pytest.mark.parametrize("kwargs, curve", CURVES)
def test_early_stopping_decides_as_keras(kwargs, curve):
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    ours, theirs = EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
    epochs, model = drive(ours, curve)
    k_epochs, k_model = drive(theirs, curve)
    assert (epochs, ours.stopped_epoch, ours.best_epoch) == (
        k_epochs,
        theirs.stopped_epoch,
        theirs.best_epoch,
    )
    assert model.get_weights()[0] == k_model.get_weights()[0]


@pytest.mark.keras
def test_checkpoint_save_best_only_decides_as_keras():
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    curve = [0.9, 0.95, 0.7, 0.7, 0.71, 0.2]
    ours = ModelCheckpoint("m-{epoch:02d}-{val_loss:.4f}.npz", save_best_only=True)
    theirs = keras.callbacks.ModelCheckpoint(
        "m-{epoch:02d}-{val_loss:.4f}.keras", save_best_only=True
    )
    _, model = drive(ours, curve)
    _, k_model = drive(theirs, curve)
    assert [p.removesuffix(".npz") for p in model.saved] == [
        p.removesuffix(".keras") for p in k_model.saved
    ]
    assert model.saved == ["m-01-0.9000.npz", "m-03-0.7000.npz", "m-06-0.2000.npz"]


@pytest.mark.keras
@pytest.mark.parametrize("with_val", [True, False])
def test_csv_logger_writes_what_keras_writes(tmp_path, with_val):
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    rows = [{"accuracy": 0.5, "loss": 1.25}, {"accuracy": 0.75, "loss": 0.5}]
    if with_val:
        for r in rows:
            r.update(val_accuracy=0.625, val_loss=0.875)
    for cls, name in ((CSVLogger, "ours.csv"), (keras.callbacks.CSVLogger, "keras.csv")):
        cb = cls(str(tmp_path / name))
        cb.on_train_begin()
        for epoch, logs in enumerate(rows):
            cb.on_epoch_end(epoch, dict(logs))
        cb.on_train_end()
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "keras.csv").read_bytes()


# --- real fit() runs ---------------------------------------------------------------------------
def _tiny(seed=0, n=24):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4, 4, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    minicnn.set_random_seed(seed)
    model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", metrics=["accuracy"])
    return model, x, y


class WeightsAtEpochEnd(Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_early_stopping_in_a_real_fit_stops_and_restores():
    model, x, y = _tiny()
    # min_delta larger than any change: the first epoch is the best and nothing improves on it
    es = EarlyStopping(monitor="val_loss", min_delta=100.0, patience=2, restore_best_weights=True)
    seen = WeightsAtEpochEnd()
    history = model.fit(
        x, y, batch_size=8, epochs=10, verbose=0, validation_split=0.25, callbacks=[seen, es]
    )
    assert len(history.history["val_loss"]) == 3 and es.stopped_epoch == 2
    for ours, best in zip(model.get_weights(), seen.weights[0]):
        np.testing.assert_array_equal(ours, best)
    assert not np.array_equal(seen.weights[0][0], seen.weights[2][0])


def test_checkpoint_files_in_a_real_fit(tmp_path):
    model, x, y = _tiny()
    pattern = str(tmp_path / "ckpt" / "m-{epoch:02d}-{val_loss:.4f}.npz")
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        verbose=0,
        validation_split=0.25,
        callbacks=[ModelCheckpoint(pattern)],
    )
    expected = sorted(
        f"m-{e + 1:02d}-{v:.4f}.npz" for e, v in enumerate(history.history["val_loss"])
    )
    assert sorted(os.listdir(tmp_path / "ckpt")) == expected
    last = minicnn.load_model(tmp_path / "ckpt" / expected[-1])
    for a, b in zip(last.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # weights only, best only
    path = tmp_path / "best.npz"
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        validation_split=0.25,
        callbacks=[ModelCheckpoint(path, save_weights_only=True, save_best_only=True)],
    )
    other, _, _ = _tiny(seed=1)
    other.load_weights(path)


def test_checkpoint_survives_a_crash_mid_write(tmp_path, monkeypatch):
    model, x, y = _tiny()
    path = tmp_path / "model.npz"
    cb = ModelCheckpoint(path)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    good = [w.copy() for w in model.get_weights()]
    good_bytes = path.read_bytes()

    def half_then_fail(f, arrays):
        f.write(good_bytes[: len(good_bytes) // 2])  # half a file reaches the disk...
        raise OSError("disk full")  # ...and then the write dies

    monkeypatch.setattr(saving, "_write_npz", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    monkeypatch.undo()
    assert path.read_bytes() == good_bytes
    assert os.listdir(tmp_path) == ["model.npz"], "a temp file was left behind"
    for a, b in zip(minicnn.load_model(path).get_weights(), good):
        np.testing.assert_array_equal(a, b)


def test_csv_logger_rows_are_the_history(tmp_path):
    model, x, y = _tiny()
    path = tmp_path / "log.csv"
    history = model.fit(
        x, y, batch_size=8, epochs=3, verbose=0, validation_split=0.25, callbacks=[CSVLogger(path)]
    )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == values  # repr round-trips floats exactly
    # append: the rows stay and the header is not repeated
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        validation_split=0.25,
        callbacks=[CSVLogger(path, append=True)],
    )
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert len(lines) == 5 and lines.count(lines[0]) == 1


def test_csv_logger_crash_mid_write_keeps_previous_rows(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0})
    before = path.read_bytes()

    def fail(path, write):
        raise OSError("disk full")

    monkeypatch.setattr(callbacks, "atomic_write", fail)
    with pytest.raises(OSError):
        logger.on_epoch_end(1, {"loss": 0.5})
    assert path.read_bytes() == before


# --- validation_split ---------------------------------------------------------------------------
def test_validation_split_holds_out_the_last_samples_before_shuffling():
    model, x, y = _tiny(n=10)
    steps = []

    class Steps(Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

    # 10 * (1 - 0.3) = 7 training samples (floor, as Keras): x[:7] trains, x[7:] validates
    history = model.fit(
        x,
        y,
        batch_size=1,
        epochs=2,
        verbose=0,
        validation_split=0.3,
        shuffle=True,
        seed=3,
        callbacks=[Steps()],
    )
    assert steps == [7]
    val = model.evaluate(x[7:], y[7:], verbose=0, return_dict=True)
    assert history.history["val_loss"][-1] == pytest.approx(val["loss"], rel=1e-6)
    assert history.history["val_accuracy"][-1] == val["accuracy"]
    # validation_data wins over validation_split, as in Keras
    history = model.fit(
        x,
        y,
        batch_size=1,
        epochs=1,
        verbose=0,
        validation_split=0.3,
        validation_data=(x[:2], y[:2]),
        callbacks=[Steps()],
    )
    assert steps[-1] == 10


def test_validation_split_that_leaves_nothing_raises():
    model, x, y = _tiny(n=3)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x[:1], y[:1], epochs=1, verbose=0, validation_split=0.5)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, epochs=1, verbose=0, validation_split=1e-20)  # 1 - 1e-20 == 1.0
