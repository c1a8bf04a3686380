"""minicnn.viz: each of the seed's figures is a PNG of the promised size that shows the right
numbers (bar heights, filter weights, activations recomputed with SciPy, histogram areas)."""

import json
import warnings

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import signal

import minicnn
from minicnn import architectures, datasets, viz
from minicnn.utils import to_categorical

# Values drawn are float64 copies of float32 model outputs: equal to float32 rounding.
DRAWN_F32 = 1e-6
# A SciPy float64 correlation vs the model's float32 conv: float32 rounding of 9-term sums.
CONV_F32 = 1e-5


@pytest.fixture(scope="module")
def trained():
    """The seed model after 1 epoch on 500 real digits (numpy backend), and 200 test digits."""
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", datasets.OfflineSampleWarning)
        ds = datasets.load("mnist")
    x_train = ds.x_train[:500].reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = ds.x_test[:200].reshape(-1, 28, 28, 1).astype("float32") / 255
    minicnn.set_random_seed(0)
    model = architectures.seed_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(
        x_train,
        to_categorical(ds.y_train[:500], 10),
        batch_size=128,
        epochs=1,
        verbose=0,
        validation_data=(x_test, to_categorical(ds.y_test[:200], 10)),
        seed=0,
    )
    yield {
        "model": model,
        "raw_train": ds.x_train[:500],
        "x_test": x_test,
        "y_test": ds.y_test[:200].astype(np.int64),
    }
    minicnn.set_backend(old)


def _figures(t):
    model, x_test, y = t["model"], t["x_test"], t["y_test"]
    probs = model.predict(x_test)
    return {
        "random_filters": lambda: viz.random_filters_figure(t["raw_train"][0], seed=3),
        "digit_probabilities": lambda: viz.digit_probabilities_figure(x_test[0], probs[0], y[0]),
        "wrong_digit": lambda: viz.wrong_digit_figure(x_test[1], probs[1], y[1]),
        "confidence_histogram": lambda: viz.confidence_histogram_figure(probs, y),
        "learned_filters": lambda: viz.learned_filters_figure(model.layers[0].get_weights()[0]),
        "activations": lambda: viz.activations_figure(
            viz.first_layer_activations(model, x_test[2])
        ),
        "training_curves": lambda: viz.training_curves_figure(model.history),
    }


@pytest.mark.parametrize("name", list(viz.FILENAMES))
def test_each_figure_is_a_png_of_the_promised_size(trained, name, tmp_path):
    path = viz.save(_figures(trained)[name](), tmp_path / viz.FILENAMES[name])
    assert path.stat().st_size > 1000
    image = imread(path)
    assert image.shape == (*viz.pixel_size(name), 4)
    assert np.ptp(image[..., :3]) > 0.5, "the PNG is blank"
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "a temp file was left behind"


def test_write_all_writes_the_seven_files(trained, tmp_path):
    t = trained
    paths = viz.write_all(
        t["model"],
        t["raw_train"],
        t["x_test"],
        t["y_test"],
        tmp_path / "figs",
        history=t["model"].history,
        seed=5,
    )
    assert list(paths) == list(viz.FILENAMES)
    for name, path in paths.items():
        assert path.name == viz.FILENAMES[name]
        assert imread(path).shape[:2] == viz.pixel_size(name)


def test_probability_bars_are_the_predicted_probabilities(trained):
    probs = trained["model"].predict(trained["x_test"][:1])[0]
    fig = viz.digit_probabilities_figure(trained["x_test"][0], probs, 7)
    bars = fig.axes[1].patches
    np.testing.assert_allclose([b.get_height() for b in bars], probs, rtol=DRAWN_F32)
    assert fig.axes[0].get_title() == "Example of digit: 7"
    assert fig.axes[1].get_title() == "Probabilities for each digit class"


def test_histograms_are_density_normalised(trained):
    probs = trained["model"].predict(trained["x_test"])
    ax = viz.confidence_histogram_figure(probs, trained["y_test"]).axes[0]
    wrong = probs.argmax(1) != trained["y_test"]
    assert wrong.any(), "a 1-epoch model on 500 digits should make some mistakes"
    for container in ax.containers:  # one per histogram: the wrong ones, then all
        area = sum(p.get_height() * p.get_width() for p in container.patches)
        assert area == pytest.approx(1.0, rel=1e-9)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["wrongly-labeled", "all labels"]


def test_filter_grid_shows_each_learned_kernel(trained):
    w = trained["model"].layers[0].get_weights()[0]  # (3, 3, 1, 32)
    images = [ax.images[0].get_array() for ax in viz.learned_filters_figure(w).axes]
    assert len(images) == 32
    for f, image in enumerate(images):
        np.testing.assert_allclose(image, w[:, :, 0, f], rtol=DRAWN_F32)


def test_activation_maps_are_relu_of_the_correlation(trained):
    """Recompute the first layer with SciPy: relu(correlate(digit, w_f) + b_f), valid mode."""
    model, digit = trained["model"], trained["x_test"][3, :, :, 0]
    w, b = model.layers[0].get_weights()
    fig = viz.activations_figure(viz.first_layer_activations(model, digit))
    for f, ax in enumerate(fig.axes):
        expected = np.maximum(
            signal.correlate2d(digit.astype(np.float64), w[:, :, 0, f], mode="valid") + b[f], 0
        )
        np.testing.assert_allclose(ax.images[0].get_array(), expected, atol=CONV_F32)


def test_random_filters_use_the_laplacian_and_seeded_kernels():
    digit = np.zeros((28, 28), np.uint8)
    digit[10:18, 12:15] = 255
    fig = viz.random_filters_figure(digit, seed=0)
    titled = {ax.get_title(): ax.images[0].get_array() for ax in fig.axes}
    np.testing.assert_array_equal(
        titled["edge-detection image"],
        signal.convolve2d(
            digit.astype(float), [[0, 1, 0], [1, -4, 1], [0, 1, 0]], boundary="symm", mode="same"
        ),
    )
    k = -1.0 + 1.0 * np.random.default_rng(0).random((3, 3))
    np.testing.assert_allclose(
        titled["random filter 1"],
        signal.convolve2d(digit.astype(float), k, boundary="symm", mode="same"),
    )
    assert sum(t.startswith("random filter") for t in titled) == 10


def test_history_from_a_history_a_dict_or_train_json(trained, tmp_path):
    h = trained["model"].history
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"command": "minicnn train", "history": h.history}))
    for source in (h, h.history, {"history": h.history}, run, str(run)):
        assert viz.history_dict(source) == h.history
    lines = viz.training_curves_figure(run).axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), h.history["loss"])
    np.testing.assert_allclose(lines[1].get_ydata(), h.history["val_loss"])


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"accuracy": [0.5]}, "'loss'"),
        ({"loss": [float("nan")]}, "NaN"),
        ("/nonexistent/run.json", "Cannot read"),
    ],
)
def test_bad_history_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        viz.history_dict(bad)


@pytest.mark.parametrize(
    "digit,error,match",
    [
        (np.zeros((28, 28, 3)), ValueError, "digit.shape"),
        (np.full((28, 28), np.nan), ValueError, "NaN"),
        (np.array([["a"] * 28] * 28), TypeError, "digit.dtype"),
    ],
)
def test_bad_digit_is_a_clear_error(digit, error, match):
    with pytest.raises(error, match=match):
        viz.digit_probabilities_figure(digit, np.full(10, 0.1), 3)


def test_bad_probabilities_and_labels_are_clear_errors():
    with pytest.raises(ValueError, match="probs"):
        viz.confidence_histogram_figure(np.ones(10), [1])
    with pytest.raises(ValueError, match="same length"):
        viz.confidence_histogram_figure(np.full((3, 10), 0.1), [1, 2])
