"""Parity against Keras on JAX and PyTorch, and the parts of ``--keras-backend all`` that need
no Keras.

Keras picks its backend once, at import, and this pytest process runs Keras on TensorFlow, so
each backend runs in a fresh process: ``minicnn parity --quick --keras-backend NAME``, and
tests/test_parity.py's broken-twin tests again under KERAS_BACKEND=NAME (on TensorFlow they run
in the main suite). A backend that is not installed skips with one line saying how to install
it, unless MINICNN_REQUIRE_KERAS_BACKENDS names it (CI sets 'jax'): then it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from reference import backends, report, tolerances
from reference.cli import INSTALL_HINT
from reference.report import Row

ROOT = Path(__file__).resolve().parents[1]
OTHER_BACKENDS = ("jax", "torch")
# tests/test_parity.py's tests of the deliberately broken twins (and of the twin's dropout)
BROKEN_TWIN_TESTS = "caught or flags_a_broken or masked_dropout"
N_BROKEN_TWIN_TESTS = 10


def _need(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        msg = f"Keras on {backend}: {backend} is not installed ({INSTALL_HINT[backend]})"
        if backend in os.environ.get("MINICNN_REQUIRE_KERAS_BACKENDS", "").split(","):
            pytest.fail(msg + "; MINICNN_REQUIRE_KERAS_BACKENDS requires it")
        pytest.skip(msg)


def _run(args: list, backend: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend)
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200
    )


def _tail(proc) -> str:
    return f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_quick_parity_against_keras_on(backend, tmp_path):
    _need(backend)
    path = tmp_path / "parity.json"
    proc = _run(
        ["-m", "minicnn", "parity", "--quick", "--keras-backend", backend, "--json", str(path)],
        backend,
    )
    assert proc.returncode == 0, _tail(proc)
    doc = json.loads(path.read_text())
    assert doc["ok"] is True and doc["environment"]["keras_backend"] == backend
    assert {r["keras_backend"] for r in doc["rows"]} == {backend}
    sections = {r["section"].split(" [")[0] for r in doc["rows"]}
    assert {"structure", "forward", "gradients, shared masks", "layers", "optimizer"} <= sections
    assert "trajectory" in sections
    # the one row that is ok only by a documented backend difference (int32 step counter)
    assert {r["known"] for r in doc["rows"] if r["known"]} == {"optimizer-iterations"}
    facts = doc["extras"]["backend_facts"]
    assert facts["crossentropy, sigmoid output"]["form"] == "clipped p/sum(p)"
    assert backends.NAMES[backend] in proc.stdout and "all ok" in proc.stdout


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_broken_twins_fail_on(backend):
    _need(backend)
    proc = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_parity.py"]
        + ["-k", BROKEN_TWIN_TESTS],
        backend,
    )
    assert proc.returncode == 0, _tail(proc)
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(rf"\b{N_BROKEN_TWIN_TESTS} passed\b", summary), summary
    assert "skipped" not in summary and "failed" not in summary, summary


@pytest.mark.keras
@pytest.mark.slow
def test_a_process_with_keras_on_one_backend_starts_a_fresh_one_for_another(tmp_path, capsys):
    # Keras in this process runs on one backend for good; asking for another must not touch
    # it. PyTorch is the quick one to start; from a PyTorch process, TensorFlow.
    pytest.importorskip(os.environ.get("KERAS_BACKEND", "tensorflow"))
    from minicnn.cli import main as cli_main
    from reference._keras import BACKEND

    other = "torch" if BACKEND != "torch" else "tensorflow"
    _need(other)
    path = tmp_path / "parity.json"
    argv = ["parity", "--quick", "--steps", "2", "--keras-backend", other, "--json", str(path)]
    status = cli_main(argv)
    out = capsys.readouterr().out
    assert status == 0, out
    assert backends.NAMES[other] in out
    assert {r["keras_backend"] for r in json.loads(path.read_text())["rows"]} == {other}
    import keras

    assert keras.backend.backend() == BACKEND


# --- --keras-backend all without Keras: merging, cross-backend rows, pins ---------------------
def _doc(backend: str, rows: list[Row]) -> dict:
    for r in rows:
        r.keras_backend = backend
    env = {"keras": "3.15.1", "tensorflow": "2.21.0", "jax": "0.10.2", "jaxlib": "0.10.2"}
    return {
        "ok": all(r.ok for r in rows),
        "rows": [vars(r) for r in rows],
        "extras": {"backend_facts": {"Adam": {"value": f"{backend} fact"}}},
        "environment": {**env, "torch": "2.13.0+cpu", "numpy": "2", "numba": "0", "seconds": 1},
    }


def test_cross_backend_rows_say_which_and_explain_or_fail():
    sig = "layers: sigmoid output: gradients, dropout off [numpy] | loss"
    fwd = "forward [numpy] | dense output"
    rows = [
        Row("forward [numpy]", "dense output", "(2, 3)", 0, 0, 4e-6, True),
        Row(
            "layers: sigmoid output: gradients, dropout off [numpy]", "loss", "()", 0, 0, 4e-6, True
        ),
    ]
    base = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    tensors = {
        "tensorflow": {fwd: [base], sig: [np.float32(0.34)]},
        "jax": {fwd: [base * np.float32(1 + 1e-7)], sig: [np.float32(0.95)]},  # crossentropy
        "torch": {fwd: [base * np.float32(1.001)], sig: [np.float32(0.95)]},  # undocumented
    }
    docs = {b: _doc(b, [Row(**vars(r)) for r in rows]) for b in tensors}
    cross = backends.cross_backend_rows(docs, tensors, list(tensors))
    found = {(r.key, r.keras_backend): r for r in cross}
    assert set(found) == {
        (sig, "jax vs tensorflow"),
        (sig, "torch vs tensorflow"),
        (fwd, "torch vs tensorflow"),
        (fwd, "torch vs jax"),
    }  # jax and torch agree on the loss; jax and tensorflow within 4e-6 on the forward
    assert found[(sig, "jax vs tensorflow")].ok
    assert found[(sig, "jax vs tensorflow")].known == "crossentropy"
    assert not found[(fwd, "torch vs tensorflow")].ok
    assert found[(fwd, "torch vs tensorflow")].max_rel == pytest.approx(1e-3, rel=1e-3)


def test_merged_table_has_a_column_per_backend():
    names = ("tensorflow", "jax", "torch")
    docs = {
        b: _doc(b, [Row("structure", "summary", "(20 lines)", 0, 0, 0.0, True, "", known)])
        for b, known in zip(names, ("", "optimizer-iterations", ""))
    }
    lines = backends.merged_table_lines(docs, names)
    assert lines[0].split()[-3:] == list(names)
    assert lines[2].split()[-6:] == ["0", "ok", "0", "ok*", "0", "ok"]
    md = backends.merged_table_lines(docs, names, markdown=True)
    assert md[0] == "| section | tensor | shape | tolerance | tensorflow | jax | torch |"
    facts = backends.facts_table_lines(docs, names)
    assert "jax fact" in facts[-1] and "torch fact" in facts[-1]


def test_versions_other_than_the_pins_are_named():
    pins = report.pinned_versions()
    assert {"keras", "tensorflow-cpu", "jax", "jaxlib", "torch"} <= set(pins)
    env = {"keras": pins["keras"], "torch": pins["torch"] + "+cpu", "jax": "0.9.0"}
    assert report.version_mismatches(env, "torch") == []  # a local label is not a version
    env["jaxlib"] = pins["jaxlib"]
    assert report.version_mismatches(env, "jax") == [f"jax 0.9.0 (pinned {pins['jax']})"]
    assert report.version_mismatches({}, "tensorflow")[0].startswith("keras not installed")


def test_pins_lie_within_pyprojects_ranges():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for dist, version in report.pinned_versions().items():
        ranges = [r for r in reqs if r.name.lower() == dist]
        assert dist == "jaxlib" or ranges, f"{dist} is pinned but in no extra"
        for r in ranges:
            assert r.specifier.contains(version), f"{dist}=={version} is outside {r}"


def test_every_documented_difference_names_real_backends():
    for d in tolerances.BACKEND_DIFFERENCES:
        assert d.backends and set(d.backends) <= {"jax", "torch"}, d.key
        assert d.what and d.measured and d.remedy, d.key
