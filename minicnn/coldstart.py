"""A cold start on two cores: the backward's kernels compile in a helper process while this
process compiles the forward's.

Why. With an empty kernel cache, a model's first training step waits for Numba to compile every
kernel the step runs, one after the other: Numba compiles under one process-wide lock, so a
second thread cannot help. On the AVX2 EPYC (README, Start-up) the seed model's forward kernel
took 4.5 s to compile and its backward 5.7 s; the deep model's forward 10 s and its backward
7.9 s. The backward's kernels do not need the forward's to compile, only the shapes and
dtypes of their arrays, and a training machine has a second core.

How. On the first ``fit`` of a model whose kernels are not known to be cached, ``start``
launches a helper: a fresh Python process (``python -m minicnn.coldstart``) that reads a
pickled copy of the model and runs one training step on zeros of the first batch's shape,
with the forward's launches skipped (``numba_threads.dry_launches``: the arrays a launch would
write are zeroed instead). So the helper compiles exactly the backward and optimizer kernels
that batch needs, and Numba writes them to the disk cache both processes share. Meanwhile this
process compiles its forward; before its first backward it waits for the helper
(``Helper.join``), then finds those kernels in the cache and loads them.

What it does not change: results. The helper works on its own copy of the model and changes
nothing here; without it (it failed, timed out, or is turned off) this process compiles what
it needs itself, as it always did. The cache is Numba's own, written with Numba's atomic
renames, which is safe for two processes.

When: only on the numba backend, with two CPUs or more, a disk cache folder, and no marker
for this model in that folder. The marker (``<cache>/minicnn-first-steps/<key>``) is written
when a fit's first step has finished: its kernels are cached from then on. The key is the
model's layers and their configurations (names left out), the batch's shape and dtype, the
targets' shape and dtype, sample weights or not, the optimizer and the loss. With
MINICNN_COMPILE_HELPER=0 in the environment, no helper is started (the test suite sets it, so
that its fits stay single-process; tests/test_coldstart.py turns it back on).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading

import numpy as np

from minicnn import config

# How long a first step waits for its helper at most; then the helper is stopped and this
# process compiles the rest itself. Far above any compile seen (18 s for the deep model on the
# slowest machine measured), so only a helper that is stuck reaches it.
WAIT_SECONDS = 300.0
_MARKERS = "minicnn-first-steps"


def enabled() -> bool:
    """May a helper be started here? numba backend, >= 2 CPUs, MINICNN_COMPILE_HELPER not 0."""
    if os.environ.get("MINICNN_COMPILE_HELPER", "").strip() == "0":
        return False
    if config.get_backend() != "numba":
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) >= 2 and _cache_folder() is not None


def _cache_folder() -> str | None:
    """Numba's disk cache folder (minicnn's per-version folder unless NUMBA_CACHE_DIR is set),
    or None without one (then nothing can be shared, or known to be cached)."""
    import numba

    from minicnn.kernels import numba_config  # noqa: F401 (it sets the folder on import)

    if numba.config.DISABLE_JIT:
        return None
    return numba.config.CACHE_DIR or None


def _without_names(value):
    """A layer config with every 'name' entry left out (names differ between equal models)."""
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, (list, tuple)):
        return [_without_names(v) for v in value]
    return value


def model_key(model, x_shape, x_dtype, y_shape, y_dtype, weighted: bool) -> str:
    """What decides which kernels a training step of this batch compiles, as a short digest.

    Shapes: x_shape (B, *input_shape), y_shape (B, ...): the first batch's."""
    record = {
        "layers": [[type(layer).__name__, _without_names(layer.get_config())]
                   for layer in model.layers],
        "x": [list(x_shape), str(np.dtype(x_dtype))],
        "y": [list(y_shape), str(np.dtype(y_dtype))],
        "weighted": bool(weighted),
        "optimizer": type(model.optimizer).__name__,
        "loss": [type(model.loss).__name__, bool(getattr(model.loss, "from_logits", False))],
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Helper:
    """A running helper process and the marker to write once the first step is done."""

    def __init__(self, process: subprocess.Popen, marker: str):
        self.process, self.marker = process, marker

    def join(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait for the helper to finish (stop it after ``timeout`` s): True if it succeeded,
        i.e. the backward's kernels are in the cache."""
        try:
            return self.process.wait(timeout=timeout) == 0
        except subprocess.TimeoutExpired:
            self.close()
            return False

    def close(self) -> None:
        """Stop the helper if it still runs (a fit that ended before its first backward)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def first_step_done(self) -> None:
        """The first step has finished: its kernels are cached, so the next fit of this model
        starts no helper."""
        self.join()
        folder = os.path.dirname(self.marker)
        try:
            os.makedirs(folder, exist_ok=True)
            with open(self.marker, "a"):  # an empty file: only its existence is read
                pass
        except OSError:
            pass  # a read-only cache: the next fit starts a helper again, nothing worse


def start(model, x_batch, y_batch, sample_weight_batch) -> Helper | None:
    """Start a helper for this model's first training step, or return None (not enabled, or
    the model's kernels are known to be cached).

    Shapes: x_batch (B, *input_shape), y_batch (B, ...), sample_weight_batch (B,) or None: the
    first batch (only their shapes and dtypes are sent; the helper trains on zeros).
    """
    if not enabled():
        return None
    try:
        key = model_key(model, x_batch.shape, x_batch.dtype, y_batch.shape, y_batch.dtype,
                        sample_weight_batch is not None)
        marker = os.path.join(_cache_folder(), _MARKERS, key)
        if os.path.exists(marker):
            return None
        payload = pickle.dumps({
            "model": model,
            "x": (x_batch.shape, x_batch.dtype.str),
            "y": (y_batch.shape, y_batch.dtype.str),
            "sample_weight": None if sample_weight_batch is None else
            (sample_weight_batch.shape, sample_weight_batch.dtype.str),
        })
    except Exception:
        # a model that cannot be keyed or pickled (a user's lambda, say): no helper, and fit
        # compiles everything itself, as it always did
        return None
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "MINICNN_COMPILE_HELPER": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (package_parent,
                                                     os.environ.get("PYTHONPATH")) if p)}
    try:
        process = subprocess.Popen(_command(),
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env)
    except OSError:
        return None  # no helper: this process compiles everything, as without one
    # written from a thread: the pipe holds 64 KB and the child reads only once it has
    # imported minicnn, which would hold this process up for ~0.2 s
    threading.Thread(target=_feed, args=(process.stdin, payload), daemon=True).start()
    return Helper(process, marker)


def _command() -> list[str]:
    """The helper's command line (tests put a failing or slow one in its place)."""
    return [sys.executable, "-m", "minicnn.coldstart"]


def _feed(pipe, payload: bytes) -> None:
    try:
        with pipe:
            pipe.write(payload)
    except OSError:
        pass  # the helper died: join() sees its exit code


def compile_step(payload: dict) -> None:
    """The helper's work: one training step of the payload's model on zeros, the forward's
    launches skipped, so that only the backward's and the optimizer's kernels compile."""
    from minicnn.kernels import numba_config, numba_threads
    from minicnn.kernels.dispatch import ops

    config.set_backend("numba")
    # one thread: the kernels' signatures do not depend on the thread count, and a worker
    # pool would compile its own helpers here too (they are this process's to compile)
    numba_config.set_num_threads(1)
    model = payload["model"]
    x = np.zeros(payload["x"][0], payload["x"][1])
    y = np.zeros(payload["y"][0], payload["y"][1])
    sw = payload["sample_weight"]
    sw = None if sw is None else np.ones(sw[0], sw[1])
    with ops().compute_scope(), np.errstate(all="ignore"):
        with numba_threads.dry_launches():
            out = model.forward(x, training=True)
        _, dout = model.loss_and_gradient(y, out, sw)
        model.backward(dout)
        model.optimizer.update(*model.trainable_params())


if __name__ == "__main__":
    compile_step(pickle.load(sys.stdin.buffer))
