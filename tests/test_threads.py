"""One model, several threads: predict and evaluate give the single-threaded results.

The fused unit and the layers keep per-call buffers and caches on the model, so concurrent calls
take turns on the model's lock; BLAS's thread limit is one process-wide scope that the first
thread in sets and the last one out restores.

"The same results" is to the last bits of float32, not bit for bit: OpenBLAS's sgemm (the Dense
layer's product) was measured to round differently in a worker thread than in the main thread
for the same arrays, by 3e-8 on probabilities. What a race does (the bug this guards against:
rows of one call's output overwritten by another's) moves probabilities by ~0.1.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import minicnn
from minicnn import architectures
from minicnn.kernels import numba_config

THREADS = 4
CALLS = 30  # per thread: 120 results


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    old = minicnn.config.backend_setting()
    minicnn.set_backend(request.param)
    yield request.param
    minicnn.set_backend(old)


def _hammer(work, n_threads=THREADS):
    """Run work(thread_index, call_index) CALLS times in each of n_threads threads at once."""
    errors, start = [], threading.Barrier(n_threads)

    def run(t):
        try:
            start.wait()
            for c in range(CALLS):
                work(t, c)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors[0]
    assert not any(th.is_alive() for th in threads)


def test_predict_and_evaluate_from_four_threads_match_one_thread(backend):
    minicnn.set_random_seed(0)
    model = architectures.seed_model()
    model.compile(metrics=["accuracy"])
    rng = np.random.default_rng(0)
    # different batch sizes per call, so calls reuse and resize the fused unit's buffers
    inputs = [rng.random((int(rng.integers(1, 70)), 28, 28, 1), dtype=np.float32)
              for _ in range(THREADS * CALLS)]
    labels = [np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(x))] for x in inputs]
    expected = [model.predict(x, batch_size=32) for x in inputs]
    expected_eval = [model.evaluate(x, y, verbose=0) for x, y in zip(inputs[:THREADS * 4],
                                                                      labels)]
    got = [None] * len(inputs)
    got_eval = [None] * len(expected_eval)

    def work(t, c):
        i = t * CALLS + c
        got[i] = model.predict(inputs[i], batch_size=32)
        if c < 4:
            got_eval[t * 4 + c] = model.evaluate(inputs[t * 4 + c], labels[t * 4 + c], verbose=0)

    _hammer(work)
    wrong = [i for i, (g, e) in enumerate(zip(got, expected)) if not _same(g, e)]
    assert not wrong, f"{len(wrong)} of {len(got)} results differ from one thread's"
    np.testing.assert_allclose(got_eval, expected_eval, rtol=1e-6)


def _same(a, b) -> bool:
    """Equal to float32's last bits (see the module docstring)."""
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0)) <= 1e-6


def test_two_models_in_two_threads_and_the_blas_limit_is_restored():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pytest.skip("threadpoolctl is not installed")
    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    minicnn.set_random_seed(1)
    a, b = architectures.seed_model(), architectures.deep_model()
    x = np.random.default_rng(1).random((16, 28, 28, 1), dtype=np.float32)
    want = {id(a): a.predict(x), id(b): b.predict(x)}
    results = {}

    def work(t, c):
        m = (a, b)[t % 2]
        results[(t, c)] = _same(m.predict(x), want[id(m)])

    _hammer(work, n_threads=2)
    assert all(results.values())
    assert numba_config._scope_depth == 0
    after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert after == before


def test_training_in_one_thread_while_another_predicts():
    minicnn.set_random_seed(2)
    model = architectures.seed_model()
    model.compile(metrics=["accuracy"])
    rng = np.random.default_rng(2)
    x = rng.random((256, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
    outputs = []

    def work(t, c):
        if t == 0 and c == 0:
            model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        elif t == 1:
            outputs.append(model.predict(x[:8]))

    _hammer(work, n_threads=2)
    # each predict saw the weights between two steps, never half a step: rows sum to 1
    assert len(outputs) == CALLS
    for out in outputs:
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
