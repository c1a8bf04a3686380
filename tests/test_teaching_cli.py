"""`minicnn gradcheck`, `minicnn explain` and `minicnn figures`, run in-process through the CLI.

The gradient check is shown able to fail: a deliberately broken backward makes it exit 1.
"""

import json
import re

import numpy as np
import pytest
from matplotlib.image import imread

import minicnn
from minicnn import gradcheck, viz
from minicnn.cli import main
from minicnn.commands import gradcheck as gradcheck_cmd
from minicnn.layers import Conv2D, MaxPooling2D

SEED_LAYERS = ["conv2d", "max_pooling2d", "dropout", "flatten", "dropout_1", "dense"]


@pytest.fixture
def numpy_backend():
    """The figures and explain commands run on the backend in force: pin it, then restore."""
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")
    yield
    minicnn.set_backend(old)


def _rows(out):
    """{(layer or '', gradient): (rel error, result)} from a gradcheck table."""
    found = re.findall(
        r"^\s+(\S*(?: \(\w+\))?)\s+(dL/d\w+)\s+\(.*?\)\s+\d+/\d+\s+(\S+)\s+(\w+)", out, flags=re.M
    )
    return [
        (layer, grad, float(err) if err != "-" else None, mark) for layer, grad, err, mark in found
    ]


@pytest.mark.parametrize("model,n_rows", [("seed", 15), ("deep", 25)])
def test_gradcheck_passes_on_both_models(model, n_rows, capsys):
    assert main(["gradcheck", "--model", model, "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == n_rows
    assert all(
        mark == "pass" and err < gradcheck_cmd.THRESHOLD["float64"] for _, _, err, mark in rows
    ), out
    assert "How it works" in out and f"All {n_rows} gradients pass" in out
    for name in SEED_LAYERS if model == "seed" else ["conv2d_1", "dense_1"]:
        assert f"{name} (" in out
    assert minicnn.floatx() == "float32", "the command must restore the float dtype"


def test_gradcheck_in_float32_uses_its_own_threshold(capsys):
    assert main(["gradcheck", "--dtype", "float32", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert f"pass if rel error < {gradcheck_cmd.THRESHOLD['float32']:g}" in out
    assert "float64 check is the real one" in out


def _scaled_pool_backward(original):
    return lambda self, dout: 1.5 * original(self, dout)


def _correlation_as_convolution(original):
    """The classic bug: the kernel gradient of a convolution, not a cross-correlation."""

    def backward_linear(self, dz):
        dx = original(self, dz)
        self.grads["kernel"] = self.grads["kernel"][::-1, ::-1].copy()
        return dx

    return backward_linear


@pytest.mark.parametrize(
    "cls,method,breaker,broken_rows",
    [
        (
            MaxPooling2D,
            "backward",
            _scaled_pool_backward,
            {("max_pooling2d (MaxPooling2D)", "dL/dx"), ("conv2d (Conv2D)", "dL/dkernel")},
        ),
        (
            Conv2D,
            "backward_linear",
            _correlation_as_convolution,
            {("conv2d (Conv2D)", "dL/dkernel")},
        ),
    ],
)
def test_a_broken_backward_fails_the_check(cls, method, breaker, broken_rows, monkeypatch, capsys):
    monkeypatch.setattr(cls, method, breaker(getattr(cls, method)))
    assert main(["gradcheck", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    failed = {(layer, grad) for layer, grad, _, mark in _rows(out) if mark == "FAIL"}
    assert failed, out
    # each broken gradient is caught (the table leaves the layer blank on its 2nd+ rows)
    assert {grad for _, grad in broken_rows} <= {grad for _, grad in failed}
    assert "FAILED:" in out
    worst = min(err for _, _, err, mark in _rows(out) if mark == "FAIL")
    assert worst > 1e-2, "a real bug is off by far more than rounding"


def test_kink_detection_sets_aside_a_nudge_across_relu_zero():
    """A ReLU input placed 1e-7 from 0 is crossed by an h = 1e-6 nudge of the bias: that probe
    is set aside, the others are compared."""
    minicnn.set_floatx("float64")
    try:
        layer = Conv2D(1, 1, activation="relu")
        layer.build_for((1, 2, 1))
    finally:
        minicnn.set_floatx("float32")
    layer.params["kernel"][...] = 1.0
    x = np.array([[[[-1e-7], [0.5]]]])  # (1, 1, 2, 1): z = -1e-7 and 0.5
    dout = np.array([[[[1.0], [1.0]]]])
    layer.forward(x)
    layer.backward(dout)

    def loss():
        return float(np.sum(layer.forward(x) * dout))

    def pattern():
        return gradcheck.kink_pattern([layer])

    rng = np.random.default_rng(0)
    grads = {k: layer.grads[k].copy() for k in ("kernel", "bias")}
    r = gradcheck.probe(grads["bias"], layer.params["bias"], loss, pattern, 1e-6, 10, rng)
    assert r["kinks"] == 1 and r["error"] is None  # the one bias entry sits on the kink
    r = gradcheck.probe(grads["kernel"], layer.params["kernel"], loss, pattern, 1e-6, 10, rng)
    assert r["kinks"] == 0 and r["error"] < 1e-9  # w nudges z = -1e-7 by 1e-13 only


def test_explain_prints_every_layer_both_ways(numpy_backend, capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    forward, backward = out.split("Backward:")
    for name in SEED_LAYERS:
        assert re.search(rf"^  {name}\s+\(4, [\d, ]+\)", forward, flags=re.M), name
        assert re.search(rf"^  {name}\s+dL/d", backward, flags=re.M), name
    assert (
        "conv 3x3, 32 filters: each output pixel = 9 weights . 9 pixels + bias, then relu"
        in forward
    )
    for shape in ["(4, 26, 26, 32)", "(4, 13, 13, 32)", "(4, 5408)", "(4, 10)"]:
        assert shape in forward
    for grad, shape in [
        ("dL/dW = x^T . dL/dz", "(5408, 10)"),
        ("dL/db[f]", "(32,)"),
        ("dL/dW[p,q,c,f]", "(3, 3, 1, 32)"),
    ]:
        assert re.search(rf"{re.escape(grad)}.*{re.escape(shape)}", backward), grad
    loss = float(re.search(r"-log p\[true class\] = ([\d.]+)", out).group(1))
    assert 1.5 < loss < 3.5  # near -log(1/10) = 2.30 for untrained weights
    assert float(re.search(r"rel error ([\d.e+-]+)", out).group(1)) < 1e-6
    assert minicnn.floatx() == "float32"


def test_figures_trains_then_writes_seven_pngs(numpy_backend, tmp_path, capsys):
    out_dir = tmp_path / "figs"
    assert (
        main(
            [
                "figures",
                "--out",
                str(out_dir),
                "--epochs",
                "1",
                "--train-samples",
                "300",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "training the seed model first (1 epoch" in out and "first 300 training" in out
    printed = re.findall(r"^  (\S+\.png)$", out, flags=re.M)
    assert [p.split("/")[-1] for p in printed] == list(viz.FILENAMES.values())
    for name, filename in viz.FILENAMES.items():
        assert imread(out_dir / filename).shape[:2] == viz.pixel_size(name)


def test_figures_from_a_saved_model_and_history(numpy_backend, tmp_path, capsys):
    minicnn.set_random_seed(2)
    model = minicnn.architectures.seed_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1)).astype("float32")
    model.fit(x, np.eye(10)[rng.integers(0, 10, 64)], epochs=2, verbose=0)
    model.save(tmp_path / "m.npz")
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"history": model.history.history}))

    assert main(["figures", "--model", str(tmp_path / "m.npz"), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "no training curves" in out and "training the seed model" not in out
    assert not (tmp_path / "a" / viz.FILENAMES["training_curves"]).exists()

    assert (
        main(
            [
                "figures",
                "--model",
                str(tmp_path / "m.npz"),
                "--history",
                str(run),
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "b").glob("*.png"))) == 7


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "/nonexistent.npz"], "no such file"),
        (["--history", "/nonexistent.json"], "Cannot read"),
    ],
)
def test_figures_bad_arguments_exit_2_before_any_work(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["figures", "--out", str(tmp_path / "x"), *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_explain_trace_shows_which_kernel_ran_for_each_unit(capsys):
    assert main(["explain", "--trace", "--backend", "numba"]) == 0
    out = capsys.readouterr().out
    fused = [line for line in out.splitlines() if "(fused: ConvReluPoolDense)" in line]
    assert len(fused) == 2  # forward and backward of conv2d -> ... -> dense: the whole network
    assert "numba_ops.conv_pool_dense_forward" in fused[0] and "forward" in fused[0]
    assert "numba_ops.conv_pool_dense_backward" in fused[1] and "backward" in fused[1]
    assert re.search(r"optimizer \(Adam\)\s+step\s+numba_optimizers.adam_update_is_finite, "
                     r"numba_optimizers.adam_update", out)
    assert "do not run their own forward or backward" in out
    assert main(["explain", "--trace", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "ConvReluPool" not in out
    assert re.search(r"conv2d \(Conv2D\)\s+forward\s+numpy_ops.conv2d_forward", out)
    assert re.search(r"conv2d \(Conv2D\)\s+backward\s+numpy_ops.conv2d_backward_weights$", out,
                     re.M)  # the first layer: no input gradient
    assert re.search(r"dropout \(Dropout\)\s+forward\s+NumPy in the layer", out)
    assert "naive.adam_step" in out
