"""`minicnn explain --html`: the page's structure, its numbers against independent truths, the
models it works on, and its argument errors. (The page in a real browser: test_explain_browser.py)

Pages are made in-process through the CLI on the NumPy backend (one digit: no kernels to compile).
"""

import base64
import html
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from scipy import signal

import minicnn
from minicnn import architectures, datasets
from minicnn.cli import main
from minicnn.commands import explain as explain_cmd
from minicnn.gradcheck import freeze_dropout
from minicnn.layers.base import clear_session
from minicnn.walkthrough import check_entry, largest_entry, walk
from tests.test_datasets import make_arrays, write_idx_folder

SEED_LAYERS = ["conv2d", "max_pooling2d", "dropout", "flatten", "dropout_1", "dense"]
DEEP_LAYERS = ["conv2d", "conv2d_1", "max_pooling2d", "dropout", "flatten", "dense",
               "dropout_1", "dense_1"]
LAYERS = {"seed": SEED_LAYERS, "deep": DEEP_LAYERS}
pytestmark = pytest.mark.filterwarnings("ignore::minicnn.datasets.OfflineSampleWarning")
CHECK_TOLERANCE = 1e-6  # float64 central differences agree to ~1e-9 (minicnn gradcheck: 1e-7)


class Page(HTMLParser):
    """The parts of a page the tests read: section ids in order, <img> attributes, scripts."""

    def __init__(self, text):
        super().__init__()
        self.text, self.sections, self.images, self.scripts = text, [], [], []
        self._script = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self._script = [attrs.get("type"), attrs.get("id"), ""]

    def handle_data(self, data):
        if self._script is not None:
            self._script[2] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self.scripts.append(tuple(self._script))
            self._script = None

    def conv_data(self):
        return json.loads(next(s for t, i, s in self.scripts if i == "conv-data"))


def external_references(text):
    """Everything in a page that could make a browser reach outside the file: any URL scheme
    but data:, src/href/url() not pointing at data: or #, and protocol-relative //."""
    found = re.findall(r"\b(?:https?|ftp|wss?|file):", text, flags=re.I)
    for attr in re.findall(r"""(?:src|href|action|srcset)\s*=\s*["']?([^"'\s>]*)""", text, re.I):
        if not attr.startswith(("data:", "#")):
            found.append(attr)
    for target in re.findall(r"url\(\s*['\"]?([^'\")]*)", text, flags=re.I):
        if not target.startswith("data:"):
            found.append(f"url({target})")
    found += re.findall(r"@import", text)
    # base64 may hold '//': look for it with the data: URIs and the JSON payload taken out
    rest = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]*", "", text)
    rest = re.sub(r'<script type="application/json"[^>]*>.*?</script>', "", rest, flags=re.S)
    found += [rest[max(0, m.start() - 20): m.end() + 20] for m in re.finditer("//", rest)]
    return found


@pytest.fixture
def numpy_backend():
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")
    yield
    minicnn.set_backend(old)


def _make(tmp_path, capsys, *argv, name="page.html"):
    path = tmp_path / name
    assert main(["explain", "--html", str(path), *argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"Wrote {path}" in out
    return Page(path.read_text(encoding="utf-8")), path


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The seed and the deep page for training image 0 (made once: the deep one is the big one)."""
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")
    try:
        out = {}
        for model in ("seed", "deep"):
            path = tmp_path_factory.mktemp(model) / "explain.html"
            assert main(["explain", "--html", str(path), "--model", model]) == 0
            out[model] = Page(path.read_text(encoding="utf-8")), path
        return out
    finally:
        minicnn.set_backend(old)


# --- structure ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["seed", "deep"])
def test_every_layer_has_a_forward_and_a_backward_section(pages, model):
    page, _ = pages[model]
    names = LAYERS[model]
    expected = (["input"] + [f"forward-{n}" for n in names] + ["loss"]
                + [f"backward-{n}" for n in reversed(names)])
    assert page.sections == expected
    for n in names:  # each layer's section holds the text walk's words for it
        assert f'<h3>{n} (' in page.text
    assert page.text.count('class="check"') == len(names), "one gradient check per layer"


@pytest.mark.parametrize("model", ["seed", "deep"])
def test_every_image_decodes_and_matches_its_declared_geometry(pages, model):
    page, path = pages[model]
    assert len(page.images) >= 3 * len(LAYERS[model])  # forward maps, dL/dout, dL/dx, ...
    for attrs in page.images:
        head, b64 = attrs["src"].split(",", 1)
        assert head == "data:image/png;base64"
        im = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
        im.load()  # decodes every row: a broken zlib stream or CRC raises here
        assert int(attrs["width"]) >= 1 and int(attrs["height"]) >= 1
        if "data-tile-h" in attrs:  # a mosaic: rows * (h + 1) - 1 by cols * (w + 1) - 1
            h, w = int(attrs["data-tile-h"]), int(attrs["data-tile-w"])
            cols, c = int(attrs["data-cols"]), int(attrs["data-channels"])
            rows = -(-c // cols)
            assert im.size == (cols * (w + 1) - 1, rows * (h + 1) - 1), attrs["alt"]
    size = path.stat().st_size
    assert size < 3e6, f"the {model} page is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("model", ["seed", "deep"])
def test_nothing_in_the_page_points_outside_it(pages, model):
    page, _ = pages[model]
    assert external_references(page.text) == []
    assert [t for t, _, _ in page.scripts] == ["application/json", None]  # inline, no src


def test_the_reference_check_can_fail(pages):
    text = pages["seed"][0].text
    for bad in ['<img src="https://example.org/x.png">', '<a href="//example.org/">',
                "<style>body{background:url(x.png)}</style>", "<script>// a comment</script>",
                '<link rel="stylesheet" href="style.css">', "@import 'a.css';"]:
        assert external_references(text.replace("<body>", "<body>" + bad)), bad


def test_the_digit_picture_holds_the_digit(pages):
    """The input picture, read back through its palette, is the training image."""
    page, _ = pages["seed"]
    digit = next(a for a in page.images if a["alt"] == "the digit")
    im = Image.open(io.BytesIO(base64.b64decode(digit["src"].split(",", 1)[1])))
    indices = np.asarray(im)  # palette indices: round(pixel / max * 254)
    ds = datasets.load("mnist")
    x = ds.x_train[0].astype(np.float64) / 255
    np.testing.assert_array_equal(indices, np.round(x / x.max() * 254).astype(np.uint8))


# --- the numbers on the page against independent truths ----------------------------------------
def _probe(text, layer):
    m = re.search(rf'<div class="probe" id="probe-{layer}">.*?{layer}, filter (\d+), output '
                  rf"pixel \((\d+), (\d+)\): .*? = <b>([-\d.e+]+)</b>", text, flags=re.S)
    return int(m[1]), int(m[2]), int(m[3]), float(m[4])


def test_worked_conv_pixel_is_the_largest_output_and_right(pages):
    """The static example: the largest relu(conv) output, recomputed with SciPy."""
    page, _ = pages["seed"]
    f, i, j, z = _probe(page.text, "conv2d")
    clear_session()
    minicnn.set_random_seed(0)  # the page's model: --seed 0
    model = architectures.seed_model()
    w, b = (a.astype(np.float64) for a in model.layers[0].get_weights())
    x = datasets.load("mnist").x_train[0].astype(np.float64) / 255
    out = np.stack([signal.correlate2d(x, w[:, :, 0, k], mode="valid") + b[k]
                    for k in range(32)], axis=-1)  # (26, 26, 32)
    assert (i, j, f) == np.unravel_index(np.argmax(out), out.shape)
    assert z == pytest.approx(out[i, j, f], rel=1e-3)  # printed to 4 significant digits


@pytest.mark.parametrize("model", ["seed", "deep"])
def test_every_checked_gradient_agrees_with_central_differences(pages, model):
    page, _ = pages[model]
    checks = re.findall(r"Check one number, the largest off a kink: dL/d(\w+)\[[\d,]+\] of "
                        r"(\w+) by backprop = ([-\d.]+); .*? \(rel error ([\d.e+-]+)\)</p>",
                        page.text)
    assert [layer for _, layer, _, _ in checks] == list(reversed(LAYERS[model]))
    for target, layer, analytic, error in checks:
        assert float(error) < CHECK_TOLERANCE, (layer, target, error)
        assert float(analytic) != 0, "the largest gradient entry is checked"


def test_probabilities_on_the_page_are_the_walk_of_the_saved_model(numpy_backend, tmp_path,
                                                                    capsys):
    """From a trained, saved model: the page's p (SVG bar titles) equals the same training-mode
    step recomputed here with the layers of the model as loaded, in float32."""
    minicnn.set_random_seed(3)
    model = architectures.seed_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    ds = datasets.load("mnist")
    x = ds.x_train[:256].reshape(-1, 28, 28, 1).astype("float32") / 255
    model.fit(x, np.eye(10)[ds.y_train[:256]], epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    page, _ = _make(tmp_path, capsys, "--model", str(tmp_path / "m.npz"), "--digit", "5",
                    "--seed", "2")
    assert f"weights from {tmp_path / 'm.npz'}" in page.text and "Seed model" in page.text
    section = page.text.split('id="forward-dense"')[1].split("</section>")[0]
    bars = section.split("output: softmax probabilities p")[-1].split("</svg>")[0]
    p_page = [float(v) for v in re.findall(r"<title>\d+: ([-\d.e+]+)</title>", bars)]

    loaded = minicnn.load_model(tmp_path / "m.npz")
    freeze_dropout(loaded.layers, np.random.default_rng(2))  # the page's masks: --seed 2
    a = x[5:6]
    for layer in loaded.layers:
        a = layer.forward(a, training=True)
    assert len(p_page) == 10
    np.testing.assert_allclose(p_page, a[0], rtol=1e-3)  # 4 digits on the page; float32 here


def test_fashion_mnist_page_names_the_classes(numpy_backend, tmp_path, capsys):
    """--dataset fashion_mnist on an IDX folder (a tiny synthetic one: the test needs no
    download and no Debian package)."""
    arrays = make_arrays(n_train=12, n_test=4)
    folder = write_idx_folder(tmp_path / "fashion", arrays, gz=True)
    page, _ = _make(tmp_path, capsys, "--dataset", "fashion_mnist", "--data", str(folder),
                    "--digit", "11")
    label = int(arrays[1][11])
    name = datasets.fashion_mnist.CLASS_NAMES[label]
    assert f"label {label} ({name})" in page.text
    assert "fashion_mnist: 12 train / 4 test" in page.text
    assert page.sections[1:3] == ["forward-conv2d", "forward-max_pooling2d"]


@pytest.mark.skipif(not datasets.fashion_mnist.DEBIAN_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_deep_model(numpy_backend, tmp_path, capsys):
    page, _ = _make(tmp_path, capsys, "--dataset", "fashion_mnist", "--model", "deep")
    assert "label 9 (Ankle boot)" in page.text  # Fashion-MNIST's first training image
    assert page.sections.count("forward-conv2d_1") == 1


def test_walk_arrays_survive_the_checks(float64, numpy_backend):
    """The page draws the walk's arrays after every check re-ran the layers: they must be the
    arrays of the walk, not of a perturbed re-run."""
    clear_session()
    minicnn.set_random_seed(0)
    model = architectures.deep_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    freeze_dropout(model.layers, np.random.default_rng(0))
    x = np.random.default_rng(1).random((1, 28, 28, 1))
    y = np.eye(10)[[4]]
    w = walk(model, x, y)
    before = [(s.out.copy(), s.dout.copy(), None if s.z is None else s.z.copy()) for s in w.steps]
    for i, s in enumerate(w.steps):
        target = "kernel" if "kernel" in s.grads else "x"
        if target == "x" and s.dx is None:
            continue
        grad = s.grads["kernel"] if target == "kernel" else s.dx
        assert check_entry(model, w.steps, y, i, target, largest_entry(grad)).error < 1e-7
    for s, (out, dout, z) in zip(w.steps, before):
        np.testing.assert_array_equal(s.out, out, err_msg=s.layer.name)
        np.testing.assert_array_equal(s.dout, dout, err_msg=s.layer.name)
        if z is not None:
            np.testing.assert_array_equal(s.z, z, err_msg=s.layer.name)


# --- which model --------------------------------------------------------------------------------
def test_architecture_name_recognises_the_builders_without_side_effects(tmp_path):
    from minicnn import naming

    clear_session()
    minicnn.set_random_seed(0)
    seed, deep = architectures.seed_model(), architectures.deep_model()
    seed.save(tmp_path / "s.npz")
    loaded = minicnn.load_model(tmp_path / "s.npz")
    other = minicnn.Sequential([minicnn.layers.Flatten(input_shape=(28, 28, 1)),
                                minicnn.layers.Dense(10, activation="softmax")])
    state, names = minicnn.random._root.bit_generator.state, dict(naming._NAME_COUNTS)
    assert architectures.architecture_name(seed) == "seed"
    assert architectures.architecture_name(deep) == "deep"
    assert architectures.architecture_name(loaded) == "seed"
    assert architectures.architecture_name(other) is None
    assert minicnn.random._root.bit_generator.state == state, "the random stream moved"
    assert dict(naming._NAME_COUNTS) == names, "layer naming moved"


def test_text_walk_on_the_deep_model_and_a_saved_deep_model(numpy_backend, tmp_path, capsys):
    assert main(["explain", "--model", "deep", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "Deep model, 1,199,882 parameters, freshly initialised" in out
    assert re.search(r"^  conv2d_1\s+\(2, 24, 24, 64\)", out, flags=re.M)
    clear_session()
    architectures.deep_model().save(tmp_path / "d.npz")
    assert main(["explain", "--model", str(tmp_path / "d.npz"), "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert f"Deep model, 1,199,882 parameters, weights from {tmp_path / 'd.npz'}" in out
    assert float(re.search(r"rel error ([\d.e+-]+)", out).group(1)) < CHECK_TOLERANCE


# --- bad input: one line, exit 2, before any work -----------------------------------------------
@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the command gets as far as loading data or a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the command started working before rejecting its arguments")

    monkeypatch.setattr(explain_cmd, "_load_data", refuse)
    monkeypatch.setattr(explain_cmd, "walk", refuse)
    monkeypatch.setattr(minicnn.architectures, "build", refuse)


def _one_line_error(capsys, *parts):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Warning")]
    assert len(lines) == 1 and lines[0].startswith("minicnn explain: error: argument "), err
    for part in parts:
        assert part in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "where,message",
    [
        ("missing/page.html", "missing does not exist"),
        ("a_file/page.html", "a_file is not a folder"),
        (".", "is a folder; give a file name"),
    ],
)
def test_unwritable_html_path_is_rejected_first(where, message, tmp_path, capsys, no_work):
    (tmp_path / "a_file").write_text("x")
    path = tmp_path / where
    assert main(["explain", "--html", str(path), "--model", "/nonexistent.npz"]) == 2
    _one_line_error(capsys, "--html", message)


@pytest.mark.parametrize(
    "argv,parts",
    [
        (["--model", "/nonexistent/m.npz"], ["--model", "no such file: /nonexistent/m.npz"]),
        (["--model", "seedd"], ["--model", "expected seed, deep or a saved model file"]),
        (["--batch", "2"], ["--batch", "not with --html"]),
    ],
)
def test_bad_model_or_options_are_rejected_first(argv, parts, tmp_path, capsys, no_work):
    assert main(["explain", "--html", str(tmp_path / "p.html"), *argv]) == 2
    _one_line_error(capsys, *parts)
    assert not (tmp_path / "p.html").exists()


def test_digit_without_html_is_rejected(capsys, no_work):
    assert main(["explain", "--digit", "3"]) == 2
    _one_line_error(capsys, "--digit", "only with --html")


def test_corrupt_model_file_is_one_line_from_the_real_command(tmp_path):
    """Through a real process: exit 2, one line naming the file, no traceback, no page."""
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    page = tmp_path / "p.html"
    result = subprocess.run(
        [sys.executable, "-m", "minicnn", "explain", "--html", str(page), "--model", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "argument --model" in lines[0] and str(bad) in lines[0], lines
    assert "Traceback" not in result.stderr and not page.exists()


def test_digit_out_of_range_names_the_range(numpy_backend, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(explain_cmd, "walk", lambda *a: pytest.fail("walked"))
    assert main(["explain", "--html", str(tmp_path / "p.html"), "--digit", "1000000"]) == 2
    line = _one_line_error(capsys, "--digit", "1000000 is out of range")
    n = len(datasets.load("mnist").x_train)
    assert f"has {n:,} training images (0 to {n - 1:,})" in line
    assert not (tmp_path / "p.html").exists()


def test_page_runs_on_numpy_when_auto_and_restores_the_backend(tmp_path, capsys):
    old = minicnn.config.backend_setting()
    minicnn.set_backend("auto")
    try:
        page, _ = _make(tmp_path, capsys)
        assert minicnn.config.backend_setting() == "auto" and minicnn.floatx() == "float32"
    finally:
        minicnn.set_backend(old)
    assert re.search(r"on the\s+numpy backend", page.text)


def test_page_follows_any_saved_model_layers(numpy_backend, tmp_path, capsys):
    """Sections come from the model's layers: no bias, 'same' padding, a stride, batch
    normalisation and an Activation layer each get theirs, and every check still agrees."""
    from minicnn.layers import Activation, BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D

    clear_session()
    minicnn.set_random_seed(1)
    model = minicnn.Sequential([
        Conv2D(8, 3, padding="same", use_bias=False, input_shape=(28, 28, 1)),
        BatchNormalization(), Activation("relu"), MaxPooling2D(),
        Conv2D(4, 3, strides=2, activation="tanh"), Flatten(), Dense(10, activation="softmax"),
    ])
    model.save(tmp_path / "custom.npz")
    page, _ = _make(tmp_path, capsys, "--model", str(tmp_path / "custom.npz"))
    names = ["conv2d", "batch_normalization", "activation", "max_pooling2d", "conv2d_1",
             "flatten", "dense"]
    assert page.sections == (["input"] + [f"forward-{n}" for n in names] + ["loss"]
                             + [f"backward-{n}" for n in reversed(names)])
    text = html.unescape(page.text)
    assert ("conv 3x3, 8 filters: each output pixel = 9 weights . 9 pixels, then linear; "
            "'same' padding, stride 1: 28 -> 28") in text
    assert "'valid' padding, stride 2: 14 -> 6" in text
    backward_conv = page.text.split('id="backward-conv2d"')[1]
    assert "dL/db" not in backward_conv, "a conv without bias has no bias gradient"
    errors = [float(e) for e in re.findall(r"\(rel error ([\d.e+-]+)\)</p>", page.text)]
    assert len(errors) == len(names) and max(errors) < CHECK_TOLERANCE
    data = page.conv_data()
    assert sorted(data) == ["conv2d", "conv2d_1"]
    assert (data["conv2d"]["pt"], data["conv2d"]["pl"], data["conv2d_1"]["sh"]) == (1, 1, 2)


def test_check_largest_steps_off_a_pooling_tie(float64, numpy_backend):
    """A 2x2 window of ReLU zeros routes its gradient to its first zero; nudged down, another
    zero wins, so the difference quotient is half the derivative (rel error exactly 1/3). That
    entry is flagged as a kink and check_largest checks the next largest instead."""
    from minicnn.layers import Activation, Dense, Flatten, MaxPooling2D
    from minicnn.walkthrough import check_largest

    clear_session()
    model = minicnn.Sequential([Activation("relu", input_shape=(4, 4, 1)), MaxPooling2D(),
                                Flatten(), Dense(3, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    kernel = np.random.default_rng(0).normal(0, 0.5, (4, 3))
    kernel[0] = [5.0, -5.0, 0.0]  # the tied window (top left) gets the largest gradient
    model.layers[-1].set_weights([kernel, np.zeros(3)])
    x = np.arange(1.0, 17.0).reshape(1, 4, 4, 1) / 16
    x[0, :2, :2, 0] = -1.0  # relu -> four exact zeros
    y = np.eye(3)[[1]]
    steps = walk(model, x, y).steps
    tie = largest_entry(steps[1].dx)
    assert tie == (0, 0, 0, 0)
    check = check_entry(model, steps, y, 1, "x", tie)
    # one-sided on one side, so the half holds to O(h) only, not O(h^2): 1e-5 measured 1.7e-6
    assert check.kink and check.error == pytest.approx(1 / 3, rel=1e-5)
    assert check.numeric == pytest.approx(check.analytic / 2, rel=1e-5)
    best = check_largest(model, steps, y, 1, "x")
    assert not best.kink and best.index != tie and best.error < 1e-8
    assert abs(best.analytic) == np.sort(np.abs(steps[1].dx), axis=None)[-2]
