"""The seed tutorial's seven figures, as functions that return matplotlib Figures.

    fig = viz.random_filters_figure(x_train[0])     # one figure per function, nothing global
    viz.save(fig, "figures/1_random_filters.png")   # atomic PNG write (temp file + rename)
    viz.write_all(model, x_train, x_test, y_test, "figures", history=model.history)

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no window, the Agg renderer
for PNGs), so they work in scripts, tests and on headless machines, and a notebook shows the
returned Figure inline. Every size is fixed (``FIGSIZES`` at ``DPI``), so each PNG is exactly
``(height * DPI, width * DPI)`` pixels. Titles and labels are the seed's.

Digits may be uint8 (28, 28) as loaded, or float (28, 28, 1) / (1, 28, 28, 1) as the model eats
them; labels may be class indices (N,) or one-hot (N, 10).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import signal

DPI = 100
FIGSIZES = {  # (width, height) in inches
    "random_filters": (14, 6),
    "digit_probabilities": (10, 4),
    "wrong_digit": (10, 4),
    "confidence_histogram": (6.4, 4.8),
    "learned_filters": (6, 6),
    "activations": (12, 12),
    "training_curves": (11, 4),
}
FILENAMES = {
    "random_filters": "1_random_filters.png",
    "digit_probabilities": "2_digit_probabilities.png",
    "wrong_digit": "3_wrong_digit.png",
    "confidence_histogram": "4_confidence_histogram.png",
    "learned_filters": "5_learned_filters.png",
    "activations": "6_activations.png",
    "training_curves": "7_training_curves.png",
}
# The seed's edge-detection kernel: the discrete Laplacian (4-neighbour form).
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def pixel_size(name: str) -> tuple[int, int]:
    """(height, width) in pixels of the PNG that figure `name` is saved as."""
    w, h = FIGSIZES[name]
    return round(h * DPI), round(w * DPI)


def save(fig: Figure, path) -> Path:
    """Write fig as a PNG at DPI (atomically: a temp file beside path, then rename)."""
    from minicnn.atomic import atomic_write

    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path


# --- input checks -------------------------------------------------------------------------------
def _image(digit, name="digit") -> np.ndarray:
    """One grayscale image as float64 (H, W), from (H, W), (H, W, 1) or (1, H, W, 1)."""
    a = np.asarray(digit)
    if a.dtype.kind not in "biuf":
        raise TypeError(
            f"Invalid dtype for argument {name}. Expected a numeric image. "
            f"Received: {name}.dtype={a.dtype}"
        )
    squeezed = a.reshape([d for d in a.shape if d != 1]) if a.ndim > 2 else a
    if squeezed.ndim != 2:
        raise ValueError(
            f"Argument {name} must be one grayscale image, (H, W) or (H, W, 1). "
            f"Received: {name}.shape={a.shape}"
        )
    out = squeezed.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"Argument {name} contains NaN or inf values.")
    return out


def _probabilities(probs, name="probs", ndim=1) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if ndim == 1 and p.ndim > 1 and p.size == p.shape[-1]:
        p = p.reshape(-1)  # (1, K), as predict() returns for one digit
    if p.ndim != ndim or p.shape[-1] < 2:
        want = "(K,)" if ndim == 1 else "(N, K)"
        raise ValueError(
            f"Argument {name} must have shape {want} with K >= 2 classes. "
            f"Received: {name}.shape={np.shape(probs)}"
        )
    if not np.all(np.isfinite(p)):
        raise ValueError(f"Argument {name} contains NaN or inf values.")
    return p


def labels_of(y) -> np.ndarray:
    """Class indices (N,) from indices (N,) or one-hot (N, K)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"Argument y must be class indices (N,) or one-hot (N, K). Received: y.shape={y.shape}"
        )
    return y.astype(np.int64)


def _show(ax, image, title=None, **kwargs):
    ax.imshow(image, cmap="gray", **kwargs)
    ax.axis("off")
    if title:
        ax.set_title(title)


# --- 1. random filters vs the edge detector ---------------------------------------------------
def random_filters_figure(digit, seed=0, n_filters=10) -> Figure:
    """The digit, the digit filtered by ten random 3x3 kernels, and by the Laplacian.

    Shapes: digit (28, 28) -> each filtered image (28, 28) (mode='same', mirrored borders).
    Random kernels are the seed's ``-1 + 1 * rand(3, 3)``: every weight in [-1, 0).
    """
    c = _image(digit)
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=FIGSIZES["random_filters"])
    cols = math.ceil(n_filters / 2)
    grid = fig.add_gridspec(2, cols + 2, width_ratios=[1.2, 0.15] + [1] * cols)
    _show(fig.add_subplot(grid[0, 0]), c, "original image")
    edges = signal.convolve2d(c, LAPLACIAN, boundary="symm", mode="same")
    _show(fig.add_subplot(grid[1, 0]), edges, "edge-detection image")
    for i in range(n_filters):
        k = -1.0 + 1.0 * rng.random((3, 3))
        c_digit = signal.convolve2d(c, k, boundary="symm", mode="same")
        _show(fig.add_subplot(grid[i // cols, 2 + i % cols]), c_digit, f"random filter {i + 1}")
    fig.suptitle(
        "Ten random 3x3 filters (right) vs the edge-detection filter "
        "[[0,1,0],[1,-4,1],[0,1,0]] (left)"
    )
    return fig


# --- 2 and 3. one digit and its class probabilities -------------------------------------------
def probabilities_figure(digit, probs, digit_title, bar_title, kind="digit_probabilities"):
    """A digit beside the bar chart of its class probabilities.  digit (28, 28), probs (K,)."""
    image, p = _image(digit), _probabilities(probs)
    fig = Figure(figsize=FIGSIZES[kind])
    _show(fig.add_subplot(1, 2, 1), image, digit_title)
    ax = fig.add_subplot(1, 2, 2)
    ax.set_title(bar_title)
    ax.bar(np.arange(len(p)), p, align="center")
    ax.set_xticks(np.arange(len(p)), np.arange(len(p)).astype(str))
    ax.set_ylim(0, 1)
    return fig


def digit_probabilities_figure(digit, probs, label) -> Figure:
    """Figure 2: a test digit and the model's ten class probabilities for it."""
    return probabilities_figure(
        digit, probs, f"Example of digit: {label}", "Probabilities for each digit class"
    )


def wrong_digit_figure(digit, probs, label) -> Figure:
    """Figure 3: a wrongly classified digit (true label in the title) and its probabilities."""
    p = _probabilities(probs)
    return probabilities_figure(
        digit,
        p,
        f"Digit {label} (predicted {int(p.argmax())})",
        "Digit classification probability",
        kind="wrong_digit",
    )


# --- 4. confidence of wrong vs all predictions ------------------------------------------------
def confidence_histogram_figure(probs, y) -> Figure:
    """Histograms (density-normalised) of the highest probability, wrong vs all predictions.

    Shapes: probs (N, K) predicted probabilities, y (N,) labels or (N, K) one-hot.
    """
    p = _probabilities(probs, ndim=2)
    labels = labels_of(y)
    if len(labels) != len(p):
        raise ValueError(
            f"Arguments probs and y must have the same length. Received: "
            f"{len(p)} and {len(labels)}."
        )
    predictions = p.argmax(axis=1)
    all_probs = p.max(axis=1)
    wrong_probs = all_probs[predictions != labels]
    fig = Figure(figsize=FIGSIZES["confidence_histogram"])
    ax = fig.add_subplot(1, 1, 1)
    # density=True is what the seed's (since removed) normed=True meant: each area is 1
    if len(wrong_probs):
        ax.hist(wrong_probs, alpha=0.5, density=True, label="wrongly-labeled")
    ax.hist(all_probs, alpha=0.5, density=True, label="all labels")
    ax.legend()
    ax.set_title("Comparison between wrong and correctly classified labels")
    ax.set_xlabel("highest probability")
    if not len(wrong_probs):
        ax.text(0.05, 0.9, "no wrong predictions", transform=ax.transAxes)
    return fig


# --- 5. learned filters -----------------------------------------------------------------------
def learned_filters_figure(kernel, channel=0) -> Figure:
    """The learned first-layer filters as a grid (6x6 for 32 filters).

    Shapes: kernel (KH, KW, C, F) as Conv2D stores it; shows kernel[:, :, channel, f].
    """
    w = np.asarray(kernel, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(
            f"Argument kernel must be a Conv2D kernel (KH, KW, C, F). "
            f"Received: kernel.shape={w.shape}"
        )
    n = w.shape[3]
    side = max(6, math.ceil(math.sqrt(n)))
    fig = Figure(figsize=FIGSIZES["learned_filters"])
    for i in range(n):
        _show(fig.add_subplot(side, side, i + 1), w[:, :, channel, i], interpolation="none")
    fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.9, wspace=0.1, hspace=0.1)
    fig.suptitle(f"The {n} learned {w.shape[0]}x{w.shape[1]} filters of the first layer")
    return fig


# --- 6. first-layer activations ---------------------------------------------------------------
def first_layer_activations(model, digit) -> np.ndarray:
    """The first layer's output for one digit: (Ho, Wo, F), e.g. (26, 26, 32) after relu."""
    x = _image(digit).reshape(1, *model.input_shape)
    return np.asarray(model.layers[0](x))[0]


def activations_figure(activations) -> Figure:
    """Each filter's activation map for one digit, in a grid.  activations (Ho, Wo, F)."""
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(
            f"Argument activations must be (Ho, Wo, F) for one digit. "
            f"Received: activations.shape={np.shape(activations)}"
        )
    n = a.shape[2]
    side = max(6, math.ceil(math.sqrt(n)))
    fig = Figure(figsize=FIGSIZES["activations"])
    for i in range(n):
        _show(fig.add_subplot(side, side, i + 1), a[:, :, i])
    fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.94, wspace=0.08, hspace=0.08)
    fig.suptitle(
        f"The {a.shape[0]}x{a.shape[1]} activations of all {n} first-layer filters for one digit"
    )
    return fig


# --- 7. training curves -----------------------------------------------------------------------
def history_dict(history) -> dict[str, list[float]]:
    """{'loss': [...], 'accuracy': [...], 'val_loss': ...} from a History, a dict, the JSON that
    `minicnn train --json` writes (its 'history' key), or the path of such a JSON file."""
    if isinstance(history, (str, Path)):
        try:
            history = json.loads(Path(history).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"Cannot read a history from {history}: {e}") from None
    history = getattr(history, "history", history)
    if isinstance(history, dict) and isinstance(history.get("history"), dict):
        history = history["history"]
    if not isinstance(history, dict) or not history.get("loss"):
        raise ValueError(
            f"Argument history must hold a 'loss' list (a History, its .history "
            f"dict, or `minicnn train --json` output). Received keys: "
            f"{sorted(history) if isinstance(history, dict) else type(history)}"
        )
    out = {k: [float(v) for v in vals] for k, vals in history.items() if isinstance(vals, list)}
    if any(not np.all(np.isfinite(v)) for v in out.values()):
        raise ValueError("Argument history contains NaN or inf values.")
    return out


def training_curves_figure(history) -> Figure:
    """Loss and accuracy per epoch, training and validation, side by side."""
    h = history_dict(history)
    fig = Figure(figsize=FIGSIZES["training_curves"])
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if h.get(key):
                epochs = np.arange(1, len(h[key]) + 1)
                ax.plot(epochs, h[key], marker="o", label=label)
        ax.set_title(f"model {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    return fig


# --- all seven --------------------------------------------------------------------------------
def write_all(model, x_train, x_test, y_test, out_dir, history=None, seed=0) -> dict[str, Path]:
    """Write the seven PNGs into out_dir (created if missing); returns {figure name: path}.

    Args:
        model: a trained Sequential whose first layer is a Conv2D.
        x_train: training images, (N, 28, 28) or (N, 28, 28, 1); one is picked for figure 1.
        x_test, y_test: test images scaled as the model was trained (N, 28, 28, 1), labels
            (N,) or one-hot (N, 10).
        history: a History, dict or JSON (see history_dict); None skips figure 7.
        seed: picks the "random" digits and the random filters, so a rerun draws the same.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = labels_of(y_test)
    if len(labels) != len(x_test):
        raise ValueError(
            f"Arguments x_test and y_test must have the same length. Received: "
            f"{len(x_test)} and {len(labels)}."
        )
    rng = np.random.default_rng(seed)
    probs = model.predict(x_test, batch_size=128)  # (N, 10)
    predictions = probs.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    i_train, i_test, i_act = (
        int(rng.integers(n)) for n in (len(x_train), len(x_test), len(x_test))
    )
    figures = {
        "random_filters": random_filters_figure(x_train[i_train], seed=seed),
        "digit_probabilities": digit_probabilities_figure(
            x_test[i_test], probs[i_test], labels[i_test]
        ),
        "confidence_histogram": confidence_histogram_figure(probs, labels),
        "learned_filters": learned_filters_figure(model.layers[0].get_weights()[0]),
        "activations": activations_figure(first_layer_activations(model, x_test[i_act])),
    }
    if len(wrong):
        i = int(wrong[rng.integers(len(wrong))])
        figures["wrong_digit"] = wrong_digit_figure(x_test[i], probs[i], labels[i])
    if history is not None:
        figures["training_curves"] = training_curves_figure(history)
    return {
        name: save(figures[name], out / FILENAMES[name]) for name in FILENAMES if name in figures
    }
