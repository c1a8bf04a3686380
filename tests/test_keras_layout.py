"""Keras's module layout: replacing the word `keras` by `minicnn` in the import lines of a Keras
program is all it needs, for what minicnn implements (issue 13).

The import lines below are Keras 3's (and the seed tutorial's Keras 2 ones); the `keras`-marked
test runs them against Keras itself, so the list cannot drift from what Keras spells.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import minicnn

# One program's worth of Keras 3 imports, covering every name minicnn implements.
KERAS3_IMPORTS = """\
import keras
from keras import activations, backend, callbacks, datasets, initializers, layers, losses
from keras import metrics, models, optimizers, regularizers, utils
from keras.models import Sequential, clone_model, load_model, model_from_json, save_model
from keras.layers import Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten
from keras.layers import Input, InputLayer, MaxPooling2D, MaxPool2D, Convolution2D, Layer
from keras.datasets import fashion_mnist, mnist
from keras.utils import normalize, set_random_seed, to_categorical
from keras.optimizers import SGD, Adam, Optimizer
from keras.losses import CategoricalCrossentropy, SparseCategoricalCrossentropy, Loss
from keras.losses import categorical_crossentropy, sparse_categorical_crossentropy
from keras.metrics import Accuracy, CategoricalAccuracy, SparseCategoricalAccuracy
from keras.metrics import categorical_accuracy, sparse_categorical_accuracy
from keras.callbacks import Callback, CSVLogger, EarlyStopping, History, ModelCheckpoint
from keras.callbacks import LambdaCallback
from keras.initializers import Constant, GlorotNormal, GlorotUniform, HeNormal, HeUniform
from keras.initializers import Identity, LecunNormal, LecunUniform, Ones, Orthogonal
from keras.initializers import RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling
from keras.initializers import Zeros, Initializer, constant, glorot_normal, glorot_uniform
from keras.initializers import he_normal, he_uniform, identity, lecun_normal, lecun_uniform
from keras.initializers import ones, orthogonal, random_normal, random_uniform, zeros
from keras.initializers import truncated_normal, variance_scaling
from keras.regularizers import L1, L1L2, L2, Regularizer, l1, l1_l2, l2
from keras.activations import linear, relu, sigmoid, softmax, tanh
from keras.backend import clear_session, epsilon, floatx, image_data_format, set_epsilon
from keras.backend import set_floatx, set_image_data_format, get_uid, standardize_dtype
from keras.backend import is_float_dtype, is_int_dtype
from keras import Input
"""

# The seed tutorial's import cell (Keras 2, 2017), as written.
SEED_IMPORTS = """\
import keras
from keras.datasets import mnist
from keras.models import Sequential
from keras.layers import Dense, Dropout, Activation, Flatten
from keras.layers import Conv2D, MaxPooling2D
from keras.utils import np_utils
from keras import backend as K
"""


def minicnn_spelling(source: str) -> str:
    """The only change a user makes: the word keras becomes minicnn in the import lines."""
    return re.sub(r"\bkeras\b", "minicnn", source)


@pytest.mark.parametrize("source", [KERAS3_IMPORTS, SEED_IMPORTS], ids=["keras3", "seed"])
def test_keras_imports_run_with_minicnn_spelled_in(source):
    namespace = {}
    exec(minicnn_spelling(source), namespace)  # noqa: S102 - the lines above, nothing else
    assert namespace["Sequential"] is minicnn.Sequential
    if "K" in namespace:
        assert namespace["K"].image_data_format() == "channels_last"
        assert namespace["np_utils"].to_categorical([2], 3).tolist() == [[0.0, 0.0, 1.0]]


@pytest.mark.keras
def test_the_import_lines_are_keras_own():
    pytest.importorskip("tensorflow")
    from reference._keras import keras  # noqa: F401 - pins the backend before the exec

    namespace = {}
    exec(KERAS3_IMPORTS, namespace)  # noqa: S102
    assert namespace["Sequential"].__module__.startswith("keras")
    # Keras 3 removed np_utils: the seed's import cell is Keras 2 only
    with pytest.raises(ImportError):
        exec("from keras.utils import np_utils", {})  # noqa: S102


def test_the_seed_builders_moved_and_the_old_name_warns_once_per_use():
    from minicnn import architectures, models

    for name in ("seed_model", "deep_model", "build", "BUILDERS", "architecture_name"):
        with pytest.warns(FutureWarning, match=f"minicnn.architectures.{name}"):
            old = getattr(models, name)
        assert old is getattr(architectures, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert models.Sequential is minicnn.Sequential and models.load_model is minicnn.load_model
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        models.nope  # noqa: B018


@pytest.mark.keras
def test_backend_answers_as_keras_does():
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    for fn in ("image_data_format", "floatx", "epsilon"):
        assert getattr(minicnn.backend, fn)() == getattr(keras.backend, fn)(), fn
    ours = [minicnn.backend.get_uid("x_test_prefix") for _ in range(3)]
    theirs = [keras.backend.get_uid("x_test_prefix") for _ in range(3)]
    assert ours == theirs == [1, 2, 3]
    for dtype in ("float32", "int8", np.float64, "uint16"):
        for fn in ("standardize_dtype", "is_float_dtype", "is_int_dtype"):
            assert getattr(minicnn.backend, fn)(dtype) == getattr(keras.backend, fn)(dtype)


def test_set_epsilon_moves_the_crossentropy_clip_and_channels_first_is_refused():
    y, p = np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32)
    try:
        minicnn.backend.set_epsilon(1e-3)
        # -log(clip(0, eps, 1 - eps)) = -log(eps): the clip uses the epsilon in force
        assert minicnn.losses.categorical_crossentropy(y, p)[0] == pytest.approx(-np.log(1e-3))
    finally:
        minicnn.backend.set_epsilon(1e-7)
    assert minicnn.losses.categorical_crossentropy(y, p)[0] == pytest.approx(-np.log(1e-7),
                                                                            rel=1e-5)
    minicnn.backend.set_image_data_format("channels_last")
    with pytest.raises(ValueError, match="channels-last only"):
        minicnn.backend.set_image_data_format("channels_first")
    with pytest.raises(ValueError, match="Received: value=0"):
        minicnn.backend.set_epsilon(0)


def test_clear_session_restarts_layer_names():
    minicnn.backend.clear_session()
    first = minicnn.layers.Dense(2).name
    minicnn.backend.clear_session()
    assert first == minicnn.layers.Dense(3).name == "dense"


@pytest.mark.keras
def test_utils_compute_what_keras_utils_compute():
    pytest.importorskip("tensorflow")
    from reference._keras import keras

    x = np.random.default_rng(0).standard_normal((4, 5))
    for kwargs in ({}, {"axis": 1}, {"order": 1}):
        np.testing.assert_allclose(minicnn.utils.normalize(x, **kwargs),
                                   keras.utils.normalize(x, **kwargs), rtol=1e-12)
    # axis=0: Keras 3.15 turns it into -1 (`axis or -1`) and fails to broadcast; minicnn
    # normalises the columns, checked by hand
    np.testing.assert_allclose(minicnn.utils.normalize(x, axis=0),
                               x / np.sqrt((x**2).sum(axis=0)), rtol=1e-12)
    for labels in ([3, 0, 2], [[1], [0]], [[1, 2], [0, 0]]):
        ours = minicnn.utils.to_categorical(labels, 4)
        theirs = keras.utils.to_categorical(labels, 4)
        assert ours.shape == theirs.shape and ours.dtype == np.float32  # Keras 3: float64
        np.testing.assert_array_equal(ours, theirs)
