"""Backend facts: small probes of what Keras computes on this backend, where the backends could
compute differently (issue 16's candidates). ``minicnn parity --keras-backend all`` prints them
side by side, one column per backend; the README's "where Keras's backends differ" quotes them.

Each probe is a number or a short phrase measured here, not a reading of the source:

    crossentropy, confidently wrong   loss and dL/dz of a sample whose target has p = 2e-9
    crossentropy, sigmoid output      which form the loss takes: softmax of the logits, or
                                      the clipped p / sum(p)
    'same' padding                    where the odd row/column goes, conv and max-pool
    max-pool ties                     which input of a tied window receives the gradient
    dropout scaling                   kept units as x * (1 / (1 - rate)) or x / (1 - rate)
    Adam                              epsilon-hat or textbook; moments bit-identical to minicnn
    float32 accumulation              error of a dense and a conv output against float64
"""

from __future__ import annotations

import numpy as np

from minicnn import optimizers as mopt
from reference._keras import keras, ops, to_numpy
from reference.autodiff import value_and_grad
from reference.sections.optimizer import OptimizerCase, run_keras, run_minicnn

EPS = 1e-7  # keras.config.epsilon()


def _cce(y, p):
    return keras.losses.CategoricalCrossentropy()(ops.convert_to_tensor(y), p)


def confidently_wrong() -> dict:
    """One sample, logits (0, 20, 0, ..., 0), target class 0: p_0 = e^-20 / (1 + ...) = 2e-9.
    From the logits: loss 20.0 and dL/dz_0 = p_0 - 1 = -1. Clipped to 1e-7: loss
    -log(1e-7) = 16.1 and dL/dz_0 = 0, since the clip passes no gradient below 1e-7: the
    confidently wrong sample stops teaching."""
    z = np.zeros((1, 10), dtype=np.float32)
    z[0, 1] = 20.0
    y = np.eye(10, dtype=np.float32)[:1]
    loss, (dz,) = value_and_grad(lambda a: _cce(y, ops.softmax(a[0])), [z])
    form = "logits" if loss > 17 else "clipped"
    return {
        "value": f"{form}: loss {loss:.2f}, dL/dz0 {dz[0, 0] + 0:.2g}",
        "form": form,
        "loss": loss,
        "dz0": float(dz[0, 0]),
    }


def sigmoid_output() -> dict:
    """A sigmoid output (Keras's own Dense(activation='sigmoid')) with crossentropy."""
    z = np.array([[0.5, -1.0, 2.0, 0.0]], dtype=np.float32)
    y = np.array([[0, 0, 1, 0]], dtype=np.float32)
    loss = float(to_numpy(_cce(y, keras.activations.sigmoid(ops.convert_to_tensor(z)))))
    z64 = z.astype(np.float64)
    softmax_form = float(-(z64[0, 2] - np.log(np.exp(z64).sum())))
    s = 1 / (1 + np.exp(-z64))
    clipped_form = float(-np.log(s[0, 2] / s.sum()))
    form = "softmax of logits" if abs(loss - softmax_form) < 1e-5 else "clipped p/sum(p)"
    return {
        "value": f"{form}: loss {loss:.4f}",
        "form": form,
        "loss": loss,
        "softmax_form": softmax_form,
        "clipped_form": clipped_form,
    }


def same_padding() -> dict:
    """x = 1..16 on a 4x4 grid; 2x2 ones kernel and 2x2 max-pool, stride 1, 'same'. The first
    output is 1+2+5+6 = 14 (max 6) when the odd padding row/column is at the bottom/right,
    1 (max 1) when it is at the top/left."""
    x = ops.convert_to_tensor(np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1))
    conv = float(to_numpy(ops.conv(x, ops.ones((2, 2, 1, 1)), 1, padding="same"))[0, 0, 0, 0])
    pool = float(to_numpy(ops.max_pool(x, 2, 1, padding="same"))[0, 0, 0, 0])
    conv_side = {14.0: "bottom/right", 1.0: "top/left"}.get(conv, f"first output {conv:g}")
    pool_side = {6.0: "bottom/right", 1.0: "top/left"}.get(pool, f"first output {pool:g}")
    return {"value": f"conv {conv_side}, pool {pool_side}", "conv_first": conv, "pool_first": pool}


def pool_ties() -> dict:
    """The gradient of max_pool over one window of four equal values."""
    x = np.ones((1, 2, 2, 1), dtype=np.float32)
    _, (dx,) = value_and_grad(lambda a: ops.sum(ops.max_pool(a[0], 2, 2)), [x])
    g = dx.reshape(4)
    names = {(1, 0, 0, 0): "first (row-major)", (0, 0, 0, 1): "last"}
    value = names.get(tuple(g.tolist()), "split " + " ".join(f"{v:g}" for v in g))
    return {"value": value, "gradient": g.tolist()}


def dropout_scaling(rate: float = 0.25, n: int = 100_000) -> dict:
    """keras.layers.Dropout(rate) in training mode on values in [0.5, 1.5), without and with a
    seed; the kept units compared bit for bit with both ways of scaling them, which differ
    by one ulp in about a third of the entries."""
    x = np.random.default_rng(0).random(n, dtype=np.float32) + np.float32(0.5)
    mul = x * np.float32(1 / (1 - rate))
    div = x / np.float32(1 - rate)
    forms = {}
    for label, seed in (("unseeded", None), ("seeded", 1)):
        layer = keras.layers.Dropout(rate, seed=seed)
        out = to_numpy(layer(ops.convert_to_tensor(x), training=True))
        kept = out != 0
        if np.array_equal(out[kept], mul[kept]):
            forms[label] = "x*(1/(1-r))"
        elif np.array_equal(out[kept], div[kept]):
            forms[label] = "x/(1-r)"
        else:
            forms[label] = "neither"
    value = (
        forms["unseeded"]
        if forms["unseeded"] == forms["seeded"]
        else f"{forms['unseeded']}; seed=: {forms['seeded']}"
    )
    return {
        "value": value,
        **forms,
        "forms_differ_fraction": float(np.mean(mul != div)),
        "forms_differ_max_rel": float(np.max(np.abs(mul - div) / np.abs(div))),
        "rate": rate,
    }


def adam() -> dict:
    """Two steps of g = 1.25e-9 from w = 3 (epsilon-hat gives 2.9999990, the textbook form
    2.9999751), and ten steps of N(0, 0.01^2) gradients on 10,000 weights compared with
    minicnn's Adam (Keras's update_step order): entries that differ, and max rel = max |diff|
    / max |keras| as the optimizer rows."""
    opt = keras.optimizers.Adam()
    w = keras.Variable(np.float32(3.0))
    for _ in range(2):
        opt.apply_gradients([(ops.convert_to_tensor(np.float32(1.25e-9)), w)])
    w2 = float(to_numpy(w))
    form = {"2.9999990": "epsilon-hat", "2.9999751": "textbook"}.get(f"{w2:.7f}", f"{w2:.7f}")
    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal(10_000).astype(np.float32) * np.float32(0.05)]
    grads = [[(rng.standard_normal(10_000) * 0.01).astype(np.float32)] for _ in range(10)]
    case = OptimizerCase("Adam", mopt.Adam, keras.optimizers.Adam, 10, 0.01, ("m", "v"))
    mw, ms = run_minicnn(case, w0, grads)
    kw, ks = run_keras(case, w0, grads)
    pairs = {"m": (ms["m"][0], ks["m"][0]), "v": (ms["v"][0], ks["v"][0]), "w": (mw[0], kw[0])}
    diff = {k: int(np.sum(a != b)) for k, (a, b) in pairs.items()}
    rel = {k: float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for k, (a, b) in pairs.items()}
    same = all(v == 0 for v in diff.values())
    value = form + (
        ", as minicnn bit for bit"
        if same
        else f", not bit for bit: max rel m {rel['m']:.0e}, w {rel['w']:.0e}"
    )
    return {
        "value": value,
        "w_after_two_tiny_steps": w2,
        "entries_differing_of_10000": diff,
        "max_rel": rel,
    }


def accumulation(seed: int = 0) -> dict:
    """float32 error against float64 of the seed model's two big sums: Dense(10) on 5,408
    inputs and Conv2D(32, 3x3) on 28x28x1, batch 32; max |out - exact| / max |exact|."""
    rng = np.random.default_rng(seed)
    xd = rng.random((32, 5408), dtype=np.float32)
    wd = (rng.standard_normal((5408, 10)) * 0.03).astype(np.float32)
    xc = rng.random((32, 28, 28, 1), dtype=np.float32)
    wc = (rng.standard_normal((3, 3, 1, 32)) * 0.14).astype(np.float32)
    dense = to_numpy(ops.matmul(ops.convert_to_tensor(xd), ops.convert_to_tensor(wd)))
    conv = to_numpy(ops.conv(ops.convert_to_tensor(xc), ops.convert_to_tensor(wc), 1))
    exact_d = xd.astype(np.float64) @ wd.astype(np.float64)
    xw = np.lib.stride_tricks.sliding_window_view(xc.astype(np.float64), (3, 3), axis=(1, 2))
    exact_c = np.einsum("nhwcij,ijcf->nhwf", xw, wc.astype(np.float64))

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    d, c = rel(dense, exact_d), rel(conv, exact_c)
    return {"value": f"dense {d:.1e}, conv {c:.1e}", "dense": d, "conv": c}


FACTS = {
    "crossentropy, confidently wrong": confidently_wrong,
    "crossentropy, sigmoid output": sigmoid_output,
    "'same' padding, odd pixel": same_padding,
    "max-pool ties, gradient to": pool_ties,
    "dropout scaling of kept units": dropout_scaling,
    "Adam": adam,
    "float32 error vs float64": accumulation,
}


def backend_facts() -> dict:
    """{label: {'value': short text, ...numbers}} for every probe (an error becomes its text)."""
    out = {}
    for label, probe in FACTS.items():
        try:
            out[label] = probe()
        except Exception as e:  # noqa: BLE001 - a fact that cannot be measured says why
            out[label] = {"value": f"error: {type(e).__name__}: {e}"[:80]}
    return out


def facts_lines(facts: dict, backend: str) -> list[str]:
    """The facts of one backend as an indented list."""
    width = max(len(k) for k in facts)
    lines = [f"What Keras computes on {backend} (reference/sections/backend_facts.py):"]
    lines += [f"  {k:<{width}}  {v['value']}" for k, v in facts.items()]
    return lines
