"""Shared test helpers."""

import os
import subprocess
import sys

import numpy as np


def assert_close(name, actual, expected, rtol, atol=0.0):
    """Fail with the tensor's name and its max abs / max rel error (relative to the largest
    magnitude of expected), so a failing comparison says where and by how much."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    max_abs, max_rel = err.max(initial=0.0), err.max(initial=0.0) / scale
    assert max_abs <= atol or max_rel <= rtol, (
        f"{name}: max abs {max_abs:.3e}, max rel {max_rel:.3e} > tolerance {rtol:.1e}")


def run_without_jit(script: str) -> None:
    """Run script in a fresh Python with NUMBA_DISABLE_JIT=1 (the kernels as plain Python);
    it must exit 0 and print 'ok' last."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def model_state(model) -> dict:
    """Everything a rejected call must leave alone, copied: the layers (identity, names,
    configs, built shapes), every parameter, dropout counters, the compile state (loss,
    optimizer object, its settings, iterations and slots) and the metrics."""
    opt = model.optimizer
    return {
        "layers": [(id(layer), layer.name, repr(layer.get_config()), layer.built_input_shape)
                   for layer in model.layers],
        "params": [(layer.name, k, v.copy()) for layer in model.layers
                   for k, v in layer.params.items()],
        "counters": [getattr(layer, "counter", None) for layer in model.layers],
        "input_shape": model.input_shape,
        "loss": (type(model.loss).__name__, id(model.loss)),
        "metrics": list(model.metrics),
        "optimizer": None if opt is None else (
            id(opt), repr(opt.get_config()), opt.iterations,
            [a.copy() for a in opt.slot_arrays()]),
    }


def assert_state_unchanged(before: dict, model, what: str = "") -> None:
    """Bit-identical state (NaN compares equal to NaN), or a message naming what moved."""
    after = model_state(model)
    for key in ("layers", "counters", "input_shape", "loss", "metrics"):
        assert after[key] == before[key], f"{what}: {key} changed: {before[key]} -> {after[key]}"
    assert len(after["params"]) == len(before["params"]), f"{what}: parameters added/removed"
    for (ln, k, a), (_, _, b) in zip(after["params"], before["params"]):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), \
            f"{what}: {ln}.{k} changed"
    if before["optimizer"] is None:
        assert after["optimizer"] is None, f"{what}: an optimizer appeared"
        return
    (i0, c0, it0, s0), (i1, c1, it1, s1) = before["optimizer"], after["optimizer"]
    assert (i1, c1, it1) == (i0, c0, it0), \
        f"{what}: optimizer changed ({c0}, {it0}) -> ({c1}, {it1})"
    assert len(s1) == len(s0) and all(np.array_equal(a, b) for a, b in zip(s1, s0)), \
        f"{what}: optimizer slots changed"
