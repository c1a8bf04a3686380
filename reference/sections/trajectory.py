"""Trajectory: minicnn and its Keras twin trained side by side from the same weights, on the
same batches in the same order, with the same dropout masks; the loss at every step and the
weights at checkpoints compared, so the table shows the divergence as it grows.

Training amplifies rounding: a relu that flips sign, a max-pool window whose winner changes,
and above all Adam, which divides each gradient by its own running magnitude, so that a
near-zero gradient entry whose last bits differ moves its weight by up to a whole learning
rate. How much divergence is "just rounding" is measured, not guessed: a third run trains the
Keras twin against itself, from weights nudged by one ulp and with every batch's samples in
reverse order (the same mathematics, other roundings). That is the noise floor; a row passes
when minicnn's divergence from Keras is within the fixed tolerance or within
TRAJECTORY_FLOOR_FACTOR times Keras's own divergence at that step.
"""

from __future__ import annotations

import numpy as np

from minicnn import optimizers as mopt
from minicnn.model import Sequential
from reference import tolerances
from reference._keras import keras, minicnn_loss, to_numpy
from reference.autodiff import train_step
from reference.case import injected_masks, make_keeps
from reference.report import Row, compare_many, not_recording, record
from reference.tables import divergence_lines  # noqa: F401 - re-exported
from reference.twin import to_keras


def nudge_one_ulp(weights: list, rng: np.random.Generator) -> list:
    """Each non-zero weight moved one float32 ulp up or down at random (the smallest possible
    change); zeros stay zero.

    Why not zeros: one ulp from 0 is a subnormal (1.4e-45). TensorFlow and XLA flush
    subnormals to zero, so it changes nothing there; PyTorch keeps them, and a zero bias
    nudged to +1.4e-45 turns on the relu of every blank-background pixel (z = 0 + b > 0): a
    different network, not another rounding (measured: conv bias steps of opposite sign, max
    rel 2.0, after one step).
    """
    # the direction must be in w's dtype: a float64 target would step one float64 ulp
    return [
        np.where(
            w == 0,
            w,
            np.nextafter(w, np.where(rng.random(w.shape) < 0.5, -np.inf, np.inf).astype(w.dtype)),
        )
        for w in weights
    ]


def _keras_step_fn(kmodel, optimizer):
    return train_step(kmodel, optimizer, keras.losses.CategoricalCrossentropy())


def batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    """Index arrays of `steps` mini-batches, reshuffling every pass over n samples as fit()."""
    per_epoch = n // batch_size  # full batches only: every step sees the same shapes
    if per_epoch == 0:
        raise ValueError(f"Need at least batch_size={batch_size} samples, received {n}.")
    out = []
    while len(out) < steps:
        order = rng.permutation(n)
        out += [np.sort(order[i * batch_size : (i + 1) * batch_size]) for i in range(per_epoch)]
    return out[:steps]


def trajectory(
    model: Sequential,
    x,
    y,
    steps: int,
    batch_size: int,
    checkpoints,
    seed: int = 0,
    section: str = "trajectory",
    make_twin=to_keras,
    make_minicnn_opt=mopt.Adam,
    make_keras_opt=None,
) -> tuple[list[Row], dict]:
    """Train both for `steps` steps and compare.

    Args:
        model: built minicnn model; its weights are the common start and are restored after.
        x, y: training data (N, *input_shape) float32 and (N, K) one-hot float32.
        checkpoints: steps (1-based) at which the weights are compared.
        make_twin: callable(model) -> Keras twin with model's weights copied (default
            to_keras; the suite passes a mutant's). Called twice: the twin and the floor.

    Returns:
        (rows, extras): rows for the loss and the weights at each checkpoint; extras holds the
        per-step losses and the divergence table.
    """
    make_keras_opt = make_keras_opt or keras.optimizers.Adam
    w0 = model.get_weights()
    saved = (model.loss, model.optimizer)
    kmodel = make_twin(model)
    step_fn = _keras_step_fn(kmodel, make_keras_opt())
    kfloor = make_twin(model)  # the noise floor: Keras against itself, other roundings
    kfloor.set_weights(
        nudge_one_ulp([to_numpy(w) for w in kfloor.get_weights()], np.random.default_rng(seed + 1))
    )
    floor_fn = _keras_step_fn(kfloor, make_keras_opt())
    model.compile(loss=minicnn_loss(), optimizer=make_minicnn_opt())
    rng = np.random.default_rng(seed)
    checkpoints = sorted({c for c in checkpoints if 1 <= c <= steps} | {steps})
    losses = {"minicnn": [], "keras": [], "floor": []}
    divergence, rows = [], []
    factor = tolerances.TRAJECTORY_FLOOR_FACTOR
    floor_loss = 0.0  # running maximum of Keras's own relative loss divergence
    try:
        for i, idx in enumerate(batches(len(x), batch_size, steps, rng), start=1):
            xb, yb = x[idx], y[idx]
            keeps = make_keeps(model, len(idx), rng)
            with injected_masks(model, keeps):
                loss_m = float(model.train_on_batch(xb, yb))
            loss_k = step_fn(xb, yb, keeps)
            rev = [None if k is None else k[::-1] for k in keeps]  # the same batch, reversed
            loss_f = floor_fn(xb[::-1], yb[::-1], rev)
            for key, v in (("minicnn", loss_m), ("keras", loss_k), ("floor", loss_f)):
                losses[key].append(v)
            floor_loss = max(floor_loss, abs(loss_f - loss_k) / abs(loss_k))
            if i in checkpoints:
                wm, wk = model.get_weights(), [to_numpy(w) for w in kmodel.get_weights()]
                wf = [to_numpy(w) for w in kfloor.get_weights()]
                with not_recording():  # Keras against itself: not a row of the report
                    floor_w = compare_many(section, "floor", wf, wk, 0.0).max_rel
                tol_l = max(tolerances.TRAJECTORY_LOSS, factor * floor_loss)
                tol_w = max(tolerances.TRAJECTORY_WEIGHTS, factor * floor_w)
                rel = abs(loss_m - loss_k) / abs(loss_k)
                record(section, f"loss at step {i}", np.float32(loss_k))
                rows.append(
                    Row(
                        section,
                        f"loss at step {i}",
                        "()",
                        abs(loss_m - loss_k),
                        rel,
                        tol_l,
                        rel <= tol_l,
                        f"Keras vs itself: {floor_loss:.1e}",
                    )
                )
                wrow = compare_many(
                    section,
                    f"weights after step {i}",
                    wm,
                    wk,
                    tol_w,
                    f"Keras vs itself: {floor_w:.1e}",
                )
                rows.append(wrow)
                divergence.append(
                    {
                        "step": i,
                        "loss_minicnn": loss_m,
                        "loss_keras": loss_k,
                        "loss_max_rel": rel,
                        "weights_max_abs": wrow.max_abs,
                        "weights_max_rel": wrow.max_rel,
                        "weights_rms_rel": _rms_rel(wm, wk),
                        "floor_loss_rel": floor_loss,
                        "floor_weights_max_rel": floor_w,
                        "floor_weights_rms_rel": _rms_rel(wf, wk),
                    }
                )
    finally:
        model.set_weights(w0)
        model.loss, model.optimizer = saved
    lm, lk = np.array(losses["minicnn"]), np.array(losses["keras"])
    lf = np.array(losses["floor"])
    rel = np.abs(lm - lk) / np.abs(lk)
    envelope = np.maximum.accumulate(np.abs(lf - lk) / np.abs(lk))
    tol = np.maximum(tolerances.TRAJECTORY_LOSS, factor * envelope)
    k = int(np.argmax(rel / tol))  # the step closest to failing
    rows.insert(
        0,
        Row(
            section,
            f"loss, worst of steps 1-{steps}",
            f"({steps},)",
            float(abs(lm[k] - lk[k])),
            float(rel[k]),
            float(tol[k]),
            bool(np.all(rel <= tol)),
            f"step {k + 1}; largest rel over all steps: {rel.max():.1e}",
        ),
    )
    extras = {
        "steps": steps,
        "batch_size": batch_size,
        "losses_minicnn": losses["minicnn"],
        "losses_keras": losses["keras"],
        "losses_keras_floor": losses["floor"],
        "divergence": divergence,
    }
    return rows, extras


def _rms_rel(ours: list, theirs: list) -> float:
    """||ours - theirs|| / ||theirs|| over all arrays together (the typical, not the worst)."""
    num = sum(float(np.sum((a.astype(np.float64) - b) ** 2)) for a, b in zip(ours, theirs))
    den = sum(float(np.sum(np.asarray(b, dtype=np.float64) ** 2)) for b in theirs)
    return float(np.sqrt(num / den)) if den > 0 else 0.0
