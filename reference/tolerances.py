"""Tolerances of the parity suite, one per regime, each a bound on

    max rel = max |minicnn - keras| / max |keras|      (over one tensor)

float32's unit roundoff is u = 2**-24 ~ 6e-8. Each value is the largest error measured on the
development machine (full run, seed and deep models, the layer zoo, every backend) times the
stated margin, rounded up; REASONS holds the one-line why that the report prints. Loosening one
needs a comment saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

FORWARD = 4e-6
GRADIENT = 4e-5
OPTIMIZER = 1e-6
TRAJECTORY_LOSS = 1e-6
TRAJECTORY_WEIGHTS = 5e-4
TRAJECTORY_FLOOR_FACTOR = 100.0
EXACT = 0.0
ALPHA = 0.01

REASONS = {
    "FORWARD": "float32 sums of the same products in another order (im2col+BLAS, Numba loops "
    "vs Eigen/oneDNN); measured <= 8.5e-7 (deep conv, batch 128); margin ~5x",
    "GRADIENT": "a bias gradient sums N*H*W terms of both signs, and cancellation lifts the "
    "relative error; measured <= 7.8e-6 (deep conv bias, batch 128); margin ~5x",
    "OPTIMIZER": "the same IEEE-rounded ops in Keras's order: measured bit-identical (0); "
    "~16 ulps spare for a 1-ulp beta**t on another build",
    "TRAJECTORY_LOSS": "loss per step before training has amplified anything: a forward pass on "
    "equal weights, measured <= 1.1e-7 (1 ulp); margin ~9x",
    "TRAJECTORY_WEIGHTS": "weights over the first steps: Adam turns last-bit differences of "
    "near-zero gradients into steps of up to lr; measured <= 7e-5 (seed, step 1); margin ~7x",
    "TRAJECTORY_FLOOR_FACTOR": "later a row also passes within this factor of Keras's own "
    "divergence (1-ulp nudge, batch reversed), which grows ~10x per 10 steps: measured ratio "
    "<= 17 (deep, step 12), a lag of a few steps; each planted bug is >= 2,900x at step 1",
    "EXACT": "weight copies and the summary text must match exactly",
    "ALPHA": "statistics: a difference of means fails when Welch's t-test gives p < ALPHA",
}


def described() -> list[tuple[str, float, str]]:
    """(name, value, one-line reason) of every tolerance, for the report."""
    return [(name, globals()[name], reason) for name, reason in REASONS.items()]


# --- where Keras's own backends differ ---------------------------------------------------------
@dataclass(frozen=True)
class BackendDifference:
    """Something Keras computes differently on some backends than on TensorFlow.

    backends: where it differs from TensorFlow; measured: the difference on the development
    machine (pinned versions, reference/constraints.txt); remedy: what minicnn and the suite do
    about it; explains: a regular expression over the keys ("section | tensor") of the
    cross-backend rows of ``minicnn parity --keras-backend all`` that it accounts for.
    """

    key: str
    backends: tuple[str, ...]
    what: str
    measured: str
    remedy: str
    explains: str = ""


BACKEND_DIFFERENCES = (
    BackendDifference(
        "crossentropy",
        ("jax", "torch"),
        "categorical crossentropy on a softmax or sigmoid output: TensorFlow computes it from "
        "the output's logits, unclipped (and applies *softmax* crossentropy to a sigmoid's "
        "logits); JAX and PyTorch from p / sum(p) clipped to [1e-7, 1 - 1e-7]",
        "the zoo's sigmoid output: loss max rel 6.9e-2, gradients 0.95 (Keras on JAX or "
        "PyTorch against Keras on TensorFlow); a confidently wrong sample (p = 2e-9): loss 20.0 "
        "vs 16.1, dL/dz -1 vs 0 (it stops teaching); ordinary softmax outputs agree to "
        "rounding (every forward, gradient and trajectory row within tolerance)",
        "minicnn.losses.CategoricalCrossentropy(clip_probabilities=True) computes the clipped "
        "form; the suite uses it on JAX and PyTorch, the default (logits) on TensorFlow",
        r"sigmoid output",
    ),
    BackendDifference(
        "optimizer-iterations",
        ("jax", "torch"),
        "the optimizer's step counter is int64 on TensorFlow, int32 on JAX and PyTorch, so "
        "model.summary() after training counts 4 bytes fewer",
        "seed model: 'Total params: 163,232 (637.62 KB)' vs '(637.63 KB)'",
        "none needed (minicnn counts 8 bytes, as TensorFlow); the summary row accepts exactly "
        "this line and is marked ok*",
    ),
    BackendDifference(
        "dropout-scaling",
        ("torch",),
        "Dropout with a seed= on PyTorch divides the kept units by 1 - rate; without one, and "
        "on TensorFlow and JAX, it multiplies by the float32 1 / (1 - rate)",
        "one ulp (max rel 1.2e-7) in a third of the kept units, rate 0.25",
        "none needed: within FORWARD; the twin's MaskedDropout multiplies, as the unseeded "
        "layer the seed model uses",
    ),
    BackendDifference(
        "adam-moments",
        ("torch",),
        "Adam on PyTorch (torch._foreach) updates m = beta_1 m + (1 - beta_1) g; Keras's "
        "update_step, TensorFlow and JAX (and minicnn) m += (g - m)(1 - beta_1); likewise v",
        "10 steps: max rel m 1.6e-7, v 2.8e-7, weights 7.5e-8 (bit-identical on the others)",
        "none needed: within OPTIMIZER",
    ),
)


def backend_difference(key: str) -> BackendDifference:
    return next(d for d in BACKEND_DIFFERENCES if d.key == key)


def footer_lines(known: set[str], backends) -> list[str]:
    """The tolerances with their reasons, and the documented backend differences relied on."""
    out = ["", "Tolerances (reference/tolerances.py):"]
    out += [f"  {name:<23} {value:<6.0e} {reason}" for name, value, reason in described()]
    diffs = [
        d
        for d in BACKEND_DIFFERENCES
        if d.key in known or any(b in d.backends for b in backends)
    ]
    if diffs:
        out += ["", "Where Keras's backends differ (reference/tolerances.py, BACKEND_DIFFERENCES):"]
        for d in diffs:
            out += [
                f"  {d.key} ({', '.join(d.backends)} vs tensorflow): {d.what}",
                f"      measured: {d.measured}",
                f"      minicnn: {d.remedy}",
            ]
    return out
