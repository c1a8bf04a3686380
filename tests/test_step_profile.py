"""benchmarks.step_profile: every unit of the model is timed both ways, and the parts fit
inside the whole step they were measured in. No timing value is asserted."""

import pytest

from benchmarks.step_profile import main, profile


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_profile_times_every_unit_of_the_seed_model(backend):
    parts, total = profile("seed", steps=3, batch=8, backend=backend)
    labels = list(parts)
    fused = backend == "auto"  # the Numba backend runs the whole seed network as one unit
    n_units = 1 if fused else 6
    assert sum(label.startswith("forward ") for label in labels) == n_units
    assert sum(label.startswith("backward ") for label in labels) == n_units
    assert "loss" in parts and "optimizer (Adam)" in parts
    assert all(s > 0 for s in parts.values())
    assert sum(parts.values()) <= total * 1.05  # parts measured inside the steps they sum to


def test_main_prints_the_table(capsys):
    assert main(["--steps", "2", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "whole step" in out and "optimizer (Adam)" in out and "ConvReluPoolDense" in out
