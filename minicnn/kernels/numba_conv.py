"""Convolution kernels in Numba: forward, both gradients, and the fused conv+relu+max-pool pair.

Same conventions as naive.py (x (N, H, W, C), w (KH, KW, C, F), cross-correlation). The work is
split in two levels:

* per-sample helpers (serial) on one image (H, W, C). 3x3 stride-1 kernels, by far the most
  common, get their nine taps written out: each weight row is loaded once for four output pixels
  (forward), each output gradient once for the nine taps of a block of pixels (weight gradient),
  so the accumulators touch memory once per 4 or 8 multiply-adds. Other sizes and strides take a
  plain loop. With a 2x2 max-pool (stride 2) behind a 3x3 conv, the four conv outputs of each
  pool window are computed together and pooled in registers, and the backward pass visits each
  window once, sending its gradient to the winner: neither the conv output nor its gradient ever
  exists at full size. The fused forward also applies the dropouts behind the pool, hashing
  their masks in place (dropout_mask.py's SplitMix64), so they cost no pass over memory.
* two batched kernels (parallel): conv_forward and conv_backward. They split the batch into one
  chunk of samples per thread; a chunk writes only its own samples' outputs, and weight
  gradients go to the chunk's own buffer, summed in a fixed order at the end, so results do not
  depend on thread timing. Both serve the plain ops (numba_ops) and the fused unit
  (numba_fused): every kernel that calls the helpers compiles them again, so fewer entry points
  compile faster.

Padding is done per sample into a thread-local zero-bordered copy, so every helper sees a 'valid'
problem. The input gradient with stride 1 is itself a convolution: of the output gradient,
zero-padded by (KH-1, KW-1), with the kernel flipped and its channel axes swapped,

    dx[r, s, c] = sum_{p, q, f} dz_pad[r + p, s + q, f] * w[KH-1-p, KW-1-q, c, f],

so it reuses the fast forward helper; strided layers scatter instead.

Numba notes: a bare literal 0 in float32 code (``v if c else 0``) makes the expression float64
and halves the vector width, hence the typed ``zero``; loops that store to one array vectorise,
loops that store to two often do not. The helpers live in this file with the kernels that call
them because Numba's on-disk cache does not notice edits to another file.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minicnn.kernels.dropout_mask import GOLDEN, M1, M2
from minicnn.kernels.numba_config import JIT, PARALLEL

# Below this many input channels a winner's nine products are too short to beat the dense
# route (the seed's one-channel conv has its own fused helper).
SPARSE_MIN_CHANNELS = 8


@njit(**JIT)
def _wins(v, best):
    """Does v replace best as its window's maximum? Larger values win, and so does the first
    NaN (as np.max and np.argmax: NaN propagates instead of vanishing). Strict '>': on ties the
    first maximum in row-major order stays, as TensorFlow's MaxPool."""
    return v > best or (v != v and best == best)

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


# The nine taps are laid out as the 3x3 window they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _conv3x3_pool2x2_c1(xp, w, b, out, code):
    """_conv3x3_pool2x2 for one input channel (the first layer of the seed and deep models).

    With C = 1 there is no sum over channels, so each of the four conv outputs of a window is
    one expression in the filter index f, held in a register: nothing is stored until the
    maximum. Measured 1.5-1.7x faster than the accumulator version (0.74 vs 1.1-1.3 ms for 128
    samples on one thread), same bits (the same sums in the same order).
    """
    Hq, Wq, F = out.shape
    zero = out.dtype.type(0)
    for iq in range(Hq):
        i = 2 * iq
        for jq in range(Wq):
            j = 2 * jq
            x00, x01, x02, x03 = xp[i, j, 0], xp[i, j + 1, 0], xp[i, j + 2, 0], xp[i, j + 3, 0]
            x10, x11 = xp[i + 1, j, 0], xp[i + 1, j + 1, 0]
            x12, x13 = xp[i + 1, j + 2, 0], xp[i + 1, j + 3, 0]
            x20, x21 = xp[i + 2, j, 0], xp[i + 2, j + 1, 0]
            x22, x23 = xp[i + 2, j + 2, 0], xp[i + 2, j + 3, 0]
            x30, x31 = xp[i + 3, j, 0], xp[i + 3, j + 1, 0]
            x32, x33 = xp[i + 3, j + 2, 0], xp[i + 3, j + 3, 0]
            for f in range(F):  # F innermost: contiguous, vectorised
                w00, w01, w02 = w[0, 0, 0, f], w[0, 1, 0, f], w[0, 2, 0, f]
                w10, w11, w12 = w[1, 0, 0, f], w[1, 1, 0, f], w[1, 2, 0, f]
                w20, w21, w22 = w[2, 0, 0, f], w[2, 1, 0, f], w[2, 2, 0, f]
                a0 = b[f] + (x00 * w00 + x01 * w01 + x02 * w02 + x10 * w10 + x11 * w11
                             + x12 * w12 + x20 * w20 + x21 * w21 + x22 * w22)
                a1 = b[f] + (x01 * w00 + x02 * w01 + x03 * w02 + x11 * w10 + x12 * w11
                             + x13 * w12 + x21 * w20 + x22 * w21 + x23 * w22)
                a2 = b[f] + (x10 * w00 + x11 * w01 + x12 * w02 + x20 * w10 + x21 * w11
                             + x22 * w12 + x30 * w20 + x31 * w21 + x32 * w22)
                a3 = b[f] + (x11 * w00 + x12 * w01 + x13 * w02 + x21 * w10 + x22 * w11
                             + x23 * w12 + x31 * w20 + x32 * w21 + x33 * w22)
                v, k = a0, np.int8(0)  # the first maximum in row-major order stays (_wins)
                k = np.int8(1) if _wins(a1, v) else k
                v = a1 if _wins(a1, v) else v
                k = np.int8(2) if _wins(a2, v) else k
                v = a2 if _wins(a2, v) else v
                k = np.int8(3) if _wins(a3, v) else k
                v = a3 if _wins(a3, v) else v
                out[iq, jq, f] = v if not v <= zero else zero  # relu; NaN passes, as np.maximum
                code[iq, jq, f] = k if v > zero else np.int8(-1)


@njit(**JIT)
def _conv3x3_pool2x2(xp, w, b, out, code, acc):
    """Fused 3x3 conv (stride 1) + bias + 2x2 max-pool (stride 2) + relu of one sample.

    Each pass computes the 2x2 conv outputs of one pool window (a 4x4 input patch) and keeps
    their maximum; code gets the winner's index (0..3, row-major) or -1 when relu zeroes it.
    Shapes: xp (>= 2*Hq+2, >= 2*Wq+2, C), w (3, 3, C, F), out, code (Hq, Wq, F), acc (4, F).
    """
    Hq, Wq, F = out.shape
    C = xp.shape[2]
    if C == 1:
        _conv3x3_pool2x2_c1(xp, w, b, out, code)
        return
    zero = out.dtype.type(0)
    for iq in range(Hq):
        i = 2 * iq
        for jq in range(Wq):
            j = 2 * jq
            for f in range(F):
                acc[0, f] = b[f]
                acc[1, f] = b[f]
                acc[2, f] = b[f]
                acc[3, f] = b[f]
            for c in range(C):
                x00, x01, x02, x03 = xp[i, j, c], xp[i, j + 1, c], xp[i, j + 2, c], xp[i, j + 3, c]
                x10, x11 = xp[i + 1, j, c], xp[i + 1, j + 1, c]
                x12, x13 = xp[i + 1, j + 2, c], xp[i + 1, j + 3, c]
                x20, x21 = xp[i + 2, j, c], xp[i + 2, j + 1, c]
                x22, x23 = xp[i + 2, j + 2, c], xp[i + 2, j + 3, c]
                x30, x31 = xp[i + 3, j, c], xp[i + 3, j + 1, c]
                x32, x33 = xp[i + 3, j + 2, c], xp[i + 3, j + 3, c]
                for f in range(F):
                    w00, w01, w02 = w[0, 0, c, f], w[0, 1, c, f], w[0, 2, c, f]
                    w10, w11, w12 = w[1, 0, c, f], w[1, 1, c, f], w[1, 2, c, f]
                    w20, w21, w22 = w[2, 0, c, f], w[2, 1, c, f], w[2, 2, c, f]
                    acc[0, f] += (x00 * w00 + x01 * w01 + x02 * w02 + x10 * w10 + x11 * w11
                                  + x12 * w12 + x20 * w20 + x21 * w21 + x22 * w22)
                    acc[1, f] += (x01 * w00 + x02 * w01 + x03 * w02 + x11 * w10 + x12 * w11
                                  + x13 * w12 + x21 * w20 + x22 * w21 + x23 * w22)
                    acc[2, f] += (x10 * w00 + x11 * w01 + x12 * w02 + x20 * w10 + x21 * w11
                                  + x22 * w12 + x30 * w20 + x31 * w21 + x32 * w22)
                    acc[3, f] += (x11 * w00 + x12 * w01 + x13 * w02 + x21 * w10 + x22 * w11
                                  + x23 * w12 + x31 * w20 + x32 * w21 + x33 * w22)
            for f in range(F):  # the first maximum in row-major order stays (_wins)
                v, k = acc[0, f], np.int8(0)
                k = np.int8(1) if _wins(acc[1, f], v) else k
                v = acc[1, f] if _wins(acc[1, f], v) else v
                k = np.int8(2) if _wins(acc[2, f], v) else k
                v = acc[2, f] if _wins(acc[2, f], v) else v
                k = np.int8(3) if _wins(acc[3, f], v) else k
                v = acc[3, f] if _wins(acc[3, f], v) else v
                out[iq, jq, f] = v if not v <= zero else zero  # relu; NaN passes
                code[iq, jq, f] = k if v > zero else np.int8(-1)
# fmt: on


@njit(**JIT)
def _pool_relu(z, PH, PW, psh, psw, out, code, best, arg):
    """Max-pool ('valid') and relu of one sample's conv output z (Ho, Wo, F), any window.

    out, code (Hq, Wq, F) as in _conv3x3_pool2x2; best (F,) and arg (F,) int8 are scratch.
    """
    Hq, Wq, F = out.shape
    zero = out.dtype.type(0)
    if PH == 1 and PW == 1 and psh == 1 and psw == 1:  # no pooling: relu over flat rows
        for i in range(Hq):
            zr, o, cd = z[i].ravel(), out[i].ravel(), code[i].ravel()  # (Wq*F,) prefix used
            for e in range(Wq * F):
                o[e] = zr[e] if not zr[e] <= zero else zero  # relu; NaN passes
            for e in range(Wq * F):
                cd[e] = np.int8(0) if zr[e] > zero else np.int8(-1)
        return
    for i in range(Hq):
        for j in range(Wq):
            r, s = i * psh, j * psw
            for f in range(F):
                best[f] = z[r, s, f]
            for f in range(F):
                arg[f] = 0
            for p in range(PH):
                for q in range(PW):
                    k = np.int8(p * PW + q)
                    for f in range(F):  # the first maximum stays (_wins)
                        arg[f] = k if _wins(z[r + p, s + q, f], best[f]) else arg[f]
                    for f in range(F):
                        v = z[r + p, s + q, f]
                        best[f] = v if _wins(v, best[f]) else best[f]
            for f in range(F):
                out[i, j, f] = best[f] if not best[f] <= zero else zero  # relu; NaN passes
            for f in range(F):
                code[i, j, f] = arg[f] if best[f] > zero else np.int8(-1)


# SplitMix64, as in dropout_mask.py: the fused kernel hashes its dropout masks itself, so they
# cost no pass of their own. A copy of numba_dropout's, kept here because Numba's cache does not
# see edits to other files; tests check both against NumPy's bit for bit.
_GOLDEN = np.uint64(GOLDEN)
_M1, _M2 = np.uint64(M1), np.uint64(M2)
_S27, _S30, _S31, _S40 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(40)


@njit(**JIT)
def _keeps(key, threshold, i):
    """True when element i of the dropout mask with this key is kept (dropout_mask.py)."""
    z = key + np.uint64(i) * _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return ((z ^ (z >> _S31)) >> _S40) >= threshold


@njit(**JIT)
def _dropout_rows(out, code, e0, keys, thresholds, scales, keep):
    """Apply the dropouts to one sample's pooled output, flat: out (M,), code (M,).

    e0 is the sample's first element in the batch's C order (the masks' counter). A unit is
    kept when every mask (keys[d], thresholds[d]) keeps it; a kept unit is multiplied by each
    scale in turn (as the Dropout layers would, one after the other); a dropped one is
    multiplied by 0 (so NaN stays NaN, as in the layer's x * mask) and gets code -1. keep (M,)
    uint8 is scratch for three or more dropouts.
    One and two dropouts (the seed and deep models) get a single pass each, which vectorises:
    0.25 ms per batch of 128 for the seed's two, against 0.4 ms for a pass per step.
    """
    zero, one = out.dtype.type(0), out.dtype.type(1)
    if keys.size == 1:
        s0 = scales[0]
        for e in range(out.size):
            kept = _keeps(keys[0], thresholds[0], e0 + e)
            out[e] = out[e] * (s0 if kept else zero)
            code[e] = code[e] if kept else np.int8(-1)
        return
    if keys.size == 2:
        s0, s1 = scales[0], scales[1]
        for e in range(out.size):
            kept = _keeps(keys[0], thresholds[0], e0 + e) & _keeps(keys[1], thresholds[1], e0 + e)
            out[e] = out[e] * (s0 if kept else zero) * (s1 if kept else zero)
            code[e] = code[e] if kept else np.int8(-1)
        return
    for m in range(scales.size):
        s = scales[m]
        for e in range(out.size):
            out[e] = out[e] * s
    if keys.size == 0:
        return
    for e in range(out.size):
        keep[e] = np.uint8(_keeps(keys[0], thresholds[0], e0 + e))
    for d in range(1, keys.size):
        for e in range(out.size):
            keep[e] = keep[e] & np.uint8(_keeps(keys[d], thresholds[d], e0 + e))
    for e in range(out.size):
        out[e] = out[e] * (zero if keep[e] == 0 else one)
    for e in range(out.size):
        code[e] = code[e] if keep[e] != 0 else np.int8(-1)


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


# The nine taps are laid out as the 3x3 window they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _dw3x3_pool2x2(xp, g, code, dw, db):
    """dw, db += gradients of _conv3x3_pool2x2 for one sample, from the pooled gradient g.

    Each pool window's gradient goes to its winner (code) only: per window, the four candidate
    gradients are g or 0 by code, and each tap sums four products before touching dw.
    Shapes: xp (>= 2*Hq+2, >= 2*Wq+2, C), g, code (Hq, Wq, F), dw (3, 3, C, F), db (F,).
    """
    Hq, Wq, F = g.shape
    C = xp.shape[2]
    zero = g.dtype.type(0)
    for iq in range(Hq):
        i = 2 * iq
        for jq in range(Wq):
            j = 2 * jq
            for f in range(F):
                db[f] += g[iq, jq, f] if code[iq, jq, f] >= 0 else zero
            for c in range(C):
                x00, x01, x02, x03 = xp[i, j, c], xp[i, j + 1, c], xp[i, j + 2, c], xp[i, j + 3, c]
                x10, x11 = xp[i + 1, j, c], xp[i + 1, j + 1, c]
                x12, x13 = xp[i + 1, j + 2, c], xp[i + 1, j + 3, c]
                x20, x21 = xp[i + 2, j, c], xp[i + 2, j + 1, c]
                x22, x23 = xp[i + 2, j + 2, c], xp[i + 2, j + 3, c]
                x30, x31 = xp[i + 3, j, c], xp[i + 3, j + 1, c]
                x32, x33 = xp[i + 3, j + 2, c], xp[i + 3, j + 3, c]
                for f in range(F):
                    k, v = code[iq, jq, f], g[iq, jq, f]
                    g0 = v if k == 0 else zero
                    g1 = v if k == 1 else zero
                    g2 = v if k == 2 else zero
                    g3 = v if k == 3 else zero
                    dw[0, 0, c, f] += x00 * g0 + x01 * g1 + x10 * g2 + x11 * g3
                    dw[0, 1, c, f] += x01 * g0 + x02 * g1 + x11 * g2 + x12 * g3
                    dw[0, 2, c, f] += x02 * g0 + x03 * g1 + x12 * g2 + x13 * g3
                    dw[1, 0, c, f] += x10 * g0 + x11 * g1 + x20 * g2 + x21 * g3
                    dw[1, 1, c, f] += x11 * g0 + x12 * g1 + x21 * g2 + x22 * g3
                    dw[1, 2, c, f] += x12 * g0 + x13 * g1 + x22 * g2 + x23 * g3
                    dw[2, 0, c, f] += x20 * g0 + x21 * g1 + x30 * g2 + x31 * g3
                    dw[2, 1, c, f] += x21 * g0 + x22 * g1 + x31 * g2 + x32 * g3
                    dw[2, 2, c, f] += x22 * g0 + x23 * g1 + x32 * g2 + x33 * g3
# fmt: on


@njit(**JIT)
def _scaled(dout, scales, g):
    """g = dout times each dropout scale, last layer's first (the order backward meets them).

    Shapes: dout, g (M,) flat.
    """
    if scales.size == 2:  # the seed and deep models: one pass
        s0, s1 = scales[0], scales[1]
        for e in range(g.size):
            g[e] = dout[e] * s1 * s0
        return
    for e in range(g.size):
        g[e] = dout[e]
    for m in range(scales.size - 1, -1, -1):
        s = scales[m]
        for e in range(g.size):
            g[e] = g[e] * s


@njit(**JIT)
def _route(g, code, PH, PW, psh, psw, tile, db_row):
    """Send each pooled gradient g to its window's winner in tile (zeroed here first).

    Shapes: g, code (Hq, Wq, F); tile (>= Ho, >= Wo, F); db_row (Wq*F,) += the routed g, by
    (j, f), so the bias gradient is summed with long loops.
    """
    Hq, Wq, F = g.shape
    zero = g.dtype.type(0)
    flat = tile.ravel()
    for e in range(flat.size):
        flat[e] = zero
    if PH == 1 and PW == 1 and psh == 1 and psw == 1:  # no pooling: rows are flat and aligned
        for i in range(Hq):
            gr, cr, tr = g[i].ravel(), code[i].ravel(), tile[i].ravel()  # (Wq*F,) prefix used
            for e in range(Wq * F):
                tr[e] = gr[e] if cr[e] >= 0 else zero
            for e in range(Wq * F):
                db_row[e] += tr[e]
        return
    for i in range(Hq):
        for j in range(Wq):
            for p in range(PH):
                for q in range(PW):
                    k = p * PW + q
                    r, s = i * psh + p, j * psw + q
                    for f in range(F):  # overlapping windows add up
                        tile[r, s, f] += g[i, j, f] if code[i, j, f] == k else zero
            for f in range(F):
                db_row[j * F + f] += g[i, j, f] if code[i, j, f] >= 0 else zero


@njit(**JIT)
def _winners_sample(g, code, PW, psh, psw, sh, sw, xp, w_f, need_dw, need_dx, dw_f, db, dxp):
    """Gradients of one sample from its pool winners only: dw_f, db, dxp += ...

    Of a pooled, relu'd and dropped-out output, at most one conv output per pool window and
    channel gets a gradient (its winner, code >= 0): with 2x2 windows at most 1 in 4 of the
    (Ho, Wo, F) conv outputs, fewer where relu and dropout silence a window. Visiting just
    those, each winner adds its gradient v times its input window to dw and v times its filter
    to dx, instead of the dense products over every conv output. Measured on the deep model's
    second conv (batch 128, 2 threads): dw + db + dx 21-28 ms against 72 ms layer by layer,
    dw + db alone 17-22 ms against 32 ms for the dense route. Each window row (KW pixels of
    C channels) is contiguous in xp and dxp, and so is each filter row in w_f and dw_f (filter
    axis first): one loop of KW*C per row, long enough to vectorise (a loop over C alone, 32
    for the deep model, ran scalar).
    Shapes: g, code (Hq, Wq, F); xp (Hp, Wp, C) padded input (read if need_dw); w_f, dw_f
    (F, KH, KW, C); db (F,); dxp (Hp, Wp, C) padded input gradient, zeroed by the caller.
    """
    Hq, Wq, F = g.shape
    _, KH, KW, C = w_f.shape
    Wp = xp.shape[1] if need_dw else dxp.shape[1]
    L = KW * C
    x_flat, dx_flat = xp.ravel(), dxp.ravel()
    w_flat, dw_flat = w_f.ravel(), dw_f.ravel()
    for iq in range(Hq):
        for jq in range(Wq):
            for f in range(F):
                k = code[iq, jq, f]
                if k < 0:
                    continue
                v = g[iq, jq, f]
                db[f] += v
                r0 = (iq * psh + k // PW) * sh  # the winner's window, padded coordinates
                s0 = (jq * psw + k % PW) * sw
                for p in range(KH):
                    # max: shows Numba the flat indices are >= 0, so it drops the negative-index
                    # wraparound that kept these loops from vectorising
                    at_x = max(0, ((r0 + p) * Wp + s0) * C)  # row p of the window
                    at_w = max(0, (f * KH + p) * L)  # row p of filter f
                    if need_dw:
                        for e in range(L):
                            dw_flat[at_w + e] += v * x_flat[at_x + e]
                    if need_dx:
                        for e in range(L):
                            dx_flat[at_x + e] += v * w_flat[at_w + e]


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
def _filter_first(w_t):
    """w_t (KH, KW, F, C) -> (F, KH, KW, C), a new array."""
    KH, KW, F, C = w_t.shape
    w_f = np.empty((F, KH, KW, C), w_t.dtype)
    for p in range(KH):
        for q in range(KW):
            for f in range(F):
                for c in range(C):
                    w_f[f, p, q, c] = w_t[p, q, f, c]
    return w_f


@njit(**JIT)
def _fill_zero(a):
    """a[...] = 0 as a plain loop (see _zeros)."""
    flat = a.ravel()
    for e in range(flat.size):
        flat[e] = 0


@njit(**JIT)
def _sum_parts_filter_first(parts, dw):
    """dw[p, q, c, f] = sum over t of parts[t] viewed as (F, KH, KW, C), in order of t."""
    KH, KW, C, F = dw.shape
    for p in range(KH):
        for q in range(KW):
            for c in range(C):
                for f in range(F):
                    e = ((f * KH + p) * KW + q) * C + c
                    acc = parts[0, e]
                    for t in range(1, parts.shape[0]):
                        acc += parts[t, e]
                    dw[p, q, c, f] = acc


@njit(**JIT)
def _sum_parts(parts, out):
    """out = parts[0] + parts[1] + ..., in that order; parts (T, M), out (M,)."""
    for e in range(out.size):
        out[e] = parts[0, e]
    for t in range(1, parts.shape[0]):
        for e in range(out.size):
            out[e] += parts[t, e]


def geometry(x_hw, strides, pads, pool=(1, 1), pool_strides=(1, 1)):
    """The ints the batched kernels take, as one tuple:
    (H, W, sh, sw, pt, pb, pl, pr, PH, PW, psh, psw): input size, conv strides and pads, and the
    max-pool window and strides behind it ((1, 1), (1, 1): none)."""
    return (*x_hw, *strides, *pads, *pool, *pool_strides)


def flipped_kernels(w):
    """(w_flip, w_t), both (KH, KW, F, C): w rotated 180 degrees with its channel axes swapped
    (the input gradient as a convolution), and w with its channel axes swapped only (the
    scatter). Plain NumPy, once per call: w is small."""
    w_t = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
    return np.ascontiguousarray(w_t[::-1, ::-1]), w_t


# --- batched kernels --------------------------------------------------------------------------
# No array expressions here (slices assigned, np.zeros, +=): with parallel=True Numba turns each
# into a parallel loop of its own, which only costs compile time inside a thread's chunk.


@njit(**PARALLEL)
def conv_forward(x, w, b, geom, fused, keys, thresholds, scales, out, code, T):
    """out = conv(x, w) + b; with fused=True, then max-pool ('valid'), relu and dropout.

    fused=False: out (N, Ho, Wo, F) is the convolution; code and the dropouts are unused.
    fused=True: out, code (N, Hq, Wq, F). Pooling first and relu after gives relu(max z) =
    max relu(z), the same values and winners. code[n, i, j, f] is the winner's row-major index
    p*PW + q in its window, or -1 when no gradient flows back (max z <= 0, or a dropout dropped
    the unit), so backward needs nothing else. The dropouts: keys, thresholds (D,) uint64 as
    dropout_mask.mask_key and keep_threshold give them (size 0: none), scales (D,) their
    1 / (1 - rate); the masks are hashed here, over the batch's C order.
    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,); geom as geometry() makes it.
    """
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    _, _, sh, sw, pt, pb, pl, pr, PH, PW, psh, psw = geom
    Hp, Wp = H + pt + pb, W + pl + pr
    Ho, Wo = (Hp - KH) // sh + 1, (Wp - KW) // sw + 1
    _, Hq, Wq, _ = out.shape
    M = Hq * Wq * F
    padded = Hp != H or Wp != W
    # 3x3 conv, stride 1, then 2x2 pool, stride 2: the seed's layers, with their own helper
    fast = fused and (KH, KW, sh, sw, PH, PW, psh, psw) == (3, 3, 1, 1, 2, 2, 2, 2)
    # chunk t writes out[n] and code[n] for its own samples n only: the chunks never share memory
    for t in prange(T):
        xp = _zeros((Hp, Wp, C) if padded else (0, 0, C), x.dtype)
        z = np.empty((Ho, Wo, F) if fused and not fast else (0, 0, F), out.dtype)  # one sample's
        acc = np.empty((4, F), out.dtype)
        best = np.empty(F, out.dtype)
        arg = np.empty(F, np.int8)
        keep = np.empty(M if fused else 0, np.uint8)
        for n in range(t * N // T, (t + 1) * N // T):
            src = _into(x[n], xp, pt, pl) if padded else x[n]
            if not fused:
                _conv_sample(src, w, b, sh, sw, out[n], acc)
                continue
            if fast:
                _conv3x3_pool2x2(src, w, b, out[n], code[n], acc)
            else:
                _conv_sample(src, w, b, sh, sw, z, acc)
                _pool_relu(z, PH, PW, psh, psw, out[n], code[n], best, arg)
            _dropout_rows(out[n].ravel(), code[n].ravel(), n * M, keys, thresholds, scales, keep)


@njit(**PARALLEL)
def conv_backward(dout, code, x, w_flip, w_t, scales, geom, need_dw, need_dx, dw, db, dx, T):
    """Weight, bias and input gradients of conv_forward, each only if asked for.

    code size 0: dout (N, Ho, Wo, F) is the gradient of the convolution itself (plain op).
    Otherwise dout, code (N, Hq, Wq, F) come from the fused forward: per sample, the gradient
    is scaled by the dropouts (in the layers' reverse order) and sent through relu to its pool
    winner, either straight into the weight gradient (3x3 conv + 2x2 pool, no dx) or into a
    thread-local (Ho, Wo, F) tile (never the batch's) that feeds dw, db and dx.
    need_dw: dw (KH, KW, C, F) and, when fused, db (F,); x (N, H, W, C) may be empty if not.
    need_dx: dx (N, H, W, C), with w_flip and w_t as in _dx_sample; dx may be empty if not.
    geom as geometry() makes it.
    """
    N = dout.shape[0]
    KH, KW, C, F = dw.shape
    H, W, sh, sw, pt, pb, pl, pr, PH, PW, psh, psw = geom
    Hp, Wp = H + pt + pb, W + pl + pr
    Ho, Wo = (Hp - KH) // sh + 1, (Wp - KW) // sw + 1
    _, Hq, Wq, _ = dout.shape
    routed = code.size > 0
    padded = Hp != H or Wp != W
    # the seed's layers (see conv_forward) when no input gradient is wanted: their own helper
    seed_layers = (KH, KW, sh, sw, PH, PW, psh, psw) == (3, 3, 1, 1, 2, 2, 2, 2)
    # several input channels behind a pool: visit the winners only (_winners_sample)
    sparse = routed and C >= SPARSE_MIN_CHANNELS and PH * PW > 1
    fast = routed and need_dw and not need_dx and seed_layers and not sparse
    # the 2x4-block weight gradient wants dz padded to a multiple of (2, 4) with zeros, and x
    # to match; the padding adds nothing
    blocks = need_dw and not fast and not sparse and KH == 3 and KW == 3 and sh == 1 and sw == 1
    Ht, Wt = (Ho + Ho % 2, Wo + (-Wo) % 4) if blocks else (Ho, Wo)
    copy_x = need_dw and (padded or Ht != Ho or Wt != Wo)
    use_tile = not fast and not sparse and (routed or Ht != Ho or Wt != Wo)
    parts_w = _zeros((T, KH * KW * C * F) if need_dw else (T, 0), dw.dtype)
    w_f = _filter_first(w_t) if sparse and need_dx else np.empty((0, KH, KW, C), dw.dtype)
    parts_b = _zeros((T, Wq * F), dw.dtype)
    # chunk t accumulates into parts_w[t], parts_b[t] and writes dx[n] of its own samples only;
    # the parts are summed serially, in a fixed order, after the loop
    for t in prange(T):
        xp = _zeros(
            (max(Hp, Ht + KH - 1), max(Wp, Wt + KW - 1), C) if copy_x else (0, 0, C), dout.dtype
        )
        g = np.empty((Hq, Wq, F) if routed else (0, 0, F), dout.dtype)
        tile = _zeros((Ht, Wt, F) if use_tile else (0, 0, F), dout.dtype)
        dzp = _zeros(
            (Ho + 2 * (KH - 1), Wo + 2 * (KW - 1), F) if need_dx and not sparse else (0, 0, F),
            dout.dtype,
        )
        dxp = np.empty((Hp, Wp, C) if need_dx and padded else (0, 0, C), dout.dtype)
        acc = np.empty((4, C), dout.dtype)
        zero_c = _zeros((C,), dout.dtype)
        dw_t = parts_w[t].reshape((KH, KW, C, F) if need_dw else (0, 0, 0, 0))
        dw_f = parts_w[t].reshape((F, KH, KW, C) if need_dw else (0, 0, 0, 0))  # sparse's
        for n in range(t * N // T, (t + 1) * N // T):
            dz = dout[n]
            if routed:
                _scaled(dout[n].ravel(), scales, g.ravel())
            if sparse:
                src = _into(x[n], xp, pt, pl) if copy_x else (x[n] if need_dw else xp)
                dst = dxp if padded else (dx[n] if need_dx else dxp)
                if need_dx:
                    _fill_zero(dst)
                _winners_sample(g, code[n], PW, psh, psw, sh, sw, src, w_f, need_dw, need_dx,
                                dw_f, parts_b[t, :F], dst)
                if need_dx and padded:
                    _crop(dxp, pt, pl, dx[n])
                continue
            if fast:
                src = _into(x[n], xp, pt, pl) if copy_x else x[n]
                _dw3x3_pool2x2(src, g, code[n], dw_t, parts_b[t, :F])
                continue
            if routed:
                _route(g, code[n], PH, PW, psh, psw, tile, parts_b[t])
                dz = tile
            elif use_tile:
                _into(dout[n], tile, 0, 0)
                dz = tile
            if need_dw:
                src = _into(x[n], xp, pt, pl) if copy_x else x[n]
                if blocks:
                    _dw3x3_blocks(src, dz, dw_t)
                else:
                    _dw_any(src, dz, Ho, Wo, sh, sw, dw_t)
            if need_dx and padded:
                _dx_sample(dz, Ho, Wo, w_flip, w_t, zero_c, sh, sw, dzp, dxp, acc)
                _crop(dxp, pt, pl, dx[n])
            elif need_dx:
                _dx_sample(dz, Ho, Wo, w_flip, w_t, zero_c, sh, sw, dzp, dx[n], acc)
    if need_dw and sparse:
        _sum_parts_filter_first(parts_w, dw)
        _sum_parts(parts_b.reshape((T * Wq, F)), db)
    elif need_dw:
        _sum_parts(parts_w, dw.ravel())
        _sum_parts(parts_b.reshape((T * Wq, F)), db)
