"""The report's side tables as text: the trajectory's divergence step by step and the
statistical comparison. Keras-free, so that ``minicnn parity --keras-backend all``, which runs
Keras only in its child processes, can print each backend's tables from their JSON."""

from __future__ import annotations

import numpy as np

METRICS = (
    ("test accuracy", "test_accuracy"),
    ("test loss", "test_loss"),
    ("final training loss", "train_loss"),
)


def divergence_lines(extras: dict) -> list[str]:
    """A small text table: how far apart the trainings are, step by step.

    'w max rel' is the table's max rel of the weights; 'w rms rel' = ||dw|| / ||w||; the
    'floor' columns are Keras against itself (1-ulp-nudged start, batch samples reversed),
    the loss column as a running maximum.
    """
    lines = [
        f"Trajectory: {extras['steps']} steps, batch {extras['batch_size']}, same start, "
        f"batches and dropout masks. floor = Keras vs itself (weights 1 ulp apart, batch "
        f"samples reversed)",
        f"{'step':>5}  {'loss minicnn':>12}  {'loss keras':>12}  {'loss rel':>8}  "
        f"{'w max rel':>9}  {'w rms rel':>9}  {'floor loss':>10}  {'floor max':>9}  "
        f"{'floor rms':>9}",
    ]
    for d in extras["divergence"]:
        lines.append(
            f"{d['step']:>5}  {d['loss_minicnn']:>12.7f}  {d['loss_keras']:>12.7f}  "
            f"{d['loss_max_rel']:>8.1e}  {d['weights_max_rel']:>9.2e}  "
            f"{d['weights_rms_rel']:>9.2e}  {d['floor_loss_rel']:>10.1e}  "
            f"{d['floor_weights_max_rel']:>9.2e}  {d['floor_weights_rms_rel']:>9.2e}"
        )
    return lines


def statistics_lines(extras: dict) -> list[str]:
    """Side-by-side table: mean +- sd of each metric for minicnn and Keras, and Welch's p."""
    lines = [
        f"Statistical parity: {extras['model']} model, {len(extras['seeds'])} seeds "
        f"{extras['seeds']}, {extras['epochs']} epochs, batch {extras['batch_size']}, "
        f"first {extras['n_train']:,} training images; data: {extras['dataset']}",
        f"{'metric':<22}  {'minicnn mean +- sd':>20}  {'keras mean +- sd':>20}  "
        f"{'diff':>8}  {'Welch p':>7}",
    ]
    for label, key in METRICS:
        s = extras["summary"][key]
        lines.append(
            f"{label:<22}  {s['minicnn_mean']:>11.4f} +- {s['minicnn_sd']:.4f}  "
            f"{s['keras_mean']:>11.4f} +- {s['keras_sd']:.4f}  "
            f"{s['minicnn_mean'] - s['keras_mean']:>+8.4f}  {s['p']:>7.2f}"
        )
    secs = {lib: np.mean([r["fit_seconds"] for r in extras["runs"][lib]]) for lib in extras["runs"]}
    lines.append(
        f"mean fit time per run: minicnn {secs['minicnn']:.1f} s, "
        f"keras {secs['keras']:.1f} s (on this machine, for scale only)"
    )
    return lines
