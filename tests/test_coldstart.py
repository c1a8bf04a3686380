"""The cold-start helper (minicnn.coldstart): a first fit on an empty kernel cache compiles the
backward's kernels in a second process, and nothing but the time changes.

The end-to-end test runs in fresh processes with an empty NUMBA_CACHE_DIR (a cold start cannot
be had in a process that has compiled already). The suite turns the helper off for every other
test (conftest.py); here it is turned back on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn import architectures, coldstart, layers, optimizers
from minicnn.kernels import numba_config, numba_threads

pytestmark = pytest.mark.skipif(not minicnn.config.numba_available(), reason="needs Numba")

# One epoch of the seed model on random digits, the same everywhere it runs: leaves `model`
# and `history` (needs np, minicnn, architectures, optimizers).
_SEED_FIT = """
minicnn.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.random((256, 28, 28, 1), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
model = architectures.build("seed", input_shape=(28, 28, 1), num_classes=10)
model.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam())
history = model.fit(x, y, batch_size=128, epochs=1, verbose=0, seed=0, shuffle=False)
"""

# That fit in a fresh process: prints which kernels this process compiled itself
# (top-level compiles only: a kernel's helpers compile inside it), whether a helper ran, the
# losses and the weights' checksum.
_FIT = r"""
import json, os, sys
import numpy as np
from numba.core import event
import minicnn
from minicnn import architectures, coldstart, optimizers

compiled, depth = [], [0]
class Listener(event.Listener):
    def on_start(self, ev):
        if depth[0] == 0:
            compiled.append(ev.data["dispatcher"].py_func.__name__)
        depth[0] += 1
    def on_end(self, ev):
        depth[0] -= 1
event.register("numba:compile", Listener())

started = []
start = coldstart.start
coldstart.start = lambda *a: started.append(start(*a)) or started[-1]
minicnn.set_backend("numba")
""" + _SEED_FIT + r"""
h = started[0]
print(json.dumps({
    "compiled": compiled,
    "helper": None if h is None else h.process.returncode,
    "marker": None if h is None else os.path.exists(h.marker),
    "loss": history.history["loss"],
    "weights": [float(np.sum(w.astype(np.float64) ** 2)) for w in model.get_weights()],
}))
"""


def _fit_in_fresh_process(cache, helper: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), MINICNN_COMPILE_HELPER=helper,
               MINICNN_NUM_THREADS=str(numba_config.num_threads()))
    proc = subprocess.run([sys.executable, "-c", _FIT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _fit_here() -> dict:
    """_FIT's fit in this process (no helper: conftest), for its numbers."""
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numba")
    fit = {"np": np, "minicnn": minicnn, "architectures": architectures,
           "optimizers": optimizers}
    try:
        exec(_SEED_FIT, fit)
    finally:
        minicnn.set_backend(old)
    return {"loss": fit["history"].history["loss"],
            "weights": [float(np.sum(w.astype(np.float64) ** 2))
                        for w in fit["model"].get_weights()]}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the helper needs two CPUs")
def test_a_cold_fit_compiles_its_backward_in_the_helper_with_the_same_results(tmp_path):
    cold = _fit_in_fresh_process(tmp_path, "1")
    assert cold["helper"] == 0, "the helper process failed"
    assert cold["marker"], "the first step's marker was not written"
    # this process compiled the forward and loaded the backward the helper had cached
    assert "conv_pool_dense_forward_c1" in cold["compiled"]
    assert "conv_pool_dense_backward_c1_k10" not in cold["compiled"], cold["compiled"]
    assert "adam_update" not in cold["compiled"], cold["compiled"]
    # the same numbers, bit for bit, as the same fit in one process with no helper
    here = _fit_here()
    assert cold["loss"] == here["loss"]
    assert cold["weights"] == here["weights"]
    # warm: the marker is there, so no helper starts, and nothing compiles
    warm = _fit_in_fresh_process(tmp_path, "1")
    assert warm["helper"] is None
    assert warm["compiled"] == []
    assert warm["loss"] == here["loss"]


def _tiny_model():
    model = minicnn.Sequential([
        layers.Input((6, 6, 1)),
        layers.Conv2D(2, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam())
    return model


def _data(n=8):
    rng = np.random.default_rng(0)
    x = rng.random((n, 6, 6, 1), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


@pytest.fixture
def helper_on(monkeypatch, tmp_path):
    """The helper enabled, with its markers in an empty folder (a cold cache, as far as the
    markers go: the kernels themselves stay in this process's cache)."""
    monkeypatch.setenv("MINICNN_COMPILE_HELPER", "1")
    monkeypatch.setattr(coldstart, "_cache_folder", lambda: str(tmp_path))
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numba")
    yield tmp_path
    minicnn.set_backend(old)


def _helpers_running(monkeypatch, code: str) -> list:
    """Make the helper run Python ``code`` instead; returns the list of the Helpers fit starts
    (None where it starts none)."""
    monkeypatch.setattr(coldstart, "_command", lambda: [sys.executable, "-c", code])
    started = []
    start = coldstart.start
    monkeypatch.setattr(coldstart, "start", lambda *a: started.append(start(*a)) or started[-1])
    return started


def test_a_failing_helper_changes_nothing_but_time(helper_on, monkeypatch):
    # the helper dies at once: this process compiles what it needs, and trains the same
    started = _helpers_running(monkeypatch, "raise SystemExit(3)")
    x, y = _data()
    minicnn.set_random_seed(0)
    with_helper = _tiny_model()
    with_helper.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)
    assert started[0] is not None and started[0].process.returncode == 3
    monkeypatch.setenv("MINICNN_COMPILE_HELPER", "0")
    minicnn.set_random_seed(0)
    alone = _tiny_model()
    alone.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)
    for a, b in zip(with_helper.get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_marker_stops_a_second_helper(helper_on, monkeypatch):
    calls = []
    monkeypatch.setattr(coldstart, "_command",
                        lambda: calls.append(1) or [sys.executable, "-c", "pass"])
    x, y = _data()
    model = _tiny_model()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert len(calls) == 1
    assert len(list((helper_on / coldstart._MARKERS).iterdir())) == 1
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # the same model and batch: known
    _tiny_model().fit(x, y, batch_size=4, epochs=1, verbose=0)  # an equal model: known too
    assert len(calls) == 1
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # another batch shape: new kernels?
    assert len(calls) == 2


def test_a_fit_that_stops_before_its_first_step_stops_the_helper(helper_on, monkeypatch):
    started = _helpers_running(monkeypatch, "import time; time.sleep(60)")

    class Stop(minicnn.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise KeyboardInterrupt

    x, y = _data()
    with pytest.raises(KeyboardInterrupt):
        _tiny_model().fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Stop()])
    assert started[0].process.poll() is not None  # killed and reaped, not left running
    assert not (helper_on / coldstart._MARKERS).exists()  # no step finished: no marker


def test_a_model_that_cannot_be_pickled_trains_without_a_helper(helper_on, monkeypatch):
    started = _helpers_running(monkeypatch, "pass")
    x, y = _data()
    model = _tiny_model()
    model.layers[0].note = lambda: None  # a user's lambda: pickle refuses it
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert started == [None]
    assert model.optimizer.iterations == 2


def test_no_helper_off_the_numba_backend_or_when_turned_off(helper_on, monkeypatch):
    assert coldstart.enabled()
    monkeypatch.setenv("MINICNN_COMPILE_HELPER", "0")
    assert not coldstart.enabled()
    monkeypatch.setenv("MINICNN_COMPILE_HELPER", "1")
    with minicnn.config.using_backend("numpy"):
        assert not coldstart.enabled()


def test_the_key_leaves_out_names_and_sees_what_picks_kernels():
    a, b = _tiny_model(), _tiny_model()  # the same layers under other names
    assert [la.name for la in a.layers] != [lb.name for lb in b.layers]
    x, y = _data()
    key = coldstart.model_key(a, x.shape, x.dtype, y.shape, y.dtype, False)
    assert key == coldstart.model_key(b, x.shape, x.dtype, y.shape, y.dtype, False)
    assert key != coldstart.model_key(a, (4, 6, 6, 1), x.dtype, y.shape, y.dtype, False)
    assert key != coldstart.model_key(a, x.shape, np.float64, y.shape, y.dtype, False)
    assert key != coldstart.model_key(a, x.shape, x.dtype, y.shape, y.dtype, True)
    next(la for la in b.layers if isinstance(la, layers.Conv2D)).filters = 3  # a wider conv
    assert key != coldstart.model_key(b, x.shape, x.dtype, y.shape, y.dtype, False)


def test_dry_launches_run_no_kernel_and_zero_the_arrays():
    ran = []

    def kernel(a, b, c, t, n0, n1):
        ran.append((t, n0, n1))
        a[n0:n1] = 7

    a, b = np.ones(4), np.ones(3, np.int8)
    ro = np.ones(2)
    ro.flags.writeable = False
    with numba_threads.dry_launches():
        numba_threads.run_chunks(kernel, 4, a, b, ro)
    assert ran == []
    assert not a.any() and not b.any() and ro.all()  # a read-only array is left alone
    numba_threads.run_chunks(kernel, 4, a, b, ro, chunks=1)  # outside: launches run again
    assert ran == [(0, 0, 4)] and (a == 7).all()
