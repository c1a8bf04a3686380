"""`minicnn explain --html`: one digit's training step as one self-contained web page.

    html = page(walk, checks, info)      # a str; the command writes it atomically

The page has, top to bottom: the digit; **forward**, one section per layer (`id="forward-<name>"`)
with what it computed (the text `minicnn explain` prints) and every output map; the loss;
**backward**, one section per layer, last first (`id="backward-<name>"`), with the rows of the
text walk, dL/d(output) arriving and dL/d(input) handed down as maps, dL/dz, the filters beside
their gradients, the dense gradient as an image, and one gradient checked by central differences.

Self-contained: every picture is a PNG in a data: URI (minicnn/pictures.py), the CSS and the
script are inline, and nothing refers to any other file or host, so the page opens from disk with
no network. Everything is static HTML except one small script: hovering (or clicking) a pixel of
a conv layer's output maps shows the input window and the filter that produced it, recomputing
z = sum(x . w) + b in the browser from the embedded float32 input and weights. Without the
script the page still reads fully, and each conv section shows one such pixel worked out.

Colours: maps of values >= 0 run white (0) to black (the largest value); maps with negative
values, and every gradient, run blue (-m) through white (0) to red (+m), m the largest |value|
in that picture, printed in its legend. Each picture has its own scale.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass

import numpy as np

from minicnn.layers import Conv2D, Dense, Dropout, Flatten
from minicnn.pictures import Scale, data_uri, encode_png, mosaic
from minicnn.walkthrough import H, norm, percent_zero

MAP_COLS = 8  # channels per row in a mosaic of maps
MAP_WIDTH = 440  # about how wide (CSS px) a mosaic of maps is drawn
STRIP_WIDTH = 880  # the widest a strip or matrix is drawn
BARS_MAX = 16  # vectors up to this length are drawn as bars, longer ones as a strip
PROBE_CHANNELS = 3  # input channels spelled out in a conv pixel's worked example


@dataclass(frozen=True)
class PageInfo:
    """What the page says about where its numbers come from."""

    title: str  # "Seed model", "Deep model" or "Model"
    where: str  # "freshly initialised (...)" or "weights from PATH"
    parameters: int
    data: str  # Dataset.describe()
    dataset: str  # 'mnist' or 'fashion_mnist'
    digit: int  # index in the training images
    label: int
    class_names: tuple
    backend: str
    seed: int


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def fmt(v: float) -> str:
    return f"{v:.4g}"


# --- pictures -----------------------------------------------------------------------------------
def _zoom(native: int, target: int, most: int = 8) -> int:
    """The integer enlargement that draws `native` pixels closest to `target` CSS px."""
    return max(1, min(most, round(target / native)))


def _img(indices, scale: Scale, alt: str, width: int, height: int, cls="map", attrs="") -> str:
    src = data_uri(encode_png(indices, scale.palette))
    return (f'<img class="{cls}" src="{src}" width="{width}" height="{height}" '
            f'alt="{esc(alt)}"{attrs}>')


def _legend(scale: Scale) -> str:
    lo, hi = scale.ends()
    return (f'<div class="legend"><span class="bar" style="background:{scale.css_gradient()}">'
            f'</span><span>{fmt(lo)}</span><span>{"0" if scale.kind == "signed" else ""}</span>'
            f"<span>{fmt(hi)}</span></div>")


def stats(a) -> str:
    """shape, norm, share of exact zeros and range of a, in the words of the text walk."""
    a = np.asarray(a)
    return (f"{tuple(a.shape)}, norm {norm(a)}, {percent_zero(a)}, "
            f"min {fmt(a.min())}, max {fmt(a.max())}")


def _figure(title: str, a, body: str, legend: str = "") -> str:
    return (f'<figure><figcaption><b>{esc(title)}</b><br><span class="stats">'
            f"{esc(stats(a))}</span></figcaption>{body}{legend}</figure>")


def maps_figure(title, a, signed=None, attrs="") -> str:
    """All channels of one image's maps a (H, W, C) as a mosaic, MAP_COLS tiles a row."""
    h, w, c = a.shape
    scale = Scale.for_values(a, signed)
    tiles = scale.indices(np.moveaxis(a, -1, 0))  # (C, H, W)
    cols = min(c, MAP_COLS)
    img = mosaic(tiles, cols)
    z = _zoom(img.shape[1], MAP_WIDTH if c > 1 else 170)
    geometry = f' data-tile-h="{h}" data-tile-w="{w}" data-cols="{cols}" data-channels="{c}"'
    body = _img(img, scale, title, img.shape[1] * z, img.shape[0] * z, attrs=geometry + attrs)
    return _figure(title, a, body, _legend(scale))


def strip_figure(title, v, rows=None, signed=None) -> str:
    """A long vector v (D,) as a strip: `rows` rows of D / rows values, each drawn 6 px tall
    (default: as many rows as keep them at most STRIP_WIDTH values long)."""
    v = np.asarray(v).reshape(-1)
    rows = rows or _rows(v.size)
    scale = Scale.for_values(v, signed)
    img = scale.indices(v.reshape(rows, -1))
    width = min(STRIP_WIDTH, img.shape[1] * _zoom(img.shape[1], STRIP_WIDTH, 6))
    cls = "map" if width >= img.shape[1] else "map smooth"
    return _figure(title, v, _img(img, scale, title, width, rows * 6, cls), _legend(scale))


def matrix_figure(title, m) -> str:
    """A matrix m (K, D) drawn STRIP_WIDTH wide, K rows of at least 2 px."""
    scale = Scale.for_values(m, signed=True)
    img = scale.indices(m)
    k, d = m.shape
    width = min(STRIP_WIDTH, d * _zoom(d, STRIP_WIDTH))
    height = k * max(2, min(8, 120 // k))
    cls = "map" if width >= d else "map smooth"
    return _figure(title, m, _img(img, scale, title, width, height, cls), _legend(scale))


def kernel_figure(title, k, signed=True) -> str:
    """A conv kernel (KH, KW, C, F) as KH x KW tiles: one row of C tiles per filter (C > 1),
    or the F filters MAP_COLS a row (C = 1)."""
    kh, kw, c, f = k.shape
    scale = Scale.for_values(k, signed)
    tiles = scale.indices(np.transpose(k, (3, 2, 0, 1)).reshape(f * c, kh, kw))  # (F*C, KH, KW)
    img = mosaic(tiles, c if c > 1 else MAP_COLS)
    z = _zoom(img.shape[1], 250 if c == 1 else 130)
    return _figure(title, k, _img(img, scale, title, img.shape[1] * z, img.shape[0] * z),
                   _legend(scale))


def bars_figure(title, v, names=None, signed=True, highlight=None, fixed_top=None) -> str:
    """A short vector v (K,) as an inline SVG bar chart, bar `highlight` in orange; names label
    the bars' tooltips (default: the index)."""
    v = np.asarray(v, np.float64).reshape(-1)
    names = names or [str(k) for k in range(len(v))]
    w, h, top, bottom = 440, 150, 18, 20
    mid = (h - bottom + top) / 2 if signed else h - bottom  # y of the zero line
    room = (h - bottom - top) / 2 if signed else h - bottom - top
    m = fixed_top or float(np.max(np.abs(v))) or 1.0
    step = w / len(v)
    parts = [f'<svg class="bars" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
             f"<title>{esc(title)}</title>",
             f'<line x1="0" y1="{mid:.1f}" x2="{w}" y2="{mid:.1f}" class="axis"/>']
    for k, value in enumerate(v):
        length = abs(value) / m * room
        y = mid - length if value >= 0 else mid
        cls = "hi" if k == highlight else ("neg" if value < 0 else "pos")
        x = k * step + step * 0.15
        parts.append(f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{max(length, 0.5):.1f}"><title>{esc(names[k])}: {fmt(value)}'
                     f"</title></rect>")
        ty = y - 3 if value >= 0 else y + length + 10
        parts.append(f'<text x="{x + step * 0.35:.1f}" y="{ty:.1f}" class="val">'
                     f"{value:.2g}</text>")
        parts.append(f'<text x="{x + step * 0.35:.1f}" y="{h - 5}" class="lab">{k}</text>')
    parts.append("</svg>")
    return _figure(title, v, "".join(parts))


def _rows(d: int) -> int:
    """The fewest rows that divide d into rows of at most STRIP_WIDTH values (d if prime)."""
    return next(r for r in range(1, d + 1) if d % r == 0 and d // r <= STRIP_WIDTH)


def vector_figure(title, v, names=None, signed=None, rows=None, highlight=None) -> str:
    v = np.asarray(v).reshape(-1)
    if v.size <= BARS_MAX:
        return bars_figure(title, v, names, signed=True, highlight=highlight)
    return strip_figure(title, v, rows, signed)


def tensor_figure(title, a, names=None, signed=None, rows=None) -> str:
    """One image's tensor (without the batch axis): maps if (H, W, C), a vector otherwise."""
    if a.ndim == 3:
        return maps_figure(title, a, signed)
    return vector_figure(title, a, names, signed, rows)


# --- the worked conv pixel (static here; the page's script redoes it for any pixel) -----------
def conv_window(x, layer, i, j):
    """x's (KH, KW, C) window under output pixel (i, j) of conv `layer`, 0 where padded."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    pt, _, pl, _ = layer.pads
    hgt, wid, c = x.shape
    win = np.zeros((kh, kw, c), x.dtype)
    for p in range(kh):
        for q in range(kw):
            r, s = i * sh - pt + p, j * sw - pl + q
            if 0 <= r < hgt and 0 <= s < wid:
                win[p, q] = x[r, s]
    return win


def _grid(a) -> str:
    rows = "".join("<tr>" + "".join(f"<td>{v:.3g}</td>" for v in row) + "</tr>" for row in a)
    return f'<table class="nums">{rows}</table>'


def probe_html(layer, x, i, j, f) -> str:
    """Output pixel (i, j) of filter f worked out: windows, filters, sums. Same markup as the
    page script's probe() builds."""
    w = layer.params["kernel"]
    b = float(layer.params["bias"][f]) if "bias" in layer.params else 0.0
    win = conv_window(x, layer, i, j)  # (KH, KW, C)
    parts = win * w[:, :, :, f]  # (KH, KW, C)
    per_c = parts.sum(axis=(0, 1))  # (C,)
    total = float(per_c.sum())
    z = total + b
    out = layer.activation.forward(np.array([z]))[0]
    c = win.shape[2]
    shown = np.argsort(-np.abs(per_c), kind="stable")[:PROBE_CHANNELS]
    cells = []
    for ch in shown:
        cells.append(f'<div class="pair"><div>window, channel {ch}{_grid(win[:, :, ch])}</div>'
                     f"<div>filter {f}, channel {ch}{_grid(w[:, :, ch, f])}</div>"
                     f"<div>sum of products: {per_c[ch]:.4g}</div></div>")
    rest = ""
    if c > len(shown):
        rest = (f"; the {len(shown)} channels shown give {per_c[shown].sum():.4g}, the other "
                f"{c - len(shown)} give {total - per_c[shown].sum():.4g}")
    return (f'<p class="probe-head">{esc(layer.name)}, filter {f}, output pixel ({i}, {j}): '
            f"z = sum over {c} channel(s) of window . filter + b = {total:.4g} + {b:.4g} = "
            f"<b>{z:.4g}</b>, {esc(layer.activation.name)}(z) = <b>{out:.4g}</b>{rest}</p>"
            f'<div class="pairs">{"".join(cells)}</div>')


def _f32(a) -> str:
    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode("ascii")


def conv_data(layer, x) -> dict:
    """What the page script needs to redo any output pixel of conv `layer` on input x."""
    kh, kw, c, f = layer.params["kernel"].shape
    b = layer.params.get("bias", np.zeros(f))
    return {"x": _f32(x), "w": _f32(layer.params["kernel"]), "b": _f32(b),
            "H": x.shape[0], "W": x.shape[1], "C": c, "KH": kh, "KW": kw, "F": f,
            "sh": layer.strides[0], "sw": layer.strides[1], "pt": layer.pads[0],
            "pl": layer.pads[2], "act": layer.activation.name, "probeChannels": PROBE_CHANNELS}


# --- sections -----------------------------------------------------------------------------------
def _check_line(check) -> str:
    if check is None:
        return ""
    what = "dL/dW" if check.target == "kernel" else f"dL/d{check.target}"
    index = ",".join(map(str, check.index))
    kink = ("; its nudges cross a ReLU kink or a pooling tie, as did those of the next largest "
            "ones, so the quotient is not the derivative here" if check.kink else "")
    return (f'<p class="check">Check one number, the largest off a kink: {what}[{index}] of '
            f"{esc(check.layer)} by backprop = {check.analytic:.10f}; by central differences "
            f"(L(w + h) - L(w - h)) / 2h, h = {H:g}: {check.numeric:.10f} (rel error "
            f"{check.error:.1e}){kink}</p>")


@dataclass
class _Context:
    """What every section needs besides its step."""

    info: PageInfo
    names: list  # class names, for the output layer's per-class vectors
    rows: dict  # vector length -> rows to draw it in (image rows, after a Flatten)
    data: dict  # conv layer name -> conv_data(), filled by the forward sections


def forward_section(step, ctx: _Context) -> str:
    layer = step.layer
    x, out = step.x[0], step.out[0]
    head = (f'<section class="layer" id="forward-{esc(layer.name)}"><h3>{esc(layer.name)} '
            f'({type(layer).__name__})</h3><p class="eq">{esc(step.note)}</p>'
            f'<p class="shapes">{tuple(step.x.shape)} &rarr; {tuple(step.out.shape)}</p>')
    figs = []
    if isinstance(layer, Conv2D):
        ctx.data[layer.name] = conv_data(layer, x)
        figs.append(maps_figure(f"output: {layer.activation.name}(z), all {out.shape[-1]} "
                                f"channels", out, attrs=f' data-conv="{esc(layer.name)}"'))
        i, j, f = (int(k) for k in np.unravel_index(int(np.argmax(out)), out.shape))
        figs.append(f'<div class="probe" id="probe-{esc(layer.name)}"><p class="hint">Hover '
                    f"(or click) a pixel of the maps to see the window and the filter that made "
                    f"it. Worked example, the largest output pixel:</p>"
                    f'<div class="probe-body">{probe_html(layer, x, i, j, f)}</div></div>')
    elif isinstance(layer, Dense) and layer.activation.name == "softmax":
        label = ctx.info.label
        figs.append(bars_figure("z (logits)", step.z[0], ctx.names, highlight=label))
        figs.append(bars_figure("output: softmax probabilities p", out, ctx.names,
                                signed=False, highlight=label, fixed_top=1.0))
    elif isinstance(layer, Dropout):
        rows = ctx.rows.get(out.size)
        figs.append(tensor_figure("output: input * mask", out, rows=rows))
        figs.append(tensor_figure(f"mask: 0 (dropped) or {1 / (1 - layer.rate):.4g} (kept)",
                                  step.mask[0], signed=False, rows=rows))
    elif isinstance(layer, Flatten) and x.ndim == 3:
        ctx.rows[out.size] = x.shape[0]
        figs.append(strip_figure(f"output, {x.shape[0]} rows (one per image row) of "
                                 f"{x.shape[1]} x {x.shape[2]} values", out, rows=x.shape[0]))
    else:
        title = f"output: {layer.activation.name}(z)" if isinstance(layer, Dense) else "output"
        figs.append(tensor_figure(title, out, rows=ctx.rows.get(out.size)))
    return head + f'<div class="figs">{"".join(figs)}</div></section>'


def backward_section(step, check, ctx: _Context, is_last: bool) -> str:
    layer = step.layer
    names = ctx.names if is_last else None  # only the output layer's vectors are per class

    def fig(title, a):
        return tensor_figure(title, a, names, signed=True, rows=ctx.rows.get(a.size))

    rows = "".join(f"<tr><td>{esc(r.what)}</td><td>{esc(_shape(r.shape))}</td>"
                   f"<td>{esc(r.norm)}</td><td>{esc(r.note)}</td></tr>" for r in step.rows)
    head = (f'<section class="layer" id="backward-{esc(layer.name)}"><h3>{esc(layer.name)} '
            f'({type(layer).__name__})</h3><table class="rows"><tr><th>gradient</th>'
            f"<th>shape</th><th>norm</th><th></th></tr>{rows}</table>")
    figs = []
    if is_last:
        figs.append(fig("dL/dz arriving from the loss: (p - y) / N", step.dout[0]))
    else:
        figs.append(fig("dL/dout arriving", step.dout[0]))
        if step.dz is not None and layer.activation.name != "linear":
            figs.append(fig(f"dL/dz = dL/dout * {layer.activation.name}'(z)", step.dz[0]))
    if isinstance(layer, Conv2D):
        figs.append(f'<div class="side">{kernel_figure("filters W", layer.params["kernel"])}'
                    f'{kernel_figure("dL/dW, beside them", step.grads["kernel"])}</div>')
    elif isinstance(layer, Dense):
        d, k = step.grads["kernel"].shape
        note = ("; one digit, so dL/dW = x^T . dL/dz is an outer product: row k is x times "
                "dL/dz_k" if step.x.shape[0] == 1 else "")
        figs.append(matrix_figure(f"dL/dW, transposed: {k} rows (outputs) of {d:,} (inputs)"
                                  f"{note}", step.grads["kernel"].T))
    if "bias" in step.grads:
        figs.append(fig("dL/db", step.grads["bias"]))
    if step.dx is not None:
        figs.append(fig("dL/dx handed down", step.dx[0]))
    return head + f'<div class="figs">{"".join(figs)}</div>{_check_line(check)}</section>'


def _class_name(k, class_names) -> str:
    """'3' for a digit, '9 (Ankle boot)' for a named class."""
    name = class_names[k] if k < len(class_names) else str(k)
    return str(k) if name == str(k) else f"{k} ({name})"


def _shape(shape) -> str:
    return shape if isinstance(shape, str) else str(tuple(shape))


def page(walk, checks, info: PageInfo) -> str:
    """The whole page for a walk of one image (walk.steps[i].x has batch axis 1); checks[i] is
    layer i's checked gradient or None."""
    steps = walk.steps
    if steps[0].x.shape[0] != 1:
        raise ValueError(f"page draws one image; the walk has {steps[0].x.shape[0]}.")
    ctx = _Context(info, [_class_name(k, info.class_names) for k in range(walk.p.shape[-1])],
                   {}, {})
    p = walk.p[0]
    guess = int(np.argmax(p))
    forward = "".join(forward_section(s, ctx) for s in steps)  # fills ctx.rows, ctx.data
    backward = "".join(backward_section(s, c, ctx, i == len(steps) - 1)
                       for i, (s, c) in reversed(list(enumerate(zip(steps, checks)))))
    toc = " ".join(f'<a href="#forward-{esc(s.layer.name)}">{esc(s.layer.name)}</a>'
                   for s in steps)
    toc_back = " ".join(f'<a href="#backward-{esc(s.layer.name)}">{esc(s.layer.name)}</a>'
                        for s in reversed(steps))
    title = f"minicnn explain: {info.title.lower()}, {info.dataset} training image {info.digit}"
    body = f"""
<header>
<h1>Backprop, one digit at a time</h1>
<p>{esc(info.title)}, {info.parameters:,} parameters, {esc(info.where)}; training image
{info.digit} of {esc(info.data)}, label {esc(ctx.names[info.label])}. One training step in
float64, training mode (dropout on, masks fixed by seed {info.seed}), layer by layer on the
{esc(info.backend)} backend. Prediction: class {esc(ctx.names[guess])} with p = {p[guess]:.3f};
the true class has p = {p[info.label]:.3f}; loss {walk.loss:.4f}.</p>
<p class="hint">Colours: maps of values &ge; 0 run white (0) to black (the largest value); maps
with negative values and all gradients run blue (&minus;m) through white (0) to red (+m), m the
largest |value| in that picture (in its legend). Each picture has its own scale. Under each
title: shape, Frobenius norm, share of exact zeros, range. Made by <code>minicnn explain
--html</code>.</p>
<nav><b>Forward:</b> <a href="#input">input</a> {toc} <a href="#loss">loss</a><br>
<b>Backward:</b> {toc_back}</nav>
</header>
<h2 id="forward">Forward: each layer turns its input into its output</h2>
<section class="layer" id="input"><h3>input</h3><p class="eq">pixels / 255, in [0, 1]</p>
<div class="figs">{maps_figure("the digit", steps[0].x[0])}</div></section>
{forward}
<section class="layer" id="loss"><h3>loss</h3>
<p class="eq">crossentropy = -log p[true class] = -log {p[info.label]:.4g} = {walk.loss:.4f};
a guess at random gives -log(1/10) = {np.log(10):.4f}</p></section>
<h2 id="backward">Backward: the chain rule, last layer first</h2>
<p>Each layer gets dL/d(its output), fills dL/dW and dL/db from it, and hands dL/d(its input)
to the layer before it, whose dL/dout it is. Norms are Frobenius norms; '% are 0' counts exact
zeros. The loss + softmax gives dL/dz = (p - y) / N, N = 1.</p>
{backward}
<p>An optimizer step would now move every W and b against its gradient (Adam:
w -= alpha * m / (sqrt(v) + eps)).</p>
"""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}"
            f'<script type="application/json" id="conv-data">{json.dumps(ctx.data)}</script>'
            f"<script>{SCRIPT}</script></body></html>\n")


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1180px; margin: 0 auto;
       padding: 0 16px 48px; color: #222; background: #fff; }
h1 { margin: 18px 0 6px; } h2 { margin-top: 36px; border-bottom: 2px solid #ccc; }
h3 { margin: 0 0 4px; font-family: ui-monospace, monospace; }
section.layer { border-top: 1px solid #ddd; padding: 12px 0; }
p.eq, p.shapes, p.check, table.rows, code { font-family: ui-monospace, monospace;
       font-size: 13px; }
p.eq { background: #f4f4f4; padding: 4px 8px; }
p.hint { color: #555; font-size: 13px; }
p.check { color: #064; }
nav a { margin-right: 6px; font-family: ui-monospace, monospace; font-size: 13px; }
.figs { display: flex; flex-wrap: wrap; gap: 14px 22px; align-items: flex-start; }
.side { display: flex; gap: 16px; }
figure { margin: 0; }
figcaption { font-size: 12.5px; margin-bottom: 3px; max-width: 460px; }
.stats { color: #666; font-family: ui-monospace, monospace; font-size: 11.5px; }
img.map { image-rendering: pixelated; display: block; border: 1px solid #bbb; }
img.smooth { image-rendering: auto; }
img[data-conv] { cursor: crosshair; }
.legend { display: flex; gap: 6px; align-items: center; font-size: 11px; color: #444;
          margin-top: 2px; }
.legend .bar { display: inline-block; width: 120px; height: 9px; border: 1px solid #bbb; }
svg.bars .axis { stroke: #888; } svg.bars .pos { fill: #c0392b; }
svg.bars .neg { fill: #2e6fb0; } svg.bars .hi { fill: #e67e22; }
svg.bars text { font: 10px sans-serif; text-anchor: middle; fill: #333; }
table.rows { border-collapse: collapse; margin: 6px 0 10px; }
table.rows td, table.rows th { padding: 1px 10px 1px 0; text-align: left; }
.probe { max-width: 560px; font-size: 13px; background: #fafafa; border: 1px solid #ddd;
         padding: 6px 10px; }
.pairs { display: flex; flex-wrap: wrap; gap: 10px; }
.pair { display: flex; gap: 8px; align-items: flex-end; font-size: 12px; }
table.nums { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 11px; }
table.nums td { border: 1px solid #ccc; padding: 1px 4px; text-align: right; }
"""

# The hover script. It reads the conv layers' inputs and weights from #conv-data (float32,
# base64), finds the tile and pixel under the pointer from the mosaic geometry on the <img>
# (tile t at row t // cols, column t % cols, 1 px gaps: pictures.mosaic), and rebuilds the
# probe_html() markup for that pixel.
SCRIPT = r"""
(function () {
  "use strict";
  function floats(b64) {
    var s = atob(b64), bytes = new Uint8Array(s.length);
    for (var k = 0; k < s.length; k++) bytes[k] = s.charCodeAt(k);
    return new Float32Array(bytes.buffer);
  }
  function g(v) { return Number(v.toPrecision(4)).toString(); }
  function cell(v) { return "<td>" + Number(v.toPrecision(3)).toString() + "</td>"; }
  function grid(rows) {
    return '<table class="nums">' + rows.map(function (r) {
      return "<tr>" + r.map(cell).join("") + "</tr>"; }).join("") + "</table>";
  }
  var ACT = { relu: function (z) { return Math.max(z, 0); },
              sigmoid: function (z) { return 1 / (1 + Math.exp(-z)); },
              tanh: Math.tanh, linear: function (z) { return z; } };
  var data = JSON.parse(document.getElementById("conv-data").textContent);
  Object.keys(data).forEach(function (name) {
    var d = data[name];
    d.xs = floats(d.x); d.ws = floats(d.w); d.bs = floats(d.b);
  });
  function probe(name, d, i, j, f) {
    var C = d.C, win = [], filt = [], perC = new Array(C).fill(0), c, p, q;
    for (c = 0; c < C; c++) { win.push([]); filt.push([]); }
    for (p = 0; p < d.KH; p++) {
      for (c = 0; c < C; c++) { win[c].push([]); filt[c].push([]); }
      for (q = 0; q < d.KW; q++) {
        var r = i * d.sh - d.pt + p, s = j * d.sw - d.pl + q, inside =
            r >= 0 && r < d.H && s >= 0 && s < d.W;
        for (c = 0; c < C; c++) {
          var xv = inside ? d.xs[(r * d.W + s) * C + c] : 0;
          var wv = d.ws[((p * d.KW + q) * C + c) * d.F + f];
          win[c][p].push(xv); filt[c][p].push(wv); perC[c] += xv * wv;
        }
      }
    }
    var total = perC.reduce(function (a, b) { return a + b; }, 0), b = d.bs[f], z = total + b;
    var act = ACT[d.act] || ACT.linear;
    var order = perC.map(function (v, k) { return k; }).sort(function (a, b2) {
      return Math.abs(perC[b2]) - Math.abs(perC[a]) || a - b2; }).slice(0, d.probeChannels);
    var shownSum = order.reduce(function (a, k) { return a + perC[k]; }, 0);
    var rest = C > order.length ? "; the " + order.length + " channels shown give " +
        g(shownSum) + ", the other " + (C - order.length) + " give " + g(total - shownSum) : "";
    var cells = order.map(function (k) {
      return '<div class="pair"><div>window, channel ' + k + grid(win[k]) + "</div><div>filter " +
        f + ", channel " + k + grid(filt[k]) + "</div><div>sum of products: " + g(perC[k]) +
        "</div></div>";
    }).join("");
    return '<p class="probe-head">' + name + ", filter " + f + ", output pixel (" + i + ", " +
      j + "): z = sum over " + C + " channel(s) of window . filter + b = " + g(total) + " + " +
      g(b) + " = <b>" + g(z) + "</b>, " + d.act + "(z) = <b>" + g(act(z)) + "</b>" + rest +
      '</p><div class="pairs">' + cells + "</div>";
  }
  document.querySelectorAll("img[data-conv]").forEach(function (img) {
    var name = img.getAttribute("data-conv"), d = data[name];
    var th = +img.dataset.tileH, tw = +img.dataset.tileW, cols = +img.dataset.cols;
    var body = document.querySelector("#probe-" + CSS.escape(name) + " .probe-body");
    var hint = document.querySelector("#probe-" + CSS.escape(name) + " .hint");
    function show(ev) {
      var box = img.getBoundingClientRect();
      var nx = Math.floor((ev.clientX - box.left - img.clientLeft) * img.naturalWidth /
                          img.clientWidth);
      var ny = Math.floor((ev.clientY - box.top - img.clientTop) * img.naturalHeight /
                          img.clientHeight);
      var col = Math.floor(nx / (tw + 1)), row = Math.floor(ny / (th + 1));
      var j = nx - col * (tw + 1), i = ny - row * (th + 1), f = row * cols + col;
      if (nx < 0 || ny < 0 || col >= cols || i >= th || j >= tw || f >= d.F) return;
      body.innerHTML = probe(name, d, i, j, f);
      hint.textContent = "Filter " + f + ", pixel (" + i + ", " + j + "), worked out in " +
        "your browser from the embedded input and weights:";
    }
    img.addEventListener("mousemove", show);
    img.addEventListener("click", show);
  });
})();
"""
