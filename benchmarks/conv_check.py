"""What each pass must return, computed by a trusted kernel module in float64, and the comparison.

Outputs of a pass are a dict of named arrays:
    forward           out     (N, Ho, Wo, F)    conv(x, w) + b
    backward_input    dx      (N, H, W, C)      from dout (N, Ho, Wo, F)
    backward_weights  dw      (KH, KW, C, F)    from dout and x
    fused_forward     pooled  (N, Hp, Wp, F)    maxpool2x2(relu(conv(x, w) + b))
    fused_backward    dw, db                    gradients of sum(pooled * dpool)

The oracle is minicnn's naive loops (on a reduced twin of the shape: they run at Python speed);
the full-size results are also compared with NumPy's im2col kernels run in float64, which the
naive loops vouch for on the twin.
"""

from __future__ import annotations

import numpy as np

from benchmarks.conv_problems import POOL, Problem

# Float32 results against a float64 oracle, relative to the oracle's largest magnitude. The
# longest sums here are the weight gradient's, N*Ho*Wo = 128*26*26 ~ 87k terms: pairwise/blocked
# float32 summation errs by ~1e-6 of that, a plain running sum in one float32 register up to
# ~1e-5. 1e-4 passes any correct float32 kernel and catches every indexing bug (those err by O(1)).
CHECK_RTOL = 1e-4


def reference(pass_name: str, p: Problem, inputs: dict, kernels) -> dict:
    """The outputs of pass_name on inputs, computed in float64 by module ``kernels``.

    kernels is minicnn.kernels.naive or minicnn.kernels.numpy_ops (the same signatures).
    """
    d = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
    x, w, b = d["x"], d["w"], d["b"]
    strides, pads = p.strides, p.pads
    if pass_name == "forward":
        return {"out": kernels.conv2d_forward(x, w, b, strides, pads)}
    if pass_name == "backward_input":
        return {"dx": kernels.conv2d_backward_input(d["dout"], w, x.shape, strides, pads)}
    if pass_name == "backward_weights":
        return {"dw": kernels.conv2d_backward_weights(d["dout"], x, (p.KH, p.KW), strides, pads)}
    z = kernels.conv2d_forward(x, w, b, strides, pads)  # (N, Ho, Wo, F)
    a = np.maximum(z, 0.0)
    pooled, argmax = kernels.maxpool2d_forward(a, POOL, POOL, (0, 0, 0, 0))
    if pass_name == "fused_forward":
        return {"pooled": pooled}
    if pass_name == "fused_backward":
        da = kernels.maxpool2d_backward(d["dpool"], argmax, a.shape, POOL, POOL, (0, 0, 0, 0))
        dz = da * (z > 0)  # relu'(z); 0 at z == 0
        return {
            "dw": kernels.conv2d_backward_weights(dz, x, (p.KH, p.KW), strides, pads),
            "db": dz.sum(axis=(0, 1, 2)),
        }
    raise ValueError(f"Unknown pass {pass_name!r}.")


def compare(actual: dict, expected: dict, rtol: float = CHECK_RTOL) -> dict:
    """Max abs and rel error of every expected tensor; ok when all are within rtol.

    The relative error is taken against each tensor's largest magnitude, so entries near zero
    do not inflate it. A missing key, wrong shape or non-finite value fails the check.
    """
    worst_abs, worst_rel, problems = 0.0, 0.0, []
    for key, exp in expected.items():
        if key not in actual:
            problems.append(f"{key}: missing")
            continue
        act = np.asarray(actual[key], np.float64)
        if act.shape != exp.shape:
            problems.append(f"{key}: shape {act.shape} != {exp.shape}")
            continue
        if not np.isfinite(act).all():
            problems.append(f"{key}: non-finite values")
            continue
        err = np.abs(act - exp).max(initial=0.0)
        rel = err / max(np.abs(exp).max(initial=0.0), 1e-30)
        worst_abs, worst_rel = max(worst_abs, float(err)), max(worst_rel, float(rel))
        if rel > rtol:
            problems.append(f"{key}: max rel err {rel:.2e} > {rtol:.0e}")
    return {
        "ok": not problems,
        "max_abs_err": worst_abs,
        "max_rel_err": worst_rel,
        "rtol": rtol,
        "problems": problems,
    }
