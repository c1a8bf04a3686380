"""Which code runs: one training step, unit by unit and pass by pass, with the kernels it called.

    rows = trace_step(model, x, y)      # [(unit, pass, [kernel, ...]), ...]
    print("\n".join(format_trace(rows, backend)))

A unit is what the model executes (minicnn.fusion.plan): a layer, or a fused Conv2D(relu) ->
MaxPooling2D -> dropouts unit whose layers' own forward/backward do not run. The kernels are
the entries of the backend's table (kernels/dispatch.py) called during that pass, by module and
function; a pass that calls none runs NumPy inside the layer (Flatten's reshape, Dropout's mask,
the activations). ``minicnn explain --trace`` prints this.
"""

from __future__ import annotations

from minicnn.kernels import dispatch
from minicnn.kernels.dispatch import ops


def unit_label(unit) -> str:
    """'conv2d -> max_pooling2d -> dropout (fused: ConvReluPool)' or 'dense (Dense)'."""
    layers = getattr(unit, "layers", None)
    if layers is not None:
        return f"{' -> '.join(layer.name for layer in layers)} (fused: {type(unit).__name__})"
    return f"{unit.name} ({type(unit).__name__})"


def trace_step(model, x, y) -> list[tuple[str, str, list[str]]]:
    """Run one training step of a compiled, built model on (x, y) as fit() does, recording
    per unit and pass the table entries called. The step is applied (the weights move)."""
    rows = []
    units = model._units()
    with ops().compute_scope():
        a = x
        for unit in units:
            with dispatch.tracing() as called:
                a = unit.forward(a, training=True)
            rows.append((unit_label(unit), "forward", list(called)))
        loss, dout = model.loss_and_gradient(y, a)
        how = "from_logits: softmax + crossentropy" if model._fused_loss() else \
            "from_probabilities"
        rows.append(("loss", "both", [f"losses.{type(model.loss).__name__}.{how} (NumPy)"]))
        last = len(units) - 1
        for i in range(last, -1, -1):
            unit = units[i]
            with dispatch.tracing() as called:
                if i == last and model._fused_loss():
                    dout = unit.backward_linear(dout)  # dL/dlogits given: skip softmax's
                else:
                    dout = unit.backward(dout)
            rows.append((unit_label(unit), "backward", list(called)))
        for layer in model.layers:
            layer.add_penalty_gradients()
        with dispatch.tracing() as called:
            model.optimizer.update(*model.trainable_params())
        step = list(called) or [f"naive.{_rule(model.optimizer)} (NumPy)"]
        rows.append((f"optimizer ({type(model.optimizer).__name__})", "step", step))
    return rows


def _rule(optimizer) -> str:
    name = type(optimizer).__name__
    if name == "Adam":
        return "adam_step"
    return "sgd_momentum_step" if getattr(optimizer, "momentum", 0) else "sgd_step"


def format_trace(rows, backend: str) -> list[str]:
    """The rows as an aligned table, one line per (unit, pass)."""
    w_unit = max(len(unit) for unit, _, _ in rows)
    w_pass = max(len(p) for _, p, _ in rows)
    lines = [f"One training step on the {backend!r} backend: what ran for each unit and pass "
             f"(kernels: entries of kernels/dispatch.py's table).",
             f"  {'unit':<{w_unit}}  {'pass':<{w_pass}}  kernels"]
    for unit, what, called in rows:
        kernels = ", ".join(dict.fromkeys(called)) if called else "NumPy in the layer"
        lines.append(f"  {unit:<{w_unit}}  {what:<{w_pass}}  {kernels}")
    return lines
