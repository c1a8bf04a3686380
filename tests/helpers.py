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
