"""Hostile and damaged files: load_model, load_weights and the dataset readers refuse them with a
ValueError naming the file, quickly, without allocating what a crafted header asks for, and
without touching the model. Saves killed midway leave the old file whole, and the next save
cleans up after them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn import atomic, saving, untrusted
from minicnn.datasets import _files, _idx
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from minicnn.model import Sequential
from tests.helpers import assert_state_unchanged, model_state

RNG = np.random.default_rng(5)
X = RNG.random((16, 8, 8, 1)).astype("float32")
Y = np.eye(3, dtype="float32")[RNG.integers(0, 3, 16)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small(seed=0):
    minicnn.set_random_seed(seed)
    model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(2),
                        Dropout(0.25), Flatten(), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved model's bytes and the model."""
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model = small()
    model.save(path)
    return path.read_bytes(), model


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def archive(parts: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return buf.getvalue()


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=True)
    return buf.getvalue()


def with_header(data: bytes, edit) -> bytes:
    """The saved file with its JSON header changed by edit(header)."""
    parts = members(data)
    raw = np.lib.format.read_array(io.BytesIO(parts["__minicnn__.npy"]))
    header = json.loads(str(raw[()]))
    edit(header)
    text = json.dumps(header).replace('"__1e400__"', "1e400")  # a number JSON reads as inf
    parts["__minicnn__.npy"] = npy(np.array(text))
    return archive(parts)


def both_loaders_refuse(path, words, target=None):
    """load_model and load_weights raise ValueError naming the file and the problem; the
    target model is unchanged."""
    target = target or small(seed=9)
    before = model_state(target)
    for load in (minicnn.load_model, target.load_weights):
        with pytest.raises(ValueError) as e:
            load(path)
        assert str(path) in str(e.value) and words in str(e.value), str(e.value)
    assert_state_unchanged(before, target, f"load {path}")


# --- not a regular file, too large -------------------------------------------------------------
def test_a_named_pipe_is_refused_at_once(tmp_path):
    # In a subprocess with a timeout: a reader that blocks on the pipe would hang the suite.
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        import minicnn
        for load in (minicnn.load_model, minicnn.datasets.mnist.load_data):
            try:
                load({str(fifo)!r})
            except ValueError as e:
                assert "named pipe" in str(e), e
            else:
                raise SystemExit("loaded a pipe")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_a_device_is_refused():
    both_loaders_refuse("/dev/zero", "character device")
    with pytest.raises(ValueError, match="character device"):
        _idx.read_idx("/dev/zero", ndim=1)


def test_a_folder_is_refused(tmp_path):
    both_loaders_refuse(tmp_path, "folder")


def test_a_file_over_the_limit_is_refused_before_reading(tmp_path, saved, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(saved[0])
    monkeypatch.setattr(saving, "MAX_FILE_BYTES", len(saved[0]) - 1)
    both_loaders_refuse(path, "more than")


# --- crafted headers: nothing is allocated for them --------------------------------------------
def peak_mib(call) -> float:
    tracemalloc.start()
    try:
        call()
    except ValueError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def test_a_header_asking_for_400_million_filters_allocates_nothing(tmp_path, saved):
    def edit(h):
        h["layers"][0]["config"]["filters"] = 400_000_000

    path = tmp_path / "m.npz"
    path.write_bytes(with_header(saved[0], edit))
    with pytest.raises(ValueError, match="its config makes weights"):
        minicnn.load_model(path)  # (load_weights reads only the arrays, which are fine)
    assert peak_mib(lambda: minicnn.load_model(path)) < 50  # 400M filters: 14 GB of kernel


def test_an_npy_member_claiming_a_huge_shape_is_refused_before_allocation(tmp_path, saved):
    parts = members(saved[0])
    body = parts["layers/conv2d/kernel.npy"]
    fake = np.lib.format.header_data_from_array_1_0(np.zeros((1,), np.float32))
    fake["shape"] = (400_000_000, 3, 3, 1)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, fake)
    parts["layers/conv2d/kernel.npy"] = buf.getvalue() + body[-64:]
    path = tmp_path / "m.npz"
    path.write_bytes(archive(parts))
    both_loaders_refuse(path, "header declares")
    assert peak_mib(lambda: minicnn.load_model(path)) < 50


def test_deeply_nested_json_is_refused(tmp_path, saved):
    parts = members(saved[0])
    parts["__minicnn__.npy"] = npy(np.array('{"a": ' * 100_000 + "1" + "}" * 100_000))
    path = tmp_path / "m.npz"
    path.write_bytes(archive(parts))
    both_loaders_refuse(path, "nested deeper")


def test_an_oversized_json_header_is_refused(tmp_path, saved):
    parts = members(saved[0])
    parts["__minicnn__.npy"] = npy(np.array(json.dumps({"pad": "x" * (2 * 2**20)})))
    path = tmp_path / "m.npz"
    path.write_bytes(archive(parts))
    both_loaders_refuse(path, "characters of JSON")


def test_a_pickled_object_array_is_refused_without_suggesting_pickle(tmp_path, saved):
    parts = members(saved[0])
    parts["layers/conv2d/kernel.npy"] = npy(np.array([{"evil": 1}], dtype=object))
    path = tmp_path / "m.npz"
    path.write_bytes(archive(parts))
    both_loaders_refuse(path, "not a plain number")
    with pytest.raises(ValueError) as e:
        minicnn.load_model(path)
    assert "allow_pickle" not in str(e.value) and "unsafe" not in str(e.value)


def _set(path, value):
    def edit(h):
        node = h
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


BAD_HEADERS = [
    ("iterations=-5", _set(("compile", "iterations"), -5), "compile.iterations"),
    ("iterations='5'", _set(("compile", "iterations"), "5"), "compile.iterations"),
    ("iterations=True", _set(("compile", "iterations"), True), "compile.iterations"),
    ("learning_rate=1e400 (inf)", _set(("compile", "optimizer", "learning_rate"), "__1e400__"),
     "learning_rate=inf"),
    ("learning_rate=Infinity", _set(("compile", "optimizer", "learning_rate"), float("inf")),
     "Infinity is not allowed"),
    ("NaN anywhere", _set(("layers", 2, "config", "rate"), float("nan")), "NaN is not allowed"),
    ("learning_rate=-1", _set(("compile", "optimizer", "learning_rate"), -1), "learning_rate"),
    ("beta_1=2", _set(("compile", "optimizer", "beta_1"), 2.0), "beta_1"),
    ("unknown optimizer", _set(("compile", "optimizer", "class_name"), "Evil"),
     "Unknown optimizer"),
    ("optimizer kwarg", _set(("compile", "optimizer", "evil"), 1), "optimizer"),
    ("loss", _set(("compile", "loss"), "evil"), "loss"),
    ("dropout counter=-1", _set(("layers", 2, "state", "counter"), -1), "state"),
    ("unknown state", _set(("layers", 2, "state", "evil"), 1), "unknown state"),
    ("input_shape 0 channels", _set(("model", "input_shape"), [8, 8, 0]), "input_shape"),
    ("input_shape string", _set(("model", "input_shape"), "8"), "input_shape"),
    ("dtype int8", _set(("layers", 0, "dtype"), "int8"), "dtype"),
    ("class Evil", _set(("layers", 0, "class_name"), "Evil"), "unknown class"),
    ("class Layer", _set(("layers", 0, "class_name"), "Layer"), "unknown class"),
    ("config kwarg", _set(("layers", 0, "config", "evil"), 1), "cannot be rebuilt"),
    ("config filters=-4", _set(("layers", 0, "config", "filters"), -4), "filters"),
    ("config rate=7", _set(("layers", 2, "config", "rate"), 7), "rate"),
    ("path with ..", _set(("layers", 0, "path"), "../x"), "path"),
    ("weights not an object", _set(("layers", 0, "weights"), []), "weights"),
    ("shape negative", _set(("layers", 0, "weights", "kernel", "shape"), [-3, 3, 1, 4]),
     "shape"),
    ("layers empty", _set(("layers",), []), "layers"),
    ("model name not a string", _set(("model", "name"), 5), "model.name"),
    ("slots", _set(("compile", "slots"), ["../evil"]), "compile.slots"),
]


@pytest.mark.parametrize("case", BAD_HEADERS, ids=[c[0] for c in BAD_HEADERS])
def test_a_crafted_header_value_is_refused(tmp_path, saved, case):
    _, edit, words = case
    path = tmp_path / "m.npz"
    path.write_bytes(with_header(saved[0], edit))
    with pytest.raises(ValueError) as e:
        minicnn.load_model(path)
    assert str(path) in str(e.value) and words in str(e.value), str(e.value)


# --- random damage: flipped bytes, truncation ------------------------------------------------
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_is_refused_or_harmless(tmp_path, saved, data):
    raw, model = saved
    offset = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(raw)
    damaged[offset] ^= 1 << bit
    path = tmp_path / "flip.npz"
    path.write_bytes(bytes(damaged))
    try:
        loaded = minicnn.load_model(path)
    except ValueError as e:
        assert str(path) in str(e)
        return
    # a flip the format does not depend on (a zip timestamp, say): the same weights
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_is_refused(tmp_path, saved, data):
    raw, _ = saved
    cut = data.draw(st.integers(0, len(raw) - 1))
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:cut])
    target = small(seed=4)
    before = model_state(target)
    with pytest.raises(ValueError, match="cut.npz"):
        target.load_weights(path)
    with pytest.raises(ValueError, match="cut.npz"):
        minicnn.load_model(path)
    assert_state_unchanged(before, target, "truncated file")


# --- killed while saving -----------------------------------------------------------------------
def test_a_save_killed_midway_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "model.npz"
    small(seed=1).save(path)
    old = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from minicnn import saving
        from tests.test_hostile_files import small
        model = small(seed=2)
        def half_then_die(f, arrays):
            f.write(b"PK" + b"x" * 5000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        saving._write_npz = half_then_die
        model.save({str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert path.read_bytes() == old  # the old file, whole
    stale = atomic.temp_files(path)
    assert len(stale) == 1 and stale[0].stat().st_size >= 5000
    small(seed=3).save(path)  # the next save to the path removes the dead writer's temp file
    assert atomic.temp_files(path) == []
    minicnn.load_model(path)


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    path = tmp_path / "a.bin"
    live = tmp_path / f".a.bin.{os.getppid()}.abc.tmp"  # our parent: certainly alive
    dead = tmp_path / ".a.bin.999999999.abc.tmp"
    legacy = tmp_path / ".a.bin.k2j3h4.tmp"  # minicnn 0.1's name, no process id
    for f in (live, dead, legacy):
        f.write_bytes(b"x")
    atomic.atomic_write(path, lambda f: f.write(b"new"))
    assert live.exists() and not dead.exists() and not legacy.exists()
    assert path.read_bytes() == b"new"


# --- dataset files -----------------------------------------------------------------------------
def idx_bytes(dims, payload=b"") -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def test_an_idx_header_whose_size_overflows_int64_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes([2**32 - 1] * 3, b"\0" * 100))
    with pytest.raises(ValueError, match="header says shape"):
        _idx.read_idx(path, ndim=3)


def test_a_gzip_bomb_is_refused(tmp_path, monkeypatch):
    import gzip

    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes([50_000_000], b"\0" * 50_000_000)))
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(_idx, "MAX_BYTES", 10_000_000)
    assert peak_mib(lambda: _idx.read_idx(path, ndim=1)) < 40
    with pytest.raises(ValueError, match="expands to more than"):
        _idx.read_idx(path, ndim=1)


def test_a_dataset_npz_with_pickled_arrays_is_refused_by_name(tmp_path):
    path = tmp_path / "mnist.npz"
    arrays = {k: np.zeros((2, 28, 28) if k[0] == "x" else 2, np.uint8) for k in _files.KEYS}
    arrays["y_test"] = np.array([1, None], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as e:
        minicnn.datasets.mnist.load_data(path)
    assert str(path) in str(e.value) and "allow_pickle" not in str(e.value)


def test_minicnn_data_naming_an_empty_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MINICNN_DATA"):
        minicnn.datasets.mnist.load_data()
    with pytest.raises(FileNotFoundError, match="MINICNN_DATA"):
        minicnn.datasets.fashion_mnist.load_data()


def test_untrusted_gunzip_reads_concatenated_members():
    import gzip

    data = gzip.compress(b"abc") + gzip.compress(b"def")
    assert untrusted.gunzip(data, 100, "x") == b"abcdef"
    with pytest.raises(ValueError, match="truncated"):
        untrusted.gunzip(data[:-5], 100, "x")
