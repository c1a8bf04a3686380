"""benchmarks.train_epoch: the libraries, the skip line for a missing one, the merge of rounds,
the Markdown tables and ratios (from given numbers), and one real minicnn worker. No timing
value is asserted."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import train_epoch as te

ROOT = Path(__file__).resolve().parents[1]


def _result(epoch, predict, rss, first, loss=0.5):
    return {"epoch_s": [first, epoch, epoch], "predict_s": predict, "peak_rss_mb": rss,
            "loss": [1.0, loss], "accuracy": [0.5, 0.8], "threads": {"intra_op": 2},
            "loadavg_1min": (1.0, 1.2)}


def test_the_five_libraries_in_report_order():
    assert [lib.key for lib in te.libraries()] == [
        "minicnn", "keras-tf", "keras-jax", "torch", "torch-compile"]
    libs = {lib.key: lib for lib in te.libraries(["default", "onednn0"])}
    assert libs["keras-tf-onednn0"].env["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert libs["keras-jax"].env == {"KERAS_BACKEND": "jax"}


def test_a_missing_library_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    torch = next(lib for lib in te.libraries() if lib.key == "torch")
    assert te.missing(torch) == "torch not installed (pip install -e '.[anchors]')"
    assert te.missing(te.libraries()[0]) is None


def test_merge_rounds_takes_medians_over_rounds_and_the_largest_rss():
    a, b = _result(1.0, 0.2, 300, 5.0), _result(3.0, 0.4, 350, 7.0)
    m = te.merge_rounds([a, b])
    assert m["epoch_median_s"] == 2.0  # median of [1, 1, 3, 3]: every later epoch of each round
    assert (m["first_epoch_s"], m["predict_s"], m["peak_rss_mb"]) == (6.0, pytest.approx(0.3), 350)
    assert len(m["rounds"]) == 2
    assert te.merge_rounds([{"error": "boom"}]) == {"error": "boom"}


def test_markdown_tables_compute_ratios_to_minicnn():
    doc = {"n_train": 20000, "batch": 128, "threads": 2, "rounds": 2,
           "epochs": {"seed": 4}, "skipped": [{"key": "torch"}],
           "labels": {lib.key: lib.label for lib in te.libraries()},
           "results": {"seed": {
               "minicnn": te.merge_rounds([_result(0.4, 0.05, 275, 1.2)]),
               "keras-tf": te.merge_rounds([_result(2.5, 0.24, 897, 4.0)]),
               "torch-compile": {"error": "no compiler"}}}}
    text = te.markdown_tables(doc)
    lines = text.splitlines()
    assert "epoch = median of epochs 2-4 over 2 alternated round(s)" in lines[0]
    assert lines[2].startswith("| library | train epoch (s) | predict 10k (s) | peak RSS (MB)")
    assert "| minicnn | 0.4 | 0.05 | 275 | 1.2 | 1x | 1x |" in lines
    assert "| Keras 3 on TensorFlow | 2.5 | 0.24 | 897 | 4 | 6.25x | 4.8x |" in lines
    assert "| PyTorch torch.compile | failed | | | | | |" in lines
    assert "| PyTorch eager | not installed | | | | | |" in lines
    assert "| Keras 3 on JAX | not run | | | | | |" in lines
    assert all(line.count("|") == 8 for line in lines if line.startswith("|"))


def test_main_runs_every_library_alternately_and_prints_one_skip_line(monkeypatch, capsys,
                                                                       tmp_path):
    order = []

    def fake_worker(lib, model, data_dir, epochs, threads):
        order.append(lib.key)
        assert os.path.exists(f"{data_dir}/x.npy") and threads == 2
        return _result(0.5 if lib.key == "minicnn" else 2.0, 0.1, 300, 1.0)

    monkeypatch.setattr(te, "run_worker", fake_worker)

    def missing(lib):
        return "jax not installed" if "jax" in lib.key else None

    monkeypatch.setattr(te, "missing", missing)
    out = tmp_path / "train.json"
    assert te.main(["--libs", "minicnn,keras-jax,torch", "--models", "seed", "--samples", "300",
                    "--rounds", "2", "--no-startup", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert order == ["minicnn", "torch", "minicnn", "torch"]  # alternated rounds
    assert printed.count("skipped Keras 3 on JAX: jax not installed") == 1
    assert "| PyTorch eager | 2 | 0.1 | 300 | 1 | 4x | 1x |" in printed
    assert "| Keras 3 on JAX | not installed | | | | | |" in printed
    doc = json.loads(out.read_text())
    assert doc["schema"] == te.SCHEMA and doc["markdown"] in printed
    assert doc["machine"]["machine"] in printed
    assert doc["skipped"] == [{"key": "keras-jax", "label": "Keras 3 on JAX",
                               "reason": "jax not installed"}]


def _data(tmp_path, n=128):  # one batch: one shape to compile
    rng = np.random.default_rng(0)
    x, y = te._as_float(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
    for name, a in (("x", x), ("y", y), ("xt", x)):
        np.save(tmp_path / f"{name}.npy", a)
    return str(tmp_path)


def test_minicnn_worker_reports_epochs_predict_and_rss(monkeypatch, tmp_path):
    """In-process (the compiled kernels are shared with the suite); CPUs left as they are."""
    from benchmarks import machine

    monkeypatch.setattr(machine, "pin_cpus", lambda n: machine.allowed_cpus())
    out = te.worker("minicnn", "seed", _data(tmp_path), 2, 2)
    assert len(out["epoch_s"]) == 2 and len(out["loss"]) == 2
    assert out["predict_s"] > 0 and out["peak_rss_mb"] > 0 and out["threads"]["numba"] >= 1


@pytest.mark.parametrize("key", ["torch", pytest.param("keras-jax", marks=pytest.mark.slow)])
def test_anchor_worker_runs_in_its_own_process(key, tmp_path):
    needs = {"torch": ["torch"], "keras-jax": ["jax", "keras"]}[key]
    absent = [m for m in needs if importlib.util.find_spec(m) is None]
    if absent:
        pytest.skip(f"{', '.join(absent)} not installed (pip install -e '.[anchors]')")
    lib = next(lib for lib in te.libraries() if lib.key == key)
    out = te.run_worker(lib, "seed", _data(tmp_path), 1, 2)
    assert "error" not in out, out.get("error")
    assert len(out["epoch_s"]) == 1 and out["predict_s"] > 0 and out["peak_rss_mb"] > 0
    if key == "keras-jax":
        assert out["backend"] == "jax"


def test_command_line_rejects_unknown_libraries():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_epoch", "--libs", "caffe"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "unknown --libs ['caffe']" in proc.stderr
