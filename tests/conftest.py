import os

import numpy as np
import pytest

import minicnn

# No cold-start helper processes (minicnn.coldstart) in the suite's fits: each test's fit stays
# in its own process; tests/test_coldstart.py turns the helper on where it tests it.
os.environ["MINICNN_COMPILE_HELPER"] = "0"


@pytest.fixture
def float64():
    """Build layers in float64 for the duration of a test (gradient checks need it)."""
    old = minicnn.floatx()
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx(old)


@pytest.fixture
def backend(request):
    """Run a test under a given kernel backend, restoring the previous one."""
    old = minicnn.config.backend_setting()
    minicnn.set_backend(request.param)
    yield request.param
    minicnn.set_backend(old)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
