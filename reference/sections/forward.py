"""Forward, inference mode: the same batch through both models, every layer's output compared."""

from __future__ import annotations

from reference import tolerances
from reference._keras import to_numpy
from reference.case import Case
from reference.report import Row, compare
from reference.twin import run_layers


def forward_rows(case: Case, kmodel, section: str = "forward") -> list[Row]:
    """One row per layer output (each library feeding its own previous output, so errors
    accumulate as in real use), plus the model's own forward (minicnn's execution units, which
    a backend may fuse).

    Shapes: case.x (N, *input_shape); each row compares (N, *output_shape_i).
    """
    tol = tolerances.FORWARD
    kouts = run_layers(kmodel, case.x, training=False)
    rows, h = [], case.x
    for layer, kout in zip(case.model.layers, kouts, strict=True):
        h = layer.forward(h, training=False)
        rows.append(compare(section, f"{layer.name} output", h, to_numpy(kout), tol))
    out = case.model.forward(case.x, training=False)
    rows.append(compare(section, "model output (model.forward)", out, to_numpy(kouts[-1]), tol))
    return rows
