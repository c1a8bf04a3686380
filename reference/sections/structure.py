"""Structure: the weights survive minicnn -> Keras -> minicnn untouched, and model.summary()
prints what Keras's prints (same rows, shapes and parameter counts)."""

from __future__ import annotations

import re

import numpy as np

from minicnn.model import Sequential
from minicnn.summary import WIDTHS
from reference import tolerances
from reference.report import Row, compare_many
from reference.twin import from_keras, to_keras

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def keras_summary_lines(kmodel) -> list[str]:
    """Keras's summary text at minicnn's table width (76 columns: an 80-column terminal)."""
    captured = []
    kmodel.summary(line_length=sum(WIDTHS) + len(WIDTHS) + 1, print_fn=captured.append)
    text = _ANSI.sub("", "\n".join(captured))
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def minicnn_summary_lines(model: Sequential) -> list[str]:
    lines = []
    model.summary(print_fn=lines.append)
    return [line.rstrip() for line in lines if line.strip()]


_TOTAL = re.compile(r" Total params: ([\d,]+) \(([\d.]+) (\w+)\)$")


def _counter_width_only(pairs) -> bool:
    """True when the lines differ only as BACKEND_DIFFERENCES['optimizer-iterations'] says:
    the Total params line, same count, bytes 0.01 apart (4 bytes, rounded to two decimals)."""
    for a, b in pairs:
        ma, mb = _TOTAL.match(a), _TOTAL.match(b)
        if not (ma and mb and ma[1] == mb[1] and ma[3] == mb[3]):
            return False
        if abs(float(ma[2]) - float(mb[2])) > 0.0101:
            return False
    return True


def _text_row(section: str, tensor: str, ours: list[str], theirs: list[str], counter=False):
    """counter: the optimizer's step counter is int32 in Keras on this backend (JAX, PyTorch)
    and int64 in minicnn, as in Keras on TensorFlow; accept exactly that difference."""
    n = max(len(ours), len(theirs))
    ours_p, theirs_p = ours + [""] * (n - len(ours)), theirs + [""] * (n - len(theirs))
    pairs = [(a, b) for a, b in zip(ours_p, theirs_p) if a != b]
    diffs = [f"- minicnn: {a}\n+ keras:   {b}" for a, b in pairs]
    known = "optimizer-iterations" if counter and pairs and _counter_width_only(pairs) else ""
    row = Row(
        section,
        tensor,
        f"({n} lines)",
        float(len(diffs)),
        len(diffs) / n,
        tolerances.EXACT,
        not diffs or bool(known),
        f"{pairs[0][0].strip()} vs {pairs[0][1].split('(')[-1].rstrip(')')}" if known else "",
        known,
    )
    return row, diffs


def summary_row(model: Sequential, section: str = "structure") -> tuple[Row, list[str]]:
    """One row: max abs = number of lines that differ from Keras's summary (tolerance 0).

    Returns the row and the differing line pairs (empty when identical).
    """
    return _text_row(
        section,
        "model.summary() lines differing from Keras",
        minicnn_summary_lines(model),
        keras_summary_lines(to_keras(model, dropout="keras")),
    )


def trained_summary_row(model: Sequential, section: str = "structure") -> tuple[Row, list[str]]:
    """The same after one Adam step in each library, when both add 'Optimizer params'.

    Works on copies: ``model`` itself is not trained.
    """
    ours = from_keras(to_keras(model))  # a minicnn copy with the same layer names
    theirs = to_keras(model, dropout="keras")
    rng = np.random.default_rng(0)
    x = rng.random((2, *model.input_shape), dtype=np.float32)
    k = model.output_shapes()[-1][-1]
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, 2)]
    ours.compile(loss="categorical_crossentropy", optimizer="adam")
    theirs.compile(loss="categorical_crossentropy", optimizer="adam")
    ours.train_on_batch(x, y)
    theirs.train_on_batch(x, y)
    return _text_row(
        section,
        "model.summary() after one Adam step",
        minicnn_summary_lines(ours),
        keras_summary_lines(theirs),
        counter=theirs.optimizer.iterations.dtype != "int64",
    )


def roundtrip_row(model: Sequential, section: str = "structure") -> Row:
    """to_keras then from_keras must give back every weight bit for bit."""
    back = from_keras(to_keras(model))
    return compare_many(
        section,
        "weights minicnn -> keras -> minicnn",
        back.get_weights(),
        [np.asarray(w) for w in model.get_weights()],
        tolerances.EXACT,
    )
