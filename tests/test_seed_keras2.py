"""examples/seed_keras2.py, the seed tutorial's 2017 Keras 2 code with only its imports
respelled, runs start to finish on the offline MNIST sample with the seed's own 6 epochs
(issue 13): its prints, Keras 2's predict_proba / predict_classes with their FutureWarnings,
and the eight figures the notebook shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn.datasets import mnist

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "seed_keras2.py"
CLOSED_URL = "http://127.0.0.1:1/mnist.npz"  # refuses at once: no download leaves the machine


def code_lines():
    """The script's lines that are code (not comments, not blank)."""
    return [line for line in SCRIPT.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_only_the_import_lines_spell_minicnn():
    lines = code_lines()
    respelled = [line for line in lines if "minicnn" in line]
    assert respelled and all(line.startswith(("import ", "from ")) for line in respelled)
    # the seed's Keras 2 lines are still there, as written in 2017
    for line in ["y_train = keras.utils.to_categorical(y_train, nb_classes)",
                 "model.compile(loss=keras.losses.categorical_crossentropy,",
                 "              optimizer=keras.optimizers.Adam(),",
                 "if K.image_data_format() == 'channels_first':",
                 "probs = model.predict_proba(digit.reshape(1,28,28,1),batch_size=1)",
                 "predictions = model.predict_classes(x_test, batch_size=32, verbose=1)",
                 "prediction_probs = model.predict_proba(x_test, batch_size=32, verbose=1)",
                 "    model_new.layers[i].set_weights(model.layers[i].get_weights())"]:
        assert line in lines, line
    modernised = [line for line in code_lines() if "# seed:" in line]
    assert len(modernised) == 3  # print(pred.shape) and hist's density= (twice)


@pytest.mark.slow
def test_the_seed_notebook_runs_unchanged_on_the_offline_sample(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    env = {**os.environ, "HOME": str(tmp_path), "KERAS_HOME": str(tmp_path / "keras"),
           mnist.URL_ENV_VAR: CLOSED_URL, "MPLBACKEND": "Agg", "SEED_FIGURES": str(figures),
           "PYTHONWARNINGS": "default"}
    env.pop("MINICNN_DATA", None)
    env.pop("MINICNN_BACKEND", None)
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    for line in ["x_train shape: (4000, 28, 28, 1)", "4000 train samples", "1000 test samples",
                 "(3, 3, 1, 32)", "(1, 26, 26, 32)"]:
        assert line in out, line
    assert sum(line.startswith("Epoch ") for line in out) == 6
    assert any(line.startswith("1/1 ") for line in out)    # predict_proba's bar, verbose=1
    assert any(line.startswith("32/32 ") for line in out)  # predict_classes on 1,000 digits
    accuracy = float(next(line for line in out if line.startswith("Test accuracy:")).split()[-1])
    assert 0.8 < accuracy <= 1.0  # the seed model learned (0.909 with seed 0, README)
    assert "Traceback" not in proc.stderr
    assert "FutureWarning: predict_classes is Keras 2 API" in proc.stderr
    assert "FutureWarning: predict_proba is Keras 2 API" in proc.stderr
    assert "OfflineSampleWarning" in proc.stderr
    pngs = sorted(figures.glob("figure_*.png"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))
    # the notebook's eight figures: the digit, 10 random filters, the edge filter, a digit's
    # probabilities, a wrong digit's, the histogram, the learned filters, the activations
    assert [p.name for p in pngs] == [f"figure_{i}.png" for i in range(1, 9)]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
