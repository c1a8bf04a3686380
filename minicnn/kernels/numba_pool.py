"""Max-pooling kernels: forward with the winner of each window, backward routing to it.

Same conventions as naive.maxpool2d_forward / maxpool2d_backward: argmax is the row-major index
p*PW + q inside the window, the first maximum on ties, the first NaN if there is one; padded
pixels never win.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.numba_config import JIT


@njit(**JIT)
def maxpool_forward(x, PH, PW, sh, sw, pt, pl, out, argmax, t, n0, n1):
    """Shapes: x (N, H, W, C) -> out, argmax (N, Ho, Wo, C), for the samples [n0, n1) (chunk t).

    Sample n writes out[n] and argmax[n] only: chunks never share memory.
    """
    _, H, W, C = x.shape
    _, Ho, Wo, _ = out.shape
    for n in range(n0, n1):
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


@njit(**JIT)
def maxpool_backward(dout, argmax, PW, sh, sw, pt, pl, dx, t, n0, n1):
    """Shapes: dout, argmax (N, Ho, Wo, C) -> dx (N, H, W, C), zeroed and filled in place, for
    the samples [n0, n1) (chunk t). Sample n writes dx[n] only (overlapping windows add up
    inside one sample): chunks never share memory.
    """
    _, Ho, Wo, C = dout.shape
    for n in range(n0, n1):
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
