"""The Keras reference suite: minicnn against Keras 3, and the suite's own ability to fail
against deliberately broken twins.

The oracle here is Keras itself, on the backend KERAS_BACKEND names (default TensorFlow);
tests/test_parity_backends.py runs the broken-twin tests below again under JAX and PyTorch, each
in a fresh process. Tolerances are reference/tolerances.py's named constants.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.keras

pytest.importorskip(os.environ.get("KERAS_BACKEND", "tensorflow"))

from minicnn import architectures, models  # noqa: E402
from minicnn import optimizers as mopt  # noqa: E402
from minicnn.cli import main as cli_main  # noqa: E402
from reference import mutants, suite, tolerances  # noqa: E402
from reference._keras import BACKEND, keras, ops, to_numpy  # noqa: E402
from reference.case import randomize_biases  # noqa: E402
from reference.data import best_dataset, image_batch, random_batch  # noqa: E402
from reference.report import compare  # noqa: E402
from reference.sections.optimizer import default_cases, optimizer_rows  # noqa: E402
from reference.sections.statistics import statistics_rows, welch  # noqa: E402
from reference.sections.structure import (  # noqa: E402
    keras_summary_lines,
    summary_row,
    trained_summary_row,
)
from reference.sections.trajectory import nudge_one_ulp, trajectory  # noqa: E402
from reference.twin import MaskedDropout, from_keras, run_layers, to_keras  # noqa: E402
from reference.zoo import ZOO  # noqa: E402


def _failures(rows) -> str:
    return "\n".join(
        f"{r.section} | {r.tensor} {r.shape}: max abs {r.max_abs:.3e}, max rel "
        f"{r.max_rel:.3e} > tol {r.tol:.1e} {r.note}"
        for r in rows
        if not r.ok
    )


def _backends():
    # the default backend, plus NumPy when the default is something else
    return suite.resolve_backends(["auto", "numpy"])


@pytest.fixture(scope="module")
def dataset():
    return best_dataset()


@pytest.fixture(scope="module")
def seed_batch():
    return random_batch((28, 28, 1), 10, suite.BATCH)


def _seed_model(name="seed", seed=1):
    model = architectures.build(name)
    model.compile()
    randomize_biases(model, np.random.default_rng(seed))
    return model


# --- the whole quick run ----------------------------------------------------------------------
def test_cli_quick_parity_seed_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "parity.json"
    status = cli_main(["parity", "--quick", "--json", str(path), "--keras-backend", BACKEND])
    out = capsys.readouterr().out
    assert status == 0, out
    doc = json.loads(path.read_text())
    assert doc["ok"] is True
    assert all(r["ok"] for r in doc["rows"])
    assert {r["keras_backend"] for r in doc["rows"]} == {BACKEND}
    sections = {r["section"].split(" [")[0] for r in doc["rows"]}
    assert {
        "structure",
        "forward",
        "gradients, dropout off",
        "gradients, shared masks",
        "layers",
        "optimizer",
        "trajectory",
    } <= sections
    env = doc["environment"]
    assert env["keras_backend"] == BACKEND
    for key in ("numpy", "numba", "tensorflow", "jax", "torch", "keras", "minicnn_backend"):
        assert key in env
    assert env[BACKEND] is not None and env["cpu_count"]
    if BACKEND == "tensorflow":
        assert "tf_intra_op_threads" in env
    assert "all ok" in out and "max rel" in out
    assert f"What Keras computes on {BACKEND}" in out
    assert set(doc["extras"]["backend_facts"]) >= {"Adam", "max-pool ties, gradient to"}


def test_quick_parity_deep_model():
    x, y = random_batch((28, 28, 1), 10, suite.BATCH)
    model = _seed_model("deep")
    rows = suite.model_rows(model, x, y, suite.resolve_backends(["auto"]))
    rows += optimizer_rows(model.get_weights(), default_cases()[:2])
    assert len(rows) > 30
    assert all(r.ok for r in rows), _failures(rows)


@pytest.mark.parametrize("backend", _backends())
def test_seed_model_forward_and_gradients(seed_batch, backend):
    x, y = seed_batch
    rows = suite.model_rows(_seed_model(), x, y, [backend])
    # every layer's output, 4 parameter gradients and 6 input gradients in two modes, + losses
    assert len(rows) == 7 + 2 * (1 + 4 + 6)
    assert all(r.ok for r in rows), _failures(rows)


@pytest.mark.parametrize("name", list(ZOO))
def test_layer_zoo(name):
    model = suite.zoo_model(name)
    x, y = suite.zoo_batch(name, model)
    rows = suite.model_rows(model, x, y, _backends())
    assert rows and all(r.ok for r in rows), _failures(rows)


def test_naive_backend_on_the_zoo():
    # the readable loops are slow: two small entries are enough to prove they agree with Keras
    for name in ("conv 3x3 s2 same", "maxpool 3x3 s2 same"):
        model = suite.zoo_model(name)
        x, y = suite.zoo_batch(name, model, n=4)
        rows = suite.model_rows(model, x, y, ["naive"])
        assert all(r.ok for r in rows), _failures(rows)


def test_short_trajectory_tracks_keras(dataset):
    x, y = image_batch(dataset, 512)
    model = architectures.build("seed")
    w0 = model.get_weights()
    rows, extras = trajectory(model, x, y, steps=12, batch_size=32, checkpoints=(1, 12))
    assert all(r.ok for r in rows), _failures(rows)
    assert len(extras["losses_minicnn"]) == 12
    # far inside the tolerance over a few steps: the first loss is bit-identical
    assert extras["losses_minicnn"][0] == pytest.approx(extras["losses_keras"][0], rel=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), w0))  # restored


# --- the suite can fail -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["transposed-kernel", "flipped-kernel", "unscaled-dropout"])
def test_mutant_twin_of_the_seed_model_is_caught(seed_batch, name):
    x, y = seed_batch
    mutant = mutants.get(name)
    rows = suite.model_rows(_seed_model(), x, y, ["numpy"], mutant=mutant)
    bad = [r for r in rows if not r.ok]
    assert bad, f"mutant {name} went unnoticed"
    caught = [r for r in bad if r.section.startswith(mutant.caught_by)]
    assert caught, f"mutant {name} not flagged by the {mutant.caught_by} section"
    assert max(r.max_rel for r in caught) > 1000 * tolerances.GRADIENT  # caught by a mile
    if name == "unscaled-dropout":
        # the bug lives in training-mode dropout only: inference and dropout-off rows pass
        assert all(r.ok for r in rows if "shared masks" not in r.section)


@pytest.mark.parametrize(
    "zoo_name", ["conv 3x3 s2 same", "conv 4x4 s3 same sigmoid", "maxpool 3x3 s2 same"]
)
def test_same_padding_on_the_wrong_side_is_caught(zoo_name):
    model = suite.zoo_model(zoo_name)
    x, y = suite.zoo_batch(zoo_name, model)
    rows = suite.model_rows(model, x, y, ["numpy"], mutant=mutants.get("same-pad-top-left"))
    forward = [r for r in rows if r.section.startswith("forward")]
    assert not all(r.ok for r in forward), "top/left 'same' padding went unnoticed"


def test_textbook_adam_is_caught():
    weights = _seed_model().get_weights()
    rows = optimizer_rows(weights, default_cases(keras_adam=mutants.TextbookAdam))
    failed = {r.tensor for r in rows if not r.ok}
    assert "Adam x2, g~1e-9: weights" in failed
    assert not any(t.startswith("SGD") for t in failed)  # only Adam was broken


def test_cli_exits_nonzero_against_a_broken_twin(capsys):
    status = cli_main(
        [
            "parity",
            "--quick",
            "--steps",
            "2",
            "--backend",
            "numpy",
            "--mutant",
            "textbook-adam",
            "--keras-backend",
            BACKEND,
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL" in out and "BROKEN twin 'textbook-adam'" in out


def test_wrong_tie_rule_is_caught(monkeypatch):
    # minicnn sending a tied window's gradient to the *last* maximum must fail the exact-ties
    # entry; TensorFlow (and minicnn) send it to the first in row-major order
    from minicnn.kernels import numpy_ops

    original = numpy_ops.maxpool2d_forward

    def last_max(x, pool_size, strides, pads):
        out, argmax = original(x, pool_size, strides, pads)
        PH, PW = pool_size
        win = np.lib.stride_tricks.sliding_window_view(x, pool_size, axis=(1, 2))
        win = win[:, :: strides[0], :: strides[1]][:, : out.shape[1], : out.shape[2]]
        flat = win.reshape(*win.shape[:4], PH * PW)[..., ::-1]
        return out, (PH * PW - 1 - flat.argmax(axis=-1)).astype(np.int32)

    from minicnn.kernels import dispatch

    planted = dataclasses.replace(dispatch.table("numpy"), maxpool2d_forward=last_max)
    real_table = dispatch.table
    monkeypatch.setattr(dispatch, "table", lambda b: planted if b == "numpy" else real_table(b))
    name = "maxpool 2x2 exact ties"
    model = suite.zoo_model(name)
    x, y = suite.zoo_batch(name, model)
    rows = suite.model_rows(model, x, y, ["numpy"])
    assert all(r.ok for r in rows if r.section.startswith("forward"))  # values are the same
    assert not all(r.ok for r in rows), "the last-maximum tie rule went unnoticed"


# --- single facts -----------------------------------------------------------------------------
def test_adam_hand_check_epsilon_hat():
    """KERAS_FACTS: two tiny steps from 3.0 give 2.9999990 in Keras, 2.9999751 textbook.
    g = 1.25e-9 reproduces both (sqrt(v) ~ 4e-11 << epsilon = 1e-7)."""
    g = np.float32(1.25e-9)
    w_keras = keras.Variable(np.float32(3.0))
    opt = keras.optimizers.Adam()
    w_text = keras.Variable(np.float32(3.0))
    text = mutants.TextbookAdam()
    w_ours = np.array(3.0, dtype=np.float32)
    ours = mopt.Adam()
    for _ in range(2):
        opt.apply_gradients([(ops.convert_to_tensor(g), w_keras)])
        text.apply_gradients([(ops.convert_to_tensor(g), w_text)])
        ours.update([w_ours], [np.array(g)])
    ulp = np.spacing(np.float32(3.0))
    assert f"{float(to_numpy(w_keras)):.7f}" == "2.9999990"
    assert abs(float(to_numpy(w_text)) - 2.9999751) <= ulp
    assert w_ours == to_numpy(w_keras)  # bit for bit
    assert abs(float(to_numpy(w_text)) - float(w_ours)) > 80 * ulp


@pytest.mark.parametrize("name", ["seed", "deep"])
def test_summary_matches_keras(name):
    model = architectures.build(name)
    row, diffs = summary_row(model)
    assert row.ok, "\n".join(diffs)
    row, diffs = trained_summary_row(model)  # adds "Optimizer params" on both sides
    assert row.ok, "\n".join(diffs)
    lines = keras_summary_lines(to_keras(model, dropout="keras"))
    total = {"seed": "54,410 (212.54 KB)", "deep": "1,199,882 (4.58 MB)"}[name]
    assert f" Total params: {total}" in lines


@pytest.mark.parametrize("names", [
    # a name and its type too wide for the column: rich wraps "(Type)" onto a second line
    {1: "max_pooling2d_400", 4: "dropout_800"},
    # exactly the column's 31 characters with its type, then one more
    {0: "c" * 22, 5: "d" * 24},
    # one word wider than the column: cut to it with an ellipsis
    {3: "f" * 40, 5: "dense_layer_with_a_rather_long_descriptive_name"},
    # many short words, and the blanks between them kept
    {0: "a b c " * 8},
])
def test_summary_wraps_long_layer_names_as_keras(names):
    from minicnn.summary import summary_lines

    model = architectures.build("seed")  # conv, pool, dropout, flatten, dropout, dense
    for i, name in names.items():
        model.layers[i].name = name
    ours = summary_lines(model)
    theirs = keras_summary_lines(to_keras(model, dropout="keras"))
    assert len(ours) > 19  # some row did wrap (the seed's table has 19 lines unwrapped)
    assert [line.rstrip() for line in ours if line.strip()] == theirs


def test_from_keras_takes_keras_initialisation():
    spec = architectures.build("deep")
    kmodel = to_keras(spec, dropout="keras", copy_weights=False)  # Keras's own Glorot weights
    model = from_keras(kmodel)
    for a, b in zip(model.get_weights(), kmodel.get_weights()):
        assert np.array_equal(a, np.asarray(b))
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    row = compare(
        "t", "predict", model.predict(x), to_numpy(run_layers(kmodel, x)[-1]), tolerances.FORWARD
    )
    assert row.ok, row


def test_twin_rejects_bad_input():
    from minicnn.layers import Dense

    unbuilt = models.Sequential([Dense(3)])
    with pytest.raises(ValueError, match="built model"):
        to_keras(unbuilt)
    with pytest.raises(ValueError, match="dropout"):
        to_keras(architectures.build("seed"), dropout="random")
    inputs = keras.Input((3,))
    functional = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(TypeError, match="keras.Sequential"):
        from_keras(functional)
    with pytest.raises(TypeError, match="minicnn has no layer"):
        from_keras(keras.Sequential([keras.Input((4, 4, 1)), keras.layers.AveragePooling2D(2)]))


def test_nudge_is_one_ulp_and_leaves_zeros():
    w = [np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32), np.zeros(5, "f4")]
    v, z = nudge_one_ulp(w, np.random.default_rng(1))
    up = np.nextafter(w[0], np.float32(np.inf))
    down = np.nextafter(w[0], np.float32(-np.inf))
    assert v.dtype == np.float32
    assert np.all((v == up) | (v == down))
    assert 0 < np.mean(v == up) < 1
    assert np.array_equal(z, w[1])  # no subnormal biases (PyTorch would keep them)


def test_welch_matches_scipy_and_its_critical_difference():
    from scipy import stats

    a, b = [0.91, 0.92, 0.915], [0.905, 0.918, 0.911]
    w = welch(a, b, 0.01)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert w["p"] == pytest.approx(ref.pvalue) and w["t"] == pytest.approx(ref.statistic)
    # a shift of exactly the critical difference sits on the edge: p == alpha
    shifted = np.array(b) + (np.mean(a) - np.mean(b)) + w["critical_diff"]
    assert stats.ttest_ind(a, shifted, equal_var=False).pvalue == pytest.approx(0.01, rel=1e-6)


def test_statistics_section_runs_end_to_end(dataset):
    # the plumbing only (1 epoch on 256 images); the real protocol is `minicnn parity`
    rows, extras = statistics_rows(
        "seed", dataset, seeds=[0, 1], epochs=1, n_train=256, log=lambda *_: None
    )
    assert len(rows) == 3 and all(np.isfinite(r.max_abs) for r in rows)
    assert len(extras["runs"]["minicnn"]) == len(extras["runs"]["keras"]) == 2
    assert extras["dataset"] == dataset.describe()


def test_masked_dropout_is_the_backends_dropout():
    # the twin's dropout, given the mask the stock layer drew, must give its output bit for bit
    x = np.random.default_rng(0).random((64, 50), dtype=np.float32) + np.float32(0.5)
    stock = to_numpy(keras.layers.Dropout(0.25)(ops.convert_to_tensor(x), training=True))
    keep = stock != 0
    assert 0.6 < keep.mean() < 0.9
    twin = to_numpy(MaskedDropout(0.25)(ops.convert_to_tensor(x), training=True, keep=keep))
    assert np.array_equal(twin, stock)
    unscaled = mutants.UnscaledMaskedDropout(0.25)(x, training=True, keep=keep)
    assert not np.allclose(to_numpy(unscaled), stock)  # the broken one is not


def test_cli_lists_every_mutant():
    from reference import cli

    assert set(cli.MUTANT_NAMES) == set(mutants.MUTANTS)


def test_trajectory_flags_a_broken_twin_at_once(dataset):
    # the floor is built like the twin (broken too), so it cannot hide the bug
    x, y = image_batch(dataset, 256)
    mutant = mutants.get("unscaled-dropout")
    rows, _ = trajectory(
        architectures.build("seed"),
        x,
        y,
        steps=3,
        batch_size=32,
        checkpoints=(1,),
        make_twin=lambda m: suite._twin(m, mutant),
    )
    assert not any(r.ok for r in rows if r.tensor.startswith("weights after step 1"))
