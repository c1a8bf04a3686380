"""The `minicnn explain --html` page in a real browser: headless Chromium opens it from disk,
draws it, runs its script, and a pointer hovers a conv pixel (tests/chromium.py drives it).

Skipped, with one line saying so, where /usr/bin/chromium is missing (.ci/run installs it;
$MINICNN_CHROMIUM names another binary).
"""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn.cli import main

from .chromium import BINARY, Chromium

if not os.path.exists(BINARY):
    pytest.skip(f"{BINARY} not found: the browser test of the explain page needs Debian's "
                f"chromium (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore::minicnn.datasets.OfflineSampleWarning")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    old = minicnn.config.backend_setting()
    minicnn.set_backend("numpy")  # one digit: nothing to compile
    try:
        out = {}
        for model in ("seed", "deep"):
            path = tmp_path_factory.mktemp(model) / "explain.html"
            assert main(["explain", "--html", str(path), "--model", model]) == 0
            out[model] = path
        return out
    finally:
        minicnn.set_backend(old)


@pytest.fixture(scope="module")
def browser():
    with Chromium(width=1280, height=900) as b:
        yield b


LAYOUT = """(() => {
  const sections = Array.from(document.querySelectorAll("section"));
  return {
    height: document.documentElement.scrollHeight,
    width: document.documentElement.scrollWidth,
    images: document.images.length,
    decoded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
    drawn: Array.from(document.images).filter(i => i.getBoundingClientRect().height > 0).length,
    sections: sections.map(s => [s.id, s.getBoundingClientRect().height]),
    lastBottom: sections[sections.length - 1].getBoundingClientRect().bottom + window.scrollY,
  };
})()"""


@pytest.mark.parametrize("model", ["seed", "deep"])
def test_page_renders_without_errors_or_requests(pages, browser, model, tmp_path):
    tab = browser.open(pages[model].as_uri())
    layout = tab.evaluate(LAYOUT)
    assert tab.errors == []
    # nothing but the file itself and its own data: URIs was asked for
    assert [u for u in tab.requests if not u.startswith("data:")] == [pages[model].as_uri()]
    assert layout["images"] > 10 and layout["decoded"] == layout["images"] == layout["drawn"]
    assert all(h > 40 for _, h in layout["sections"]), layout["sections"]
    n_layers = 6 if model == "seed" else 8
    assert len(layout["sections"]) == 2 * n_layers + 2
    # every section is laid out one below the other: the page is as tall as what it holds
    heights = sum(h for _, h in layout["sections"])
    assert heights < layout["height"] and layout["lastBottom"] < layout["height"]
    assert layout["height"] > (4000 if model == "seed" else 7000)
    assert layout["width"] <= 1280, "nothing sticks out sideways"

    png = tab.screenshot()
    (tmp_path / f"{model}.png").write_bytes(png)  # kept for a look when the test fails
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert shot.shape[:2] == (layout["height"], layout["width"])
    ink = np.any(shot < 200, axis=-1)  # (H, W) pixels that are not white or near it
    assert 0.02 < ink.mean() < 0.6, f"{ink.mean():.3f} of the page is drawn"
    rows_with_ink = np.flatnonzero(ink.any(axis=1))
    assert rows_with_ink[-1] > 0.95 * layout["height"] - 200, "the bottom was drawn too"
    rgb = shot.reshape(-1, 3).astype(np.int32)
    colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]).size
    assert colours > 200, f"{colours} colours: colour maps, not flat fills"


PIXEL = """((name, f, i, j) => {
  const img = document.querySelector(`img[data-conv="${name}"]`);
  img.scrollIntoView({block: "center"});
  const box = img.getBoundingClientRect(), k = img.clientWidth / img.naturalWidth;
  const th = +img.dataset.tileH, tw = +img.dataset.tileW, cols = +img.dataset.cols;
  const nx = (f % cols) * (tw + 1) + j + 0.5, ny = Math.floor(f / cols) * (th + 1) + i + 0.5;
  return [box.left + img.clientLeft + nx * k, box.top + img.clientTop + ny * k];
})"""


@pytest.mark.parametrize("model,layer,f", [("seed", "conv2d", 5), ("deep", "conv2d_1", 37)])
def test_hovering_a_conv_pixel_shows_its_window_and_filter(pages, browser, model, layer, f):
    """The pointer on pixel (i, j) of filter f: the panel shows that pixel, and its z, worked
    out by the page's script from the embedded float32 arrays, is the walk's float64 z."""
    from minicnn import architectures, datasets
    from minicnn.gradcheck import freeze_dropout
    from minicnn.layers.base import clear_session
    from minicnn.walkthrough import walk

    minicnn.set_floatx("float64")
    try:
        clear_session()
        minicnn.set_random_seed(0)  # the page's model and masks: --seed 0
        net = architectures.build(model)
        net.compile(loss="categorical_crossentropy", optimizer="adam")
        freeze_dropout(net.layers, np.random.default_rng(0))
        ds = datasets.load("mnist")
        x = ds.x_train[:1].reshape(1, 28, 28, 1) / 255
        steps = walk(net, x, np.eye(10)[ds.y_train[:1]]).steps
    finally:
        minicnn.set_floatx("float32")
    z = next(s.z[0] for s in steps if s.layer.name == layer)  # (Ho, Wo, F)
    ho, wo, n_filters = z.shape
    largest = tuple(int(k) for k in np.unravel_index(np.argmax(np.abs(z[:, :, f])), (ho, wo)))

    tab = browser.open(pages[model].as_uri())
    before = tab.evaluate(f'document.querySelector("#probe-{layer} .probe-body").innerHTML')
    # the largest |z| of filter f, then the last pixel of the last tile (a mosaic off by one
    # pixel per tile would miss it)
    for g, i, j in [(f, *largest), (n_filters - 1, ho - 1, wo - 1)]:
        x_px, y_px = tab.evaluate(f"{PIXEL}('{layer}', {g}, {i}, {j})")
        tab.mouse_move(x_px, y_px)
        head = tab.evaluate(f'document.querySelector("#probe-{layer} .probe-head").textContent')
        hint = tab.evaluate(f'document.querySelector("#probe-{layer} .hint").textContent')
        assert f"{layer}, filter {g}, output pixel ({i}, {j})" in head, head
        assert f"Filter {g}, pixel ({i}, {j}), worked out in your browser" in hint
        shown = float(re.search(r"\+ b = \S+ \+ \S+ = (\S+),", head)[1])
        assert shown == pytest.approx(z[i, j, g], rel=1e-3, abs=1e-6)  # 4 digits; float32
        tables = tab.evaluate(f'document.querySelectorAll("#probe-{layer} table.nums").length')
        assert tables == 2 * (1 if layer == "conv2d" else 3), "window + filter per channel"
    assert tab.errors == []
    assert tab.evaluate(f'document.querySelector("#probe-{layer} .probe-body").innerHTML') \
        != before


def test_the_harness_sees_errors(browser, tmp_path):
    """The checks above can fail: a page that throws, logs an error, fails to load an image
    and asks for another file is caught on every count."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"><p>x</p>'
                    '<script>console.error("logged"); throw new Error("boom");</script>'
                    "</body></html>")
    tab = browser.open(page.as_uri())
    errors = " | ".join(tab.errors)
    assert "boom" in errors and "logged" in errors and "ERR_FILE_NOT_FOUND" in errors, errors
    assert (tmp_path / "missing.png").as_uri() in tab.requests
    assert tab.evaluate("document.images[0].naturalWidth") == 0
