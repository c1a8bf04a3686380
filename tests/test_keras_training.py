"""Optimizers, losses and metrics spelled and computed as Keras's (issue 13): apply /
apply_gradients / variables, learning_rate set after compile, configs; the functional and class
forms of the crossentropies with every reduction, sample weights, logits and label smoothing;
the accuracy functions and classes. The oracle is Keras 3 on TensorFlow (`keras` marker).
"""

from __future__ import annotations

import numpy as np
import pytest

import minicnn
from minicnn import architectures, losses, metrics, optimizers
from minicnn.layers import Dense
from minicnn.models import Sequential
from reference.tolerances import FORWARD, OPTIMIZER
from tests.helpers import assert_close, assert_state_unchanged, model_state

RNG = np.random.default_rng(8)


def keras_module():
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    return keras


def small_model(seed=0, activation="softmax"):
    minicnn.set_random_seed(seed)
    return Sequential([Dense(6, activation="relu", input_shape=(5,)),
                       Dense(4, activation=activation)])


# --- optimizers ------------------------------------------------------------------------------
@pytest.mark.keras
@pytest.mark.parametrize("make", [
    lambda m: m.optimizers.Adam(learning_rate=0.01),
    lambda m: m.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    lambda m: m.optimizers.SGD(learning_rate=0.1),
], ids=["adam", "sgd-nesterov", "sgd"])
def test_apply_gradients_steps_as_keras_on_the_same_gradients(make):
    keras = keras_module()
    model = small_model()
    theirs = [keras.Variable(w) for w in model.get_weights()]
    ours_opt, their_opt = make(minicnn), make(keras)
    worst = 0.0
    for step in range(5):
        grads = [RNG.standard_normal(v.shape).astype(np.float32) for v in theirs]
        if step == 3:  # a subset, in another order, as Keras allows
            ours_opt.apply([grads[2], grads[0]], [model.trainable_variables[i] for i in (2, 0)])
            their_opt.apply([grads[2], grads[0]], [theirs[2], theirs[0]])
            continue
        ours_opt.apply_gradients(zip(grads, model.trainable_variables))
        their_opt.apply_gradients(zip(grads, theirs))
        for v, t in zip(model.trainable_variables, theirs):
            scale = np.abs(t.numpy()).max()
            worst = max(worst, np.abs(v.numpy() - t.numpy()).max() / scale)
            assert_close(f"step {step} {v.path}", v.numpy(), t.numpy(), OPTIMIZER)
    assert ours_opt.iterations == int(their_opt.iterations.numpy()) == 5
    # names: Keras's are '<variable name>_momentum'; these Keras variables are 'variable_<i>'
    assert [(v.name.split("_")[-1], v.shape) for v in ours_opt.variables] == \
        [(v.name.split("_")[-1], tuple(v.shape)) for v in their_opt.variables]
    for v, t in zip(ours_opt.variables, their_opt.variables):
        assert_close(f"optimizer variable {v.name}", v.numpy(), t.numpy(), OPTIMIZER)
    assert worst <= OPTIMIZER


def test_optimizer_variables_name_the_model_variables_and_are_live():
    model = small_model()
    opt = optimizers.Adam()
    grads = [np.ones(v.shape, np.float32) for v in model.trainable_variables]
    assert opt.apply_gradients(zip(grads, model.trainable_variables)) == 1
    names = [v.name for v in opt.variables]
    assert names[:2] == ["iteration", "learning_rate"] and names[2:4] == ["kernel_momentum",
                                                                         "kernel_velocity"]
    assert int(opt.variables[0]) == 1
    opt.variables[1].assign(0.5)
    assert opt.learning_rate == 0.5
    with pytest.raises(ValueError, match="learning_rate"):
        opt.variables[1].assign(-1.0)
    with pytest.raises(TypeError, match=r"optimizer.update\(params, grads\)"):
        opt.apply(grads, model.get_weights())  # raw arrays are not variables
    opt.apply(grads)  # None: the variables it was built with
    assert opt.iterations == 2


@pytest.mark.keras
def test_learning_rate_set_after_compile_is_the_next_steps_as_in_keras():
    keras = keras_module()
    x = RNG.standard_normal((8, 5)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 8)]
    ours = small_model(2)
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="relu"),
                               keras.layers.Dense(4, activation="softmax")])
    theirs.set_weights(ours.get_weights())
    for m in (ours, theirs):
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.train_on_batch(x, y)
        m.optimizer.learning_rate = 0.5
        m.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        assert_close("weights after lr=0.5", a, b, 1e-5)
    assert ours.optimizer.learning_rate == pytest.approx(float(theirs.optimizer.learning_rate))


@pytest.mark.keras
def test_optimizer_configs_cross_between_minicnn_and_keras():
    keras = keras_module()
    for ours, theirs in ((optimizers.Adam(0.003, beta_1=0.8, epsilon=1e-6),
                          keras.optimizers.Adam(0.003, beta_1=0.8, epsilon=1e-6)),
                         (optimizers.SGD(0.2, momentum=0.5, nesterov=True),
                          keras.optimizers.SGD(0.2, momentum=0.5, nesterov=True))):
        assert set(ours.get_config()) == set(theirs.get_config())
        mine = type(ours).from_config(theirs.get_config())
        # Keras names instances adam, adam_1, ... and keeps learning_rate as a float32
        assert mine.get_config() == {**theirs.get_config(),
                                     "learning_rate": mine.learning_rate}
        assert mine.name == theirs.name
        assert mine.learning_rate == pytest.approx(ours.learning_rate)
        back = type(theirs).from_config(ours.get_config())
        assert back.get_config() == {**theirs.get_config(), "name": ours.name}
        assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()


def test_keras_optimizer_features_minicnn_leaves_out_are_refused_by_name():
    for kwargs, word in (({"clipnorm": 1.0}, "clipnorm"), ({"weight_decay": 0.01},
                                                         "weight_decay"),
                         ({"use_ema": True}, "use_ema"), ({"amsgrad": True}, "amsgrad")):
        with pytest.raises(ValueError, match=word):
            optimizers.Adam(**kwargs)
    opt = optimizers.Adam(clipnorm=None, use_ema=False, name="my_adam")
    assert opt.name == "my_adam" and opt.get_config()["name"] == "my_adam"


def test_a_refused_apply_changes_nothing():
    model = small_model()
    model.compile(optimizer=optimizers.Adam())
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    model.train_on_batch(x, np.eye(4, dtype=np.float32))
    grads = [np.ones(v.shape, np.float32) for v in model.trainable_variables]
    bad = [g.copy() for g in grads]
    bad[-1][0] = np.nan
    before = model_state(model)
    for call, error in ((lambda: model.optimizer.apply(bad, model.trainable_variables),
                         FloatingPointError),
                        (lambda: model.optimizer.apply(grads[:1], model.trainable_variables),
                         ValueError),
                        (lambda: model.optimizer.apply([g.T for g in grads],
                                                       model.trainable_variables), ValueError),
                        (lambda: model.optimizer.apply_gradients([1, 2]), TypeError)):
        with pytest.raises(error):
            call()
        assert_state_unchanged(before, model, "a refused optimizer.apply")


# --- losses ----------------------------------------------------------------------------------
def _data(n=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)).astype(np.float32) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = rng.integers(0, k, n)
    y = np.eye(k, dtype=np.float32)[labels]
    w = rng.random(n).astype(np.float32)
    return z, p, labels, y, w


@pytest.mark.keras
@pytest.mark.parametrize("kwargs", [{}, {"from_logits": True}, {"label_smoothing": 0.2},
                                    {"from_logits": True, "label_smoothing": 0.1}])
def test_functional_crossentropy_is_per_sample_as_keras(kwargs):
    keras = keras_module()
    z, p, labels, y, _ = _data()
    pred = z if kwargs.get("from_logits") else p
    ours = losses.categorical_crossentropy(y, pred, **kwargs)
    theirs = keras.losses.categorical_crossentropy(y, pred, **kwargs).numpy()
    assert ours.shape == theirs.shape == (6,)
    assert_close("categorical_crossentropy", ours, theirs, FORWARD)
    sparse_kwargs = {k: v for k, v in kwargs.items() if k != "label_smoothing"}
    for target in (labels, labels[:, None]):
        assert_close("sparse_categorical_crossentropy",
                     losses.sparse_categorical_crossentropy(target, pred, **sparse_kwargs),
                     keras.losses.sparse_categorical_crossentropy(target, pred,
                                                                  **sparse_kwargs).numpy(),
                     FORWARD)


@pytest.mark.keras
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean",
                                       "mean_with_sample_weight", "none", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_classes_reduce_and_weight_as_keras(reduction, weighted):
    keras = keras_module()
    z, p, labels, y, w = _data(seed=3)
    sw = w if weighted else None
    for cls, target in (("CategoricalCrossentropy", y), ("SparseCategoricalCrossentropy",
                                                         labels)):
        for from_logits, pred in ((False, p), (True, z)):
            ours = getattr(losses, cls)(from_logits=from_logits, reduction=reduction)
            theirs = getattr(keras.losses, cls)(from_logits=from_logits, reduction=reduction)
            assert ours.get_config() == theirs.get_config()
            assert_close(f"{cls} {reduction}", ours(target, pred, sample_weight=sw),
                         np.asarray(theirs(target, pred, sample_weight=sw)), FORWARD)


@pytest.mark.keras
@pytest.mark.parametrize("loss", ["logits", "label_smoothing"])
def test_training_with_keras_loss_options_steps_as_keras(loss):
    keras = keras_module()
    x = RNG.standard_normal((8, 5)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 8)]
    activation = None if loss == "logits" else "softmax"
    kwargs = {"from_logits": True} if loss == "logits" else {"label_smoothing": 0.3}
    ours = small_model(4, activation=activation)
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="relu"),
                               keras.layers.Dense(4, activation=activation)])
    theirs.set_weights(ours.get_weights())
    ours.compile(optimizer=optimizers.SGD(0.5), loss=losses.CategoricalCrossentropy(**kwargs))
    theirs.compile(optimizer=keras.optimizers.SGD(0.5),
                   loss=keras.losses.CategoricalCrossentropy(**kwargs))
    for _ in range(3):
        a = ours.train_on_batch(x, y)
        b = theirs.train_on_batch(x, y)
        assert a == pytest.approx(float(b), rel=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        assert_close(f"weights ({loss})", a, b, 1e-5)


def test_compile_takes_keras_loss_spellings_and_refuses_other_reductions():
    model = small_model()
    for loss in ("categorical_crossentropy", "CategoricalCrossentropy",
                 losses.categorical_crossentropy, losses.CategoricalCrossentropy,
                 losses.CategoricalCrossentropy(), {"class_name": "CategoricalCrossentropy",
                                                    "config": {}}):
        model.compile(loss=loss)
        assert isinstance(model.loss, losses.CategoricalCrossentropy)
    before = model_state(model)
    with pytest.raises(ValueError, match="reduction"):
        model.compile(loss=losses.CategoricalCrossentropy(reduction="sum"))
    assert_state_unchanged(before, model, "compile with reduction='sum'")


def test_a_model_with_a_non_default_loss_saves_and_loads_it(tmp_path):
    model = small_model(activation=None)
    model.compile(loss=losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    model.save(tmp_path / "m.npz")
    loaded = minicnn.load_model(tmp_path / "m.npz")
    assert loaded.loss.get_config() == model.loss.get_config()


# --- metrics ---------------------------------------------------------------------------------
@pytest.mark.keras
def test_accuracy_functions_and_classes_compute_what_keras_computes():
    keras = keras_module()
    _, p, labels, y, w = _data(n=9, seed=5)
    p[0] = [0.25, 0.25, 0.25, 0.25]  # a tie: both take the first maximum
    assert_close("categorical_accuracy", metrics.categorical_accuracy(y, p),
                 keras.metrics.categorical_accuracy(y, p).numpy(), 0)
    assert_close("sparse_categorical_accuracy", metrics.sparse_categorical_accuracy(labels, p),
                 keras.metrics.sparse_categorical_accuracy(labels, p).numpy(), 0)
    for name, target in (("CategoricalAccuracy", y), ("SparseCategoricalAccuracy", labels),
                         ("Accuracy", labels)):
        pred = p.argmax(-1) if name == "Accuracy" else p
        ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
        for sw in (None, w):
            ours.update_state(target, pred, sample_weight=sw)
            theirs.update_state(target, pred, sample_weight=sw)
        assert ours.name == theirs.name
        assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-6)


def test_fit_accuracy_is_the_categorical_accuracy_metric():
    model = architectures.seed_model(input_shape=(12, 12, 1))
    model.compile(metrics=["accuracy"])
    x = RNG.random((10, 12, 12, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(10)]
    _, acc = model.evaluate(x, y, verbose=0)
    assert acc == pytest.approx(float(metrics.CategoricalAccuracy()(y, model.predict(x))))


# --- regularizers ----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda m: m.regularizers.L1(0.3), lambda m: m.regularizers.L2(),
                                  lambda m: m.regularizers.L1L2(0.1, 0.2),
                                  lambda m: m.regularizers.l1_l2(l2=0.5)],
                         ids=["L1", "L2", "L1L2", "l1_l2"])
def test_regularizer_configs_round_trip(make):
    reg = make(minicnn)
    again = type(reg).from_config(reg.get_config())  # L1L2.from_config was missing
    assert again == reg
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    assert again(w) == reg(w)


@pytest.mark.keras
def test_regularizer_configs_and_penalties_are_keras_own():
    keras = keras_module()
    w = RNG.standard_normal((5, 3)).astype(np.float32)
    for name, args in (("L1", (0.3,)), ("L2", ()), ("L1L2", (0.1, 0.2))):
        ours = getattr(minicnn.regularizers, name)(*args)
        theirs = getattr(keras.regularizers, name)(*args)
        # Keras's L1 keeps its factor as a float32 tensor (0.3 -> 0.30000001192...)
        assert ours.get_config() == pytest.approx(theirs.get_config(), rel=1e-7)
        mine, keras_dict = (minicnn.regularizers.serialize(ours),
                            keras.regularizers.serialize(theirs))
        assert {**mine, "config": None} == {**keras_dict, "config": None}
        assert ours(w) == pytest.approx(float(theirs(w)), rel=1e-6)
