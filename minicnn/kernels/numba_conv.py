"""Convolution kernels in Numba: forward and both gradients of a plain convolution.

Same conventions as naive.py (x (N, H, W, C), w (KH, KW, C, F), cross-correlation). The work is
split in two levels:

* per-sample helpers (serial) on one image (H, W, C). 3x3 stride-1 kernels, by far the most
  common, get their nine taps written out: each weight row is loaded once for four output pixels
  (forward), each output gradient once for the nine taps of a block of pixels (weight gradient),
  so the accumulators touch memory once per 4 or 8 multiply-adds. Other sizes and strides take a
  plain loop. numba_conv_pool.py reuses them for the fused conv + relu + max-pool unit.
* three chunk kernels, one per job, each taking only what it uses: conv_forward,
  conv_backward_weights, conv_backward_input. Each does the samples [n0, n1) of one chunk;
  numba_ops runs one chunk per thread (numba_threads.run_chunks). A chunk writes only its own
  samples' outputs, and weight gradients go to the chunk's own buffer, summed in a fixed order
  afterwards, so results do not depend on thread timing.

Every size comes in a ``geometry.ConvGeometry`` (``g``): no kernel computes an output size.
Padding is done per sample into a thread-local zero-bordered copy, so every helper sees a
'valid' problem. The input gradient with stride 1 is itself a convolution: of the output
gradient, zero-padded by (KH-1, KW-1), with the kernel flipped and its channel axes swapped,

    dx[r, s, c] = sum_{p, q, f} dz_pad[r + p, s + q, f] * w[KH-1-p, KW-1-q, c, f],

so it reuses the fast forward helper; strided layers scatter instead.

Numba notes: a bare literal 0 in float32 code (``v if c else 0``) makes the expression float64
and halves the vector width, hence the typed ``zero``; loops that store to one array vectorise,
loops that store to two often do not. Helpers used by the other kernel files live here; Numba's
on-disk cache does not notice edits to a callee in another file, which is why numba_config keys
the cache folder by a digest of every kernel file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.numba_config import JIT

# --- per-sample helpers: convolution ------------------------------------------------------------


# The nine taps are laid out as the 3x3 window they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _conv3x3_rows(xp, w, b, out, acc):
    """out = b + 3x3 correlation of xp with w, stride 1, four output pixels of a row per pass.

    Four pixels side by side read a 3x6 input patch and share each weight load. A row whose
    width is not a multiple of 4 ends with a pass shifted left, which recomputes (and rewrites,
    identically) a few pixels instead of needing a second code path.
    Shapes: xp (Ho+2, Wo+2, C) padded input, w (3, 3, C, F), b (F,), out (Ho, Wo, F) with
    Wo >= 4, acc (4, F).
    """
    Ho, Wo, F = out.shape
    C = xp.shape[2]
    for i in range(Ho):
        for j0 in range(0, Wo, 4):
            j = max(0, min(j0, Wo - 4))  # max: lets Numba drop negative-index checks
            for f in range(F):
                acc[0, f] = b[f]
                acc[1, f] = b[f]
                acc[2, f] = b[f]
                acc[3, f] = b[f]
            for c in range(C):
                x00, x01, x02 = xp[i, j, c], xp[i, j + 1, c], xp[i, j + 2, c]
                x03, x04, x05 = xp[i, j + 3, c], xp[i, j + 4, c], xp[i, j + 5, c]
                x10, x11, x12 = xp[i + 1, j, c], xp[i + 1, j + 1, c], xp[i + 1, j + 2, c]
                x13, x14, x15 = xp[i + 1, j + 3, c], xp[i + 1, j + 4, c], xp[i + 1, j + 5, c]
                x20, x21, x22 = xp[i + 2, j, c], xp[i + 2, j + 1, c], xp[i + 2, j + 2, c]
                x23, x24, x25 = xp[i + 2, j + 3, c], xp[i + 2, j + 4, c], xp[i + 2, j + 5, c]
                for f in range(F):  # F innermost: contiguous, vectorised
                    w00, w01, w02 = w[0, 0, c, f], w[0, 1, c, f], w[0, 2, c, f]
                    w10, w11, w12 = w[1, 0, c, f], w[1, 1, c, f], w[1, 2, c, f]
                    w20, w21, w22 = w[2, 0, c, f], w[2, 1, c, f], w[2, 2, c, f]
                    acc[0, f] += (x00 * w00 + x01 * w01 + x02 * w02 + x10 * w10 + x11 * w11
                                  + x12 * w12 + x20 * w20 + x21 * w21 + x22 * w22)
                    acc[1, f] += (x01 * w00 + x02 * w01 + x03 * w02 + x11 * w10 + x12 * w11
                                  + x13 * w12 + x21 * w20 + x22 * w21 + x23 * w22)
                    acc[2, f] += (x02 * w00 + x03 * w01 + x04 * w02 + x12 * w10 + x13 * w11
                                  + x14 * w12 + x22 * w20 + x23 * w21 + x24 * w22)
                    acc[3, f] += (x03 * w00 + x04 * w01 + x05 * w02 + x13 * w10 + x14 * w11
                                  + x15 * w12 + x23 * w20 + x24 * w21 + x25 * w22)
            for t in range(4):
                for f in range(F):
                    out[i, j + t, f] = acc[t, f]
# fmt: on


@njit(**JIT)
def _conv_any(xp, w, b, sh, sw, out, acc):
    """out = b + correlation of xp with w, any kernel size and stride.  Shapes as above."""
    Ho, Wo, F = out.shape
    KH, KW, C, _ = w.shape
    for i in range(Ho):
        for j in range(Wo):
            for f in range(F):
                acc[0, f] = b[f]
            for p in range(KH):
                for q in range(KW):
                    for c in range(C):
                        v = xp[i * sh + p, j * sw + q, c]
                        for f in range(F):
                            acc[0, f] += v * w[p, q, c, f]
            for f in range(F):
                out[i, j, f] = acc[0, f]


@njit(**JIT)
def _conv_sample(xp, w, b, sh, sw, out, acc):
    """Dispatch: the unrolled 3x3 stride-1 helper where it applies, else the general loop."""
    if w.shape[0] == 3 and w.shape[1] == 3 and sh == 1 and sw == 1 and out.shape[1] >= 4:
        _conv3x3_rows(xp, w, b, out, acc)
    else:
        _conv_any(xp, w, b, sh, sw, out, acc)


# --- per-sample helpers: gradients ------------------------------------------------------------


# The nine taps are laid out as the 3x3 window they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _dw3x3_blocks(xp, dz, dw):
    """dw += weight gradient of one sample, 3x3 kernel, stride 1, 2x4 blocks of output pixels.

    A block reads a 4x6 input patch; each of the nine taps sums eight products before touching
    dw, so dw is loaded and stored once per eight multiply-adds. The caller zero-pads dz to a
    multiple of (2, 4) and xp to match: the padding adds zeros.
    Shapes: xp (>= Ho+2, >= Wo+2, C), dz (Ho, Wo, F) with Ho % 2 == Wo % 4 == 0, dw (3, 3, C, F).
    """
    Ho, Wo, F = dz.shape
    C = xp.shape[2]
    for i in range(0, Ho, 2):
        for j in range(0, Wo, 4):
            for c in range(C):
                x00, x01, x02 = xp[i, j, c], xp[i, j + 1, c], xp[i, j + 2, c]
                x03, x04, x05 = xp[i, j + 3, c], xp[i, j + 4, c], xp[i, j + 5, c]
                x10, x11, x12 = xp[i + 1, j, c], xp[i + 1, j + 1, c], xp[i + 1, j + 2, c]
                x13, x14, x15 = xp[i + 1, j + 3, c], xp[i + 1, j + 4, c], xp[i + 1, j + 5, c]
                x20, x21, x22 = xp[i + 2, j, c], xp[i + 2, j + 1, c], xp[i + 2, j + 2, c]
                x23, x24, x25 = xp[i + 2, j + 3, c], xp[i + 2, j + 4, c], xp[i + 2, j + 5, c]
                x30, x31, x32 = xp[i + 3, j, c], xp[i + 3, j + 1, c], xp[i + 3, j + 2, c]
                x33, x34, x35 = xp[i + 3, j + 3, c], xp[i + 3, j + 4, c], xp[i + 3, j + 5, c]
                for f in range(F):
                    g0, g1, g2, g3 = dz[i, j, f], dz[i, j + 1, f], dz[i, j + 2, f], dz[i, j + 3, f]
                    h0, h1 = dz[i + 1, j, f], dz[i + 1, j + 1, f]
                    h2, h3 = dz[i + 1, j + 2, f], dz[i + 1, j + 3, f]
                    dw[0, 0, c, f] += (x00 * g0 + x01 * g1 + x02 * g2 + x03 * g3
                                       + x10 * h0 + x11 * h1 + x12 * h2 + x13 * h3)
                    dw[0, 1, c, f] += (x01 * g0 + x02 * g1 + x03 * g2 + x04 * g3
                                       + x11 * h0 + x12 * h1 + x13 * h2 + x14 * h3)
                    dw[0, 2, c, f] += (x02 * g0 + x03 * g1 + x04 * g2 + x05 * g3
                                       + x12 * h0 + x13 * h1 + x14 * h2 + x15 * h3)
                    dw[1, 0, c, f] += (x10 * g0 + x11 * g1 + x12 * g2 + x13 * g3
                                       + x20 * h0 + x21 * h1 + x22 * h2 + x23 * h3)
                    dw[1, 1, c, f] += (x11 * g0 + x12 * g1 + x13 * g2 + x14 * g3
                                       + x21 * h0 + x22 * h1 + x23 * h2 + x24 * h3)
                    dw[1, 2, c, f] += (x12 * g0 + x13 * g1 + x14 * g2 + x15 * g3
                                       + x22 * h0 + x23 * h1 + x24 * h2 + x25 * h3)
                    dw[2, 0, c, f] += (x20 * g0 + x21 * g1 + x22 * g2 + x23 * g3
                                       + x30 * h0 + x31 * h1 + x32 * h2 + x33 * h3)
                    dw[2, 1, c, f] += (x21 * g0 + x22 * g1 + x23 * g2 + x24 * g3
                                       + x31 * h0 + x32 * h1 + x33 * h2 + x34 * h3)
                    dw[2, 2, c, f] += (x22 * g0 + x23 * g1 + x24 * g2 + x25 * g3
                                       + x32 * h0 + x33 * h1 + x34 * h2 + x35 * h3)
# fmt: on


@njit(**JIT)
def _dw_any(xp, dz, Ho, Wo, sh, sw, dw):
    """dw += weight gradient of one sample from dz[:Ho, :Wo], any kernel size and stride."""
    KH, KW, C, F = dw.shape
    for i in range(Ho):
        for j in range(Wo):
            for p in range(KH):
                for q in range(KW):
                    for c in range(C):
                        v = xp[i * sh + p, j * sw + q, c]
                        for f in range(F):
                            dw[p, q, c, f] += v * dz[i, j, f]


@njit(**JIT)
def _dx_sample(dz, Ho, Wo, w_flip, w_t, zero_c, sh, sw, dzp, dxp, acc):
    """dxp (Hp, Wp, C) = input gradient of one sample from dz[:Ho, :Wo], padded coordinates.

    Stride 1: a convolution of dzp (dz zero-padded by KH-1, KW-1; its border is zero on entry)
    with w_flip (KH, KW, F, C). Other strides: each output pixel scatters dz . w into its window,
    with w_t (KH, KW, F, C) = w with the channel axes swapped, so the inner loop is contiguous.
    """
    F = dz.shape[2]
    KH, KW = w_t.shape[0], w_t.shape[1]
    C = dxp.shape[2]
    if sh == 1 and sw == 1:
        for i in range(Ho):
            for j in range(Wo):
                for f in range(F):
                    dzp[KH - 1 + i, KW - 1 + j, f] = dz[i, j, f]
        _conv_sample(dzp, w_flip, zero_c, 1, 1, dxp, acc)
        return
    flat = dxp.ravel()
    for e in range(flat.size):
        flat[e] = 0
    for i in range(Ho):
        for j in range(Wo):
            for p in range(KH):
                for q in range(KW):
                    for f in range(F):
                        g = dz[i, j, f]
                        for c in range(C):
                            dxp[i * sh + p, j * sw + q, c] += g * w_t[p, q, f, c]


# --- per-sample helpers: copies and scratch -----------------------------------------------------


@njit(**JIT)
def _into(xn, buf, pt, pl):
    """xn (H, W, C) copied into buf at offset (pt, pl); buf's other pixels stay as they are."""
    H, W, C = xn.shape
    for i in range(H):
        for j in range(W):
            for c in range(C):
                buf[pt + i, pl + j, c] = xn[i, j, c]
    return buf


@njit(**JIT)
def _crop(src, pt, pl, dst):
    """dst (H, W, C) = src[pt:pt+H, pl:pl+W]."""
    H, W, C = dst.shape
    for i in range(H):
        for j in range(W):
            for c in range(C):
                dst[i, j, c] = src[pt + i, pl + j, c]


@njit(**JIT)
def _zeros(shape, dtype):
    """np.zeros as a plain loop (in a parallel kernel np.zeros would become a parfor of its own,
    which costs compile time and buys nothing in a thread's private buffer)."""
    a = np.empty(shape, dtype)
    flat = a.ravel()
    for e in range(flat.size):
        flat[e] = 0
    return a


@njit(**JIT)
def _fill_zero(a):
    """a[...] = 0 as a plain loop (see _zeros)."""
    flat = a.ravel()
    for e in range(flat.size):
        flat[e] = 0


@njit(**JIT)
def _sum_parts(parts, out):
    """out = parts[0] + parts[1] + ..., in that order; parts (T, M), out (M,)."""
    for e in range(out.size):
        out[e] = parts[0, e]
    for t in range(1, parts.shape[0]):
        for e in range(out.size):
            out[e] += parts[t, e]


def flipped_kernels(w):
    """(w_flip, w_t), both (KH, KW, F, C): w rotated 180 degrees with its channel axes swapped
    (the input gradient as a convolution), and w with its channel axes swapped only (the
    scatter). Plain NumPy, once per call: w is small."""
    w_t = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
    return np.ascontiguousarray(w_t[::-1, ::-1]), w_t


# --- chunk kernels: one thread's share of a batch (numba_threads.run_chunks) ------------------


@njit(**JIT)
def conv_forward(x, w, b, g, out, t, n0, n1):
    """out[n] = conv(x[n], w) + b for the samples n in [n0, n1) (chunk t).

    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,) -> out (N, Ho, Wo, F); g a ConvGeometry.
    A chunk writes out[n] for its own samples only: chunks never share memory.
    """
    C, F = x.shape[3], w.shape[3]
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), x.dtype)
    acc = np.empty((4, F), out.dtype)
    for n in range(n0, n1):
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _conv_sample(src, w, b, g.sh, g.sw, out[n], acc)


@njit(**JIT)
def conv_backward_weights(dout, x, g, parts, t, n0, n1):
    """parts[t] (KH*KW*C*F,) = the weight gradient of the samples in [n0, n1), as (KH, KW, C, F).

    Shapes: dout (N, Ho, Wo, F), x (N, H, W, C); parts (T, >= KH*KW*C*F), zeroed by the caller
    (rows padded apart, so no cache line holds two chunks' sums: numba_ops._parts);
    g a ConvGeometry. The caller sums the parts in order (_sum_parts): chunk t writes only
    parts[t]. 3x3 stride 1 takes the 2x4-block helper, which wants dz padded to a multiple of
    (2, 4) with zeros and x to match (the padding adds nothing).
    """
    C, F = x.shape[3], dout.shape[3]
    KH, KW, Ho, Wo = g.KH, g.KW, g.Ho, g.Wo
    padded = g.Hp != g.H or g.Wp != g.W
    blocks = KH == 3 and KW == 3 and g.sh == 1 and g.sw == 1
    Ht, Wt = (Ho + Ho % 2, Wo + (-Wo) % 4) if blocks else (Ho, Wo)
    copy_x = padded or Ht != Ho or Wt != Wo
    use_tile = Ht != Ho or Wt != Wo
    xp = _zeros((max(g.Hp, Ht + KH - 1), max(g.Wp, Wt + KW - 1), C) if copy_x
                else (0, 0, C), dout.dtype)
    tile = _zeros((Ht, Wt, F) if use_tile else (0, 0, F), dout.dtype)
    dw = parts[t][: KH * KW * C * F].reshape((KH, KW, C, F))
    for n in range(n0, n1):
        dz = _into(dout[n], tile, 0, 0) if use_tile else dout[n]
        src = _into(x[n], xp, g.pt, g.pl) if copy_x else x[n]
        if blocks:
            _dw3x3_blocks(src, dz, dw)
        else:
            _dw_any(src, dz, Ho, Wo, g.sh, g.sw, dw)


@njit(**JIT)
def conv_backward_input(dout, w_flip, w_t, g, dx, t, n0, n1):
    """dx[n] = the input gradient of the samples n in [n0, n1) (chunk t).

    Shapes: dout (N, Ho, Wo, F); w_flip, w_t (KH, KW, F, C) from flipped_kernels ->
    dx (N, H, W, C); g a ConvGeometry. A chunk writes dx[n] of its own samples only.
    """
    F = dout.shape[3]
    KH, KW, _, C = w_t.shape
    padded = g.Hp != g.H or g.Wp != g.W
    dzp = _zeros((g.Ho + 2 * (KH - 1), g.Wo + 2 * (KW - 1), F), dout.dtype)
    dxp = np.empty((g.Hp, g.Wp, C) if padded else (0, 0, C), dout.dtype)
    acc = np.empty((4, C), dout.dtype)
    zero_c = _zeros((C,), dout.dtype)
    for n in range(n0, n1):
        if padded:
            _dx_sample(dout[n], g.Ho, g.Wo, w_flip, w_t, zero_c, g.sh, g.sw, dzp, dxp, acc)
            _crop(dxp, g.pt, g.pl, dx[n])
        else:
            _dx_sample(dout[n], g.Ho, g.Wo, w_flip, w_t, zero_c, g.sh, g.sw, dzp, dx[n], acc)
