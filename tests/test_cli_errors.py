"""The CLI off the happy path: every failure is one line on stderr and a non-zero exit status,
no traceback; output paths are checked before any training starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import minicnn
from minicnn import architectures, cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    """cli.main in this process: (exit status, stdout, stderr), SystemExit turned into its code."""
    t0 = time.perf_counter()
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err, time.perf_counter() - t0


def assert_one_line(err, *words):
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert "Traceback" not in err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"


@pytest.mark.parametrize("argv, words", [
    (["train", "--save", "/proc/minicnn-test.npz"], ["argument --save:", "cannot write"]),
    (["train", "--json", "/proc/minicnn-test.json"], ["argument --json:", "cannot write"]),
    (["train", "--save", "/no/such/dir/m.npz"], ["folder /no/such/dir does not exist"]),
    (["figures", "--out", "/proc/minicnn-figs"], ["argument --out:", "cannot write"]),
    (["figures", "--out", __file__ + "/sub"], ["argument --out:", "is not a folder"]),
    (["train", "--epochs", "x"], ["argument --epochs"]),
    (["explain", "--batch", "0"], ["argument --batch"]),
])
def test_unwritable_outputs_and_bad_options_fail_before_any_work(capsys, argv, words):
    rc, out, err, seconds = run(capsys, *argv)
    assert rc == 2
    assert_one_line(err, f"minicnn {argv[0]}: error:", *words)
    assert "Epoch" not in out and seconds < 5  # no training happened


def test_a_missing_corrupt_or_mismatched_model_file_is_one_line(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really")
    other = tmp_path / "other.npz"
    minicnn.set_random_seed(0)
    architectures.seed_model(input_shape=(10, 10, 1)).save(other)
    for argv, words in [
        (["explain", "--model", str(tmp_path / "missing.npz")], ["missing.npz", "no such file"]),
        (["explain", "--model", str(corrupt)], ["corrupt.npz", "not a minicnn save file"]),
        (["explain", "--model", str(other)], ["other.npz", "28x28x1"]),
        (["figures", "--model", str(corrupt), "--out", str(tmp_path / "f")], ["corrupt.npz"]),
    ]:
        rc, out, err, _ = run(capsys, *argv)
        assert rc in (1, 2), (argv, rc)
        assert_one_line(err, *words)


def test_a_fifo_as_data_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "mnist.npz"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "minicnn", "train", "--data", str(fifo)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert_one_line(result.stderr, "named pipe")


def test_training_that_diverges_is_one_line(capsys, monkeypatch):
    def diverge(self, x, y, sample_weight, before_backward=None):
        raise FloatingPointError("the loss is nan")

    monkeypatch.setattr(minicnn.Sequential, "_checked_step", diverge)
    rc, out, err, _ = run(capsys, "train", "--epochs", "1", "--train-samples", "256",
                          "--verbose", "0")
    assert rc == 1
    assert_one_line(err.splitlines()[-1] + "\n", "minicnn train: error: Epoch 1, step 1/",
                    "the loss is nan", "not applied")


def test_a_bug_is_called_one_and_the_traceback_is_one_variable_away(capsys, monkeypatch):
    from minicnn.commands import gradcheck

    def boom(args):
        raise RuntimeError("something impossible")

    monkeypatch.setattr(gradcheck, "run", boom)
    rc, _, err, _ = run(capsys, "gradcheck")
    assert rc == 1
    assert_one_line(err, "minicnn gradcheck: internal error: RuntimeError: something "
                    "impossible", "MINICNN_TRACEBACK=1")
    monkeypatch.setenv("MINICNN_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="something impossible"):
        cli.main(["gradcheck"])


def test_ctrl_c_is_exit_130_without_traceback(capsys, monkeypatch):
    from minicnn.commands import gradcheck

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradcheck, "run", interrupted)
    rc, _, err, _ = run(capsys, "gradcheck")
    assert rc == 130
    assert_one_line(err, "interrupted")


def test_success_still_exits_zero(capsys):
    rc, out, err, _ = run(capsys, "explain", "--batch", "2")
    assert rc == 0 and "Traceback" not in err and "error:" not in err
    assert "rel error" in out
