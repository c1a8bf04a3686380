"""minicnn.saving: round trips are exact, resuming equals not stopping, bad files fail cleanly.

Every comparison here is exact (np.array_equal, ==): a save/load round trip copies bits, and a
resumed run replays the same float operations in the same order, so no tolerance is needed.
The oracle for resuming is the same training run without the interruption.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import minicnn
from minicnn import config, saving
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.optimizers import SGD, Adam
from minicnn.random import make_rng

N, H, W, K = 48, 8, 8, 3


@pytest.fixture(autouse=True)
def numpy_backend():
    """Every test on the NumPy kernels in float32, restored afterwards."""
    old_floatx = config.floatx()
    with config.using_backend("numpy"):
        yield
    config.set_floatx(old_floatx)


def small_model(seed=0, filters=4, units=K, kernel_initializer="glorot_uniform"):
    """The seed model's shape in miniature: conv, pool, dropout, flatten, dropout, softmax."""
    minicnn.set_random_seed(seed)
    return minicnn.Sequential(
        [
            Conv2D(
                filters,
                3,
                activation="relu",
                input_shape=(H, W, 1),
                kernel_initializer=kernel_initializer,
            ),
            MaxPooling2D(2),
            Dropout(0.25),
            Flatten(),
            Dropout(0.5),
            Dense(units, activation="softmax"),
        ]
    )


def data(seed=1):
    """x (N, H, W, 1) float32, y (N, K) one-hot."""
    rng = np.random.default_rng(seed)
    x = rng.random((N, H, W, 1), dtype=np.float32)
    y = minicnn.utils.to_categorical(rng.integers(0, K, N), K)
    return x, y


def trained(optimizer=None, epochs=1, **kwargs):
    model = small_model(**kwargs)
    model.compile(optimizer=optimizer or Adam(), metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)
    return model


def snapshot(model) -> dict:
    """Everything load may touch: weights, optimizer iterations and slots, dropout counters."""
    snap = {
        "weights": [w.copy() for w in model.get_weights()],
        "counters": [getattr(layer, "counter", None) for layer in model.layers],
    }
    if model.optimizer is not None:
        snap["iterations"] = model.optimizer.iterations
        snap["slots"] = [a.copy() for a in model.optimizer.slot_arrays()]
    return snap


def assert_same_arrays(got, want, what):
    assert len(got) == len(want), f"{what}: {len(got)} arrays, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == w.dtype, f"{what}[{i}]: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{what}[{i}]: shape {g.shape} != {w.shape}"
        diff = float(np.max(np.abs(g.astype(np.float64) - w))) if g.size else 0.0
        assert np.array_equal(g, w), f"{what}[{i}]: max abs diff {diff:.3e}"


def assert_unchanged(model, snap):
    now = snapshot(model)
    assert_same_arrays(now["weights"], snap["weights"], "weights")
    assert now["counters"] == snap["counters"], "dropout counters changed"
    if "iterations" in snap:
        assert now["iterations"] == snap["iterations"], "optimizer iterations changed"
        assert_same_arrays(now["slots"], snap["slots"], "optimizer slots")


# --- round trips -------------------------------------------------------------------------------
def test_save_and_load_model_round_trip_is_exact(tmp_path):
    model = trained()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = minicnn.load_model(path)

    assert loaded.name == model.name
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert [type(x) for x in loaded.layers] == [type(x) for x in model.layers]
    assert loaded.get_config() == model.get_config()
    assert_same_arrays(loaded.get_weights(), model.get_weights(), "weights")
    x, _ = data(seed=7)
    assert_same_arrays([loaded.predict(x)], [model.predict(x)], "predictions")
    # compile state
    assert loaded.loss.name == model.loss.name
    assert loaded.metrics == ["accuracy"]
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 3
    assert_same_arrays(loaded.optimizer.slot_arrays(), model.optimizer.slot_arrays(), "slots")
    # dropout: same seeds, and the counters continue where training stopped
    for a, b in zip(loaded.layers, model.layers, strict=True):
        if isinstance(a, Dropout):
            assert (a.seed, a.counter) == (b.seed, b.counter) == (b.seed, 3)


def test_file_is_a_plain_npz_with_the_documented_names(tmp_path):
    path = tmp_path / "model.npz"
    trained().save(path)
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        header = json.loads(str(f[saving.HEADER_KEY][()]))
        kernel = f["layers/conv2d/kernel"]
    weights = {f"layers/{p}/{k}" for p in ("conv2d", "dense") for k in ("kernel", "bias")}
    slots = {
        f"optimizer/{s}/{p}/{k}"
        for s in ("momentums", "velocities")
        for p in ("conv2d", "dense")
        for k in ("kernel", "bias")
    }
    assert names == {saving.HEADER_KEY} | weights | slots
    assert kernel.shape == (3, 3, 1, 4) and kernel.dtype == np.float32
    assert header["format"] == "minicnn.npz" and header["format_version"] == 1
    assert header["kind"] == "model"
    assert [e["path"] for e in header["layers"]] == [
        "conv2d",
        "max_pooling2d",
        "dropout",
        "flatten",
        "dropout_1",
        "dense",
    ]
    assert header["compile"]["iterations"] == 3
    assert header["layers"][2]["state"] == {"counter": 3}


def test_weights_round_trip_into_a_fresh_model(tmp_path):
    source = trained()
    path = tmp_path / "w.npz"
    source.save_weights(path)
    target = small_model(seed=5)  # other weights, and other layer names (conv2d_1, ...)
    target.compile(optimizer="adam")
    assert target.layers[0].name != source.layers[0].name
    target.load_weights(path)
    assert_same_arrays(target.get_weights(), source.get_weights(), "weights")
    x, _ = data(seed=3)
    assert_same_arrays([target.predict(x)], [source.predict(x)], "predictions")
    assert target.optimizer.iterations == 0, "load_weights must not touch the optimizer"
    with np.load(path) as f:
        assert not any(k.startswith("optimizer/") for k in f.files)


def test_load_weights_also_reads_a_full_model_file(tmp_path):
    source = trained()
    source.save(tmp_path / "m.npz")
    target = small_model(seed=9)
    target.load_weights(tmp_path / "m.npz")
    assert_same_arrays(target.get_weights(), source.get_weights(), "weights")


def test_float64_sgd_momentum_and_custom_initializer_round_trip(tmp_path):
    minicnn.set_floatx("float64")

    def halves(shape, rng, dtype):
        return np.full(shape, 0.5, dtype=dtype)

    model = trained(optimizer=SGD(0.05, momentum=0.9, nesterov=True), kernel_initializer=halves)
    model.save(tmp_path / "m.npz")
    minicnn.set_floatx("float32")  # loading restores the saved dtype, not the current one
    loaded = minicnn.load_model(tmp_path / "m.npz")
    assert loaded.layers[0].params["kernel"].dtype == np.float64
    assert_same_arrays(loaded.get_weights(), model.get_weights(), "weights")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert_same_arrays(loaded.optimizer.slot_arrays(), model.optimizer.slot_arrays(), "slots")


def test_uncompiled_model_round_trip(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    loaded = minicnn.load_model(tmp_path / "m.npz")
    assert loaded.optimizer is None and loaded.loss is None
    assert_same_arrays(loaded.get_weights(), model.get_weights(), "weights")


def test_load_model_leaves_the_global_random_stream_alone(tmp_path):
    trained().save(tmp_path / "m.npz")
    minicnn.set_random_seed(123)
    expected = make_rng().random(4)
    minicnn.set_random_seed(123)
    minicnn.load_model(tmp_path / "m.npz")
    assert np.array_equal(make_rng().random(4), expected)


# --- resuming ----------------------------------------------------------------------------------
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    x, y = data()
    straight = small_model(seed=4)
    straight.compile(optimizer="adam", metrics=["accuracy"])
    h2 = straight.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)

    first = small_model(seed=4)
    first.compile(optimizer="adam", metrics=["accuracy"])
    first.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    first.save(tmp_path / "epoch1.npz")
    del first
    resumed = minicnn.load_model(tmp_path / "epoch1.npz")
    h1 = resumed.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)

    assert_same_arrays(resumed.get_weights(), straight.get_weights(), "weights after epoch 2")
    assert_same_arrays(resumed.optimizer.slot_arrays(), straight.optimizer.slot_arrays(), "slots")
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 6
    for key in ("loss", "accuracy"):
        assert h1.history[key][0] == h2.history[key][1], f"epoch-2 {key} differs"


def test_resume_with_shuffling_matches_two_fit_calls(tmp_path):
    # fit(seed=s) fixes one call's shuffles, so the uninterrupted run is two fit calls too.
    x, y = data()
    straight = small_model(seed=6)
    straight.compile(optimizer="adam", metrics=["accuracy"])
    straight.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=10)
    straight.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=11)

    first = small_model(seed=6)
    first.compile(optimizer="adam", metrics=["accuracy"])
    first.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=10)
    first.save(tmp_path / "m.npz")
    resumed = minicnn.load_model(tmp_path / "m.npz")
    resumed.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=11)
    assert_same_arrays(resumed.get_weights(), straight.get_weights(), "weights")


@pytest.mark.parametrize("forget", ["dropout counters", "optimizer state"])
def test_resume_depends_on_the_saved_state(tmp_path, forget):
    """Control: drop one piece of saved state and the resumed run no longer matches."""
    x, y = data()
    straight = trained(epochs=2, seed=4)
    first = trained(epochs=1, seed=4)
    first.save(tmp_path / "m.npz")
    resumed = minicnn.load_model(tmp_path / "m.npz")
    if forget == "dropout counters":
        for layer in resumed.layers:
            if isinstance(layer, Dropout):
                layer.counter = 0
    else:
        resumed.compile(optimizer="adam", metrics=["accuracy"])
    resumed.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert not np.array_equal(resumed.get_weights()[0], straight.get_weights()[0])


# --- bad files ---------------------------------------------------------------------------------
def read_all(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop(saving.HEADER_KEY)[()])), arrays


def write_all(path, header, arrays):
    np.savez(path, **{saving.HEADER_KEY: np.array(json.dumps(header)), **arrays})


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def flip_a_weight_byte(path):
    # Find the dense kernel's bytes in the (uncompressed) zip and damage one: the CRC must catch it.
    with np.load(path) as f:
        needle = f["layers/dense/kernel"].tobytes()[:64]
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at > 0
    raw[at + 10] ^= 0xFF
    path.write_bytes(bytes(raw))


def not_a_zip(path):
    path.write_text("hello, I am not an npz\n")


def no_header(path):
    _, arrays = read_all(path)
    np.savez(path, **arrays)


def future_version(path):
    header, arrays = read_all(path)
    header["format_version"] = 99
    write_all(path, header, arrays)


def header_not_json(path):
    _, arrays = read_all(path)
    np.savez(path, **{saving.HEADER_KEY: np.array("{not json"), **arrays})


def header_missing_layers(path):
    header, arrays = read_all(path)
    del header["layers"]
    write_all(path, header, arrays)


def compile_missing_iterations(path):
    header, arrays = read_all(path)
    del header["compile"]["iterations"]
    write_all(path, header, arrays)


def nan_weight(path):
    header, arrays = read_all(path)
    arrays["layers/dense/bias"] = arrays["layers/dense/bias"].copy()
    arrays["layers/dense/bias"][1] = np.nan
    write_all(path, header, arrays)


def missing_array(path):
    header, arrays = read_all(path)
    del arrays["optimizer/velocities/dense/bias"]
    write_all(path, header, arrays)


def wrong_declared_shape(path):
    header, arrays = read_all(path)
    arrays["layers/dense/bias"] = np.zeros(7, np.float32)
    write_all(path, header, arrays)


CORRUPTIONS = {
    "truncated": (truncate, "truncated"),
    "flipped byte": (flip_a_weight_byte, "corrupt"),
    "not a zip": (not_a_zip, "not a minicnn save file"),
    "no header": (no_header, "header"),
    "future version": (future_version, "format version 99"),
    "header not json": (header_not_json, "not valid JSON"),
    "header missing layers": (header_missing_layers, "malformed header"),
    "compile missing iterations": (compile_missing_iterations, "malformed header"),
    "nan weight": (nan_weight, "NaN"),
    "missing array": (missing_array, "missing"),
    "undeclared shape": (wrong_declared_shape, "header declares"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_bad_file_raises_naming_it_and_changes_nothing(tmp_path, kind):
    damage, words = CORRUPTIONS[kind]
    path = tmp_path / "bad.npz"
    trained(seed=2).save(path)
    damage(path)
    target = trained(seed=3)
    before = snapshot(target)
    with pytest.raises(ValueError, match=words) as err:
        target.load_weights(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match=words) as err:
        minicnn.load_model(path)
    assert str(path) in str(err.value)
    assert_unchanged(target, before)


def test_mismatched_shape_names_layer_and_shapes_and_changes_nothing(tmp_path):
    path = tmp_path / "m.npz"
    trained(units=K).save(path)
    target = small_model(units=K + 1, seed=8)  # only the last layer differs
    target.compile(optimizer="adam")
    x, _ = data()
    target.fit(x, minicnn.utils.to_categorical(np.arange(N) % (K + 1)), verbose=0)
    before = snapshot(target)
    dense = target.layers[-1]
    d_in = dense.params["kernel"].shape[0]  # 3 * 3 * 4 = 36 flattened features
    with pytest.raises(ValueError) as err:
        target.load_weights(path)
    msg = str(err.value)
    for part in (
        str(path),
        repr(dense.name),
        "'kernel'",
        f"expected shape ({d_in}, {K + 1})",
        f"found ({d_in}, {K})",
    ):
        assert part in msg, f"{part!r} not in: {msg}"
    assert_unchanged(target, before)  # the conv weights before it were not written either


def test_mismatched_layers_are_named(tmp_path):
    path = tmp_path / "m.npz"
    trained().save(path)
    minicnn.set_random_seed(0)
    other = minicnn.Sequential([Flatten(input_shape=(H, W, 1)), Dense(K, activation="softmax")])
    with pytest.raises(ValueError, match=r"holds 6 layers .* has 2"):
        other.load_weights(path)
    swapped = minicnn.Sequential(
        [
            Conv2D(4, 3, activation="relu", input_shape=(H, W, 1)),
            Dropout(0.25),
            MaxPooling2D(2),
            Flatten(),
            Dropout(0.5),
            Dense(K, activation="softmax"),
        ]
    )
    with pytest.raises(ValueError, match=r"layer 1 is MaxPooling2D .* but Dropout"):
        swapped.load_weights(path)


def test_other_misuse_is_reported(tmp_path):
    unbuilt = minicnn.Sequential([Dense(3)])
    with pytest.raises(ValueError, match="not built"):
        unbuilt.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="not built"):
        unbuilt.load_weights(tmp_path / "m.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        minicnn.load_model(tmp_path / "absent.npz")
    trained().save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match="weights only.*load_weights"):
        minicnn.load_model(tmp_path / "w.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trained().save(tmp_path / "no" / "such" / "folder.npz")
    assert not (tmp_path / "no").exists()


# --- atomic writes -----------------------------------------------------------------------------
@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, error):
    path = tmp_path / "m.npz"
    old = trained(seed=1)
    old.save(path)
    old_bytes = path.read_bytes()

    def half_then_fail(f, arrays):
        f.write(b"PK\x03\x04 partial bytes")  # the start of a zip, then the disk fills up
        raise error

    monkeypatch.setattr(saving, "_write_npz", half_then_fail)
    with pytest.raises(type(error)):
        trained(seed=2).save(path)
    with pytest.raises(type(error)):
        trained(seed=2).save(tmp_path / "new.npz")
    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["m.npz"], "a temp file was left behind"
    monkeypatch.undo()
    assert_same_arrays(minicnn.load_model(path).get_weights(), old.get_weights(), "weights")


def test_atomic_write_gives_normal_permissions(tmp_path):
    saving.atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
    (tmp_path / "b.bin").write_bytes(b"x")  # what a plain open() creates under this umask
    assert os.stat(tmp_path / "a.bin").st_mode == os.stat(tmp_path / "b.bin").st_mode


def test_shuffled_resume_with_initial_epoch_is_bit_identical(tmp_path):
    """fit(epochs=2, seed=s) == fit(epochs=1, seed=s); save; load; fit(epochs=2, initial_epoch=1,
    seed=s): each epoch's shuffle is seeded by (seed, epoch), as a resumed Keras run expects."""
    import minicnn
    from minicnn.architectures import seed_model
    from minicnn.utils import to_categorical

    rng = np.random.default_rng(5)
    x = rng.random((96, 28, 28, 1), dtype=np.float32)
    y = to_categorical(rng.integers(0, 10, 96), 10)
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")
    try:
        def fresh():
            minicnn.set_random_seed(11)
            m = seed_model()
            m.compile(optimizer="adam", metrics=["accuracy"])
            return m

        straight = fresh()
        straight.fit(x, y, batch_size=32, epochs=2, seed=4, verbose=0)
        first = fresh()
        first.fit(x, y, batch_size=32, epochs=1, seed=4, verbose=0)
        first.save(tmp_path / "half.npz")
        resumed = minicnn.load_model(tmp_path / "half.npz")
        resumed.fit(x, y, batch_size=32, epochs=2, initial_epoch=1, seed=4, verbose=0)
    finally:
        minicnn.set_backend(old)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
