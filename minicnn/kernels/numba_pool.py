"""Max-pooling kernels: forward with the winner of each window, backward routing to it.

Same conventions as naive.maxpool2d_forward / maxpool2d_backward: argmax is the row-major index
p*PW + q inside the window, the first maximum on ties, the first NaN if there is one; padded
pixels never win.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minicnn.kernels.numba_config import PARALLEL


@njit(**PARALLEL)
def maxpool_forward(x, PH, PW, sh, sw, pt, pl, out, argmax):
    """Shapes: x (N, H, W, C) -> out, argmax (N, Ho, Wo, C) (filled in place)."""
    N, H, W, C = x.shape
    _, Ho, Wo, _ = out.shape
    # sample n writes out[n] and argmax[n] only: disjoint across the prange
    for n in prange(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    out[n, i, j, c] = -np.inf
                    argmax[n, i, j, c] = -1
                for p in range(PH):
                    r = i * sh + p - pt
                    if r < 0 or r >= H:
                        continue
                    for q in range(PW):
                        s = j * sw + q - pl
                        if s < 0 or s >= W:
                            continue
                        for c in range(C):
                            v, best = x[n, r, s, c], out[n, i, j, c]
                            # strict '>': the first maximum stays; the first NaN wins and
                            # stays (np.max's rule: NaN propagates)
                            if v > best or (v != v and best == best):
                                out[n, i, j, c] = v
                                argmax[n, i, j, c] = p * PW + q


@njit(**PARALLEL)
def maxpool_backward(dout, argmax, PW, sh, sw, pt, pl, dx):
    """Shapes: dout, argmax (N, Ho, Wo, C) -> dx (N, H, W, C), zeroed and filled in place."""
    N, Ho, Wo, C = dout.shape
    # sample n writes dx[n] only (overlapping windows add up inside one sample): disjoint
    for n in prange(N):
        flat = dx[n].ravel()
        for e in range(flat.size):  # a loop, not dx[n] = 0: that would be a parfor of its own
            flat[e] = 0
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    k = argmax[n, i, j, c]
                    if k >= 0:
                        p = k // PW
                        dx[n, i * sh + p - pt, j * sw + k - p * PW - pl, c] += dout[n, i, j, c]
