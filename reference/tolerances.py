"""Tolerances of the parity suite, one per regime, each a bound on

    max rel = max |minicnn - keras| / max |keras|      (over one tensor)

float32's unit roundoff is u = 2**-24 ~ 6e-8. Each value is the largest error measured on the
development machine (full run, seed and deep models, the layer zoo, every backend) times the
stated margin, rounded up; REASONS holds the one-line why that the report prints. Loosening one
needs a comment saying why.
"""

from __future__ import annotations

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
