"""Batch normalisation in Numba: the compiled twin of the NumPy functions in layers/batchnorm.py.

Inputs are channels-last activations seen as a matrix x (M, C): M = N*H*W rows for NHWC (N for
(N, C)), one column per channel. Every statistic is per column, so the kernels split the
channels into one contiguous block per thread: thread t reads and writes only the columns of
its block (and the (C,) entries of its block), and no two threads write the same memory. Each
thread walks the rows in order, so it reads its part of every row contiguously.

Sums accumulate in float64 (M reaches ~10^5 for a conv activation; a float32 running sum would
lose digits), as the NumPy twin does; results are cast back to x's dtype.

    forward_train(x, gamma, beta, eps)           -> out, mean, var     (batch statistics)
    forward_infer(x, scale, shift)               -> out = x * scale + shift
    backward(dout, x, gamma, mean, inv, training) -> dx, dgamma, dbeta
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.numba_config import JIT
from minicnn.kernels.numba_threads import run_chunks


@njit(**JIT)
def _forward_train(x, gamma, beta, eps, out, mean, var, t, lo, hi):
    """Shapes: x, out (M, C); gamma, beta, mean, var (C,); filled in place for the channels
    lo..hi-1 (chunk t), whose writes (those columns of out, those entries of mean and var)
    are disjoint from every other chunk's."""
    M = x.shape[0]
    n = hi - lo
    # views indexed from 0: Numba drops its negative-index checks and the loops vectorise
    g, b = gamma[lo:hi], beta[lo:hi]
    s = np.zeros(n)  # float64 accumulators, one per channel of the block
    for m in range(M):
        xr = x[m, lo:hi]
        for c in range(n):
            s[c] += xr[c]
    mu = s / M
    s[:] = 0.0
    for m in range(M):
        xr = x[m, lo:hi]
        for c in range(n):
            d = xr[c] - mu[c]
            s[c] += d * d
    for c in range(n):
        v = s[c] / M  # biased (divide by M), as tf.nn.moments
        mean[lo + c] = mu[c]
        var[lo + c] = v
        s[c] = 1.0 / np.sqrt(v + eps)  # s now holds 1 / sqrt(var + eps)
    for m in range(M):
        xr, orow = x[m, lo:hi], out[m, lo:hi]
        for c in range(n):
            orow[c] = g[c] * ((xr[c] - mu[c]) * s[c]) + b[c]


@njit(**JIT)
def _forward_infer(x, scale, shift, out, t, lo, hi):
    """out = x * scale + shift for the channels lo..hi-1 (chunk t: only those columns of out).
    Shapes: x, out (M, C); scale, shift (C,)."""
    M = x.shape[0]
    a, b = scale[lo:hi], shift[lo:hi]
    for m in range(M):
        xr, orow = x[m, lo:hi], out[m, lo:hi]
        for c in range(hi - lo):
            orow[c] = xr[c] * a[c] + b[c]


@njit(**JIT)
def _backward(dout, x, gamma, mean, inv, training, dx, dgamma, dbeta, t, lo, hi):
    """Shapes: dout, x, dx (M, C); gamma, mean, inv, dgamma, dbeta (C,); filled in place for
    the channels lo..hi-1 (chunk t: those columns of dx and entries of dgamma and dbeta only).

    training: dx = gamma * inv / M * (M * dout - dbeta - xhat * dgamma)   (batch statistics)
    else:     dx = gamma * inv * dout                                   (fixed statistics)
    """
    M = x.shape[0]
    n = hi - lo
    mu, iv, g = mean[lo:hi], inv[lo:hi], gamma[lo:hi]
    sb = np.zeros(n)
    sg = np.zeros(n)
    for m in range(M):
        xr, dr = x[m, lo:hi], dout[m, lo:hi]
        for c in range(n):
            sb[c] += dr[c]
            sg[c] += dr[c] * ((xr[c] - mu[c]) * iv[c])
    for c in range(n):
        dbeta[lo + c] = sb[c]
        dgamma[lo + c] = sg[c]
    k = g * iv  # gamma / sqrt(var + eps), per channel of the block
    for m in range(M):
        xr, dr, dxr = x[m, lo:hi], dout[m, lo:hi], dx[m, lo:hi]
        if training:
            for c in range(n):
                xhat = (xr[c] - mu[c]) * iv[c]
                dxr[c] = k[c] / M * (M * dr[c] - sb[c] - xhat * sg[c])
        else:
            for c in range(n):
                dxr[c] = dr[c] * k[c]


def _as(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype)


def forward_train(x, gamma, beta, eps):
    """Normalise with the batch's own statistics.

    Shapes: x (M, C), gamma, beta (C,) -> out (M, C), mean (C,), var (C,) (biased variance).
    out = gamma * (x - mean) / sqrt(var + eps) + beta.
    """
    x = _as(x, x.dtype)
    M, C = x.shape
    out = np.empty_like(x)
    mean = np.empty(C, x.dtype)
    var = np.empty(C, x.dtype)
    if M:
        run_chunks(_forward_train, C, x, _as(gamma, x.dtype), _as(beta, x.dtype), float(eps),
                   out, mean, var)
    return out, mean, var


def forward_infer(x, scale, shift):
    """out = x * scale + shift.  Shapes: x (M, C), scale, shift (C,) -> out (M, C)."""
    x = _as(x, x.dtype)
    out = np.empty_like(x)
    if x.size:
        run_chunks(_forward_infer, x.shape[1], x, _as(scale, x.dtype), _as(shift, x.dtype), out)
    return out


def backward(dout, x, gamma, mean, inv, training):
    """Gradients of batch normalisation.

    Shapes: dout, x (M, C); gamma, mean, inv (C,) -> dx (M, C), dgamma (C,), dbeta (C,).
    """
    x = _as(x, x.dtype)
    dout = _as(dout, x.dtype)
    M, C = x.shape
    dx = np.empty_like(x)
    dgamma = np.zeros(C, x.dtype)
    dbeta = np.zeros(C, x.dtype)
    if M:
        run_chunks(_backward, C, dout, x, _as(gamma, x.dtype), _as(mean, x.dtype),
                   _as(inv, x.dtype), bool(training), dx, dgamma, dbeta)
    return dx, dgamma, dbeta
