"""The fused Conv2D(relu) -> MaxPooling2D -> dropouts unit in Numba, forward and backward.

Arrays only: minicnn.fusion (which knows the layers) passes the weights, the dropouts' keys and
scales, and the buffers; these kernels never see a layer.

* forward, per sample: the convolution (for a 3x3 conv and a 2x2 pool, window by window in
  registers; otherwise into a thread-local tile), then max-pool, relu and the dropout masks
  straight into the output, plus one byte per output: the winner's index in its window, or -1
  where no gradient flows back (relu off, or dropped). Pooling before relu is the same as
  after: relu(max z) = max relu(z), and NaN propagates the same way too (_wins).
* backward: that byte sends each output gradient to its winner, straight into the weight
  gradient or through a thread-local tile (each thread its own dW, summed at the end) and, for
  conv_pool_backward_dx, into the input gradient. With several input channels behind a pool
  (the deep model's second conv) only the winners are visited at all: each adds its gradient
  times its input window to dW and times its filter to dX, at most a quarter of the dense
  products. The full-size conv gradient never exists.

The dropout masks are hashed here with the same SplitMix64 as dropout_mask.py (its NumPy
twin), from the same keys in the same order, so the bits match the Dropout layer's exactly
(tested). Sizes come in a geometry.ConvGeometry ``g``; shared helpers are numba_conv's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.dropout_mask import GOLDEN, M1, M2
from minicnn.kernels.numba_config import JIT
from minicnn.kernels.numba_conv import (
    _conv3x3_rows,
    _conv_sample,
    _crop,
    _dw3x3_blocks,
    _dw_any,
    _dx_sample,
    _fill_zero,
    _into,
    _zeros,
)
from minicnn.kernels.numba_dense import LANES, _forward_rows, dense_weight_gradient

# Below this many input channels a winner's nine products are too short to beat the dense
# route (the seed's one-channel conv has its own fused helper).
SPARSE_MIN_CHANNELS = 8


@njit(**JIT)
def _wins(v, best):
    """Does v replace best as its window's maximum? Larger values win, and so does the first
    NaN (as np.max and np.argmax: NaN propagates instead of vanishing). Strict '>': on ties the
    first maximum in row-major order stays, as TensorFlow's MaxPool."""
    return (v > best) | ((v != v) & (best == best))  # bitwise: no branches in a vector loop


# --- per-sample helpers: conv + pool + relu + dropout ---------------------------------------------


# The nine taps are laid out as the 3x3 window they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _conv3x3_pool2x2_c1(xp, w, b, out, code):
    """_conv3x3_pool2x2 for one input channel (the first layer of the seed and deep models).

    With C = 1 there is no sum over channels, so each of the four conv outputs of a window is
    one expression in the filter index f, held in a register: nothing is stored until the
    maximum: faster than the accumulator version, and the same bits (the same sums in the
    same order).
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
                v, k = a0, np.int8(0)  # strict '>': the first maximum in row-major order stays
                k = np.int8(1) if a1 > v else k
                v = a1 if a1 > v else v
                k = np.int8(2) if a2 > v else k
                v = a2 if a2 > v else v
                k = np.int8(3) if a3 > v else k
                v = a3 if a3 > v else v
                # a NaN anywhere in the window wins, as _wins says (its code is -1 below): a
                # check after the plain chain is 1.5x cheaper than _wins at every step
                v = v if (a0 == a0) & (a1 == a1) & (a2 == a2) & (a3 == a3) else a0 + a1 + a2 + a3
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
            for f in range(F):  # strict '>': the first maximum in row-major order stays
                a0, a1, a2, a3 = acc[0, f], acc[1, f], acc[2, f], acc[3, f]
                v, k = a0, np.int8(0)
                k = np.int8(1) if a1 > v else k
                v = a1 if a1 > v else v
                k = np.int8(2) if a2 > v else k
                v = a2 if a2 > v else v
                k = np.int8(3) if a3 > v else k
                v = a3 if a3 > v else v
                # a NaN anywhere in the window wins (see _conv3x3_pool2x2_c1)
                v = v if (a0 == a0) & (a1 == a1) & (a2 == a2) & (a3 == a3) else a0 + a1 + a2 + a3
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
    if PH == 1 and PW == 1 and psh == 1 and psw == 1:  # no pooling
        _relu(z, out, code)
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


@njit(**JIT)
def _relu(z, out, code):
    """out = relu(z) and code 0 where z > 0, else -1, over flat rows: _pool_relu without a pool.

    Shapes: z (>= Hq, >= Wq, F) one sample's conv output, its (Hq, Wq) corner used; out, code
    (Hq, Wq, F).
    """
    Hq, Wq, F = out.shape
    zero = out.dtype.type(0)
    for i in range(Hq):
        zr, o, cd = z[i].ravel(), out[i].ravel(), code[i].ravel()  # (Wq*F,) prefix used
        for e in range(Wq * F):
            o[e] = zr[e] if not zr[e] <= zero else zero  # relu; NaN passes
        for e in range(Wq * F):
            cd[e] = np.int8(0) if zr[e] > zero else np.int8(-1)


# SplitMix64, as dropout_mask.py computes it in NumPy: the kernel hashes its dropout masks itself,
# so they cost no pass of their own. The 16-bit uniforms are read straight from the words'
# memory, which is the formula's order on a little-endian machine (every CPU Numba targets).
_GOLDEN = np.uint64(GOLDEN)
_M1, _M2 = np.uint64(M1), np.uint64(M2)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)


@njit(**JIT)
def _mask_words(key, first, words):
    """words[j] = word first + j of the mask with this key (dropout_mask.mask_words).

    The counter key + (first + j) * GOLDEN advances by one GOLDEN a word (the same value
    modulo 2**64): two 64-bit multiplies a hash instead of three, the slowest instruction
    here (the hashing took 0.065 -> 0.045 ms for a 64-sample chunk's two masks).
    """
    z = key + first * _GOLDEN
    for j in range(words.size):  # vectorised: eight hashes per AVX-512 register
        y = (z ^ (z >> _S30)) * _M1
        y = (y ^ (y >> _S27)) * _M2
        words[j] = y ^ (y >> _S31)
        z += _GOLDEN


@njit(**JIT)
def dropout_scratch(M):
    """(keep, words): the scratch _dropout_rows needs for M units, made once per chunk."""
    return np.empty(M, np.uint8), np.empty((2, M // 4 + 2), np.uint64)


@njit(**JIT)
def _uniforms(key, e0, M, words):
    """The 16-bit uniforms of units e0 .. e0 + M - 1 of a mask, (M,) uint16 (a view of words,
    (>= M // 4 + 2,) uint64 scratch, whose first words are hashed here)."""
    w0 = e0 // 4
    _mask_words(key, np.uint64(w0), words[: (e0 + M + 3) // 4 - w0])
    return words.view(np.uint16)[e0 - 4 * w0: e0 - 4 * w0 + M]


@njit(**JIT)
def _dropout_rows(out, code, e0, keys, thresholds, scales, keep, words):
    """Apply the dropouts to one sample's pooled output, flat: out (M,), code (M,).

    e0 is the sample's first unit in the batch's C order (the masks' counter). A unit is kept
    when every mask (keys[d], thresholds[d]) keeps it; a kept unit is multiplied by each scale
    in turn (as the Dropout layers would, one after the other); a dropped one is multiplied by
    0 (so NaN stays NaN, as in the layer's x * mask) and gets code -1. keep (M,) uint8 and
    words (2, >= M // 4 + 2) uint64 are scratch (dropout_scratch).
    One and two dropouts (the seed and deep models) get a single pass over the units after
    their words are hashed, which vectorises on 16-bit integers.
    """
    M = out.size
    # Written without selects: kept is 1 or 0, the scale times it s or 0 (the same bits as
    # picking s or 0), and code | (kept - 1) keeps the code or makes it -1. LLVM vectorises
    # both forms on AVX-512, whose mask registers hold the compare; on AVX2 the selects of
    # three widths (uint16, float, int8) stayed scalar branches, eleven times slower (README,
    # Speed, "The same command on an AVX2 machine").
    if keys.size == 1:
        u0, t0, s0 = _uniforms(keys[0], e0, M, words[0]), np.uint16(thresholds[0]), scales[0]
        for e in range(M):
            kept = np.int32(u0[e] >= t0)
            out[e] = out[e] * (s0 * out.dtype.type(kept))
            code[e] = code[e] | np.int8(kept - 1)
        return
    if keys.size == 2:
        u0, t0, s0 = _uniforms(keys[0], e0, M, words[0]), np.uint16(thresholds[0]), scales[0]
        u1, t1, s1 = _uniforms(keys[1], e0, M, words[1]), np.uint16(thresholds[1]), scales[1]
        for e in range(M):
            kept = np.int32(u0[e] >= t0) & np.int32(u1[e] >= t1)
            k = out.dtype.type(kept)
            out[e] = out[e] * (s0 * k) * (s1 * k)
            code[e] = code[e] | np.int8(kept - 1)
        return
    for m in range(scales.size):
        s = scales[m]
        for e in range(M):
            out[e] = out[e] * s
    if keys.size == 0:
        return
    for e in range(M):
        keep[e] = np.uint8(1)
    for d in range(keys.size):
        u, t = _uniforms(keys[d], e0, M, words[0]), np.uint16(thresholds[d])
        for e in range(M):
            keep[e] = keep[e] & np.uint8(u[e] >= t)
    for e in range(M):
        out[e] = out[e] * out.dtype.type(keep[e])
    for e in range(M):
        code[e] = code[e] | np.int8(np.int32(keep[e]) - 1)


# --- per-sample helpers: gradients through the pool winners ---------------------------------


# The nine taps are laid out as the 3x3 window they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _dw3x3_pool2x2(xp, g, code, dw, db):
    """dw, db += gradients of _conv3x3_pool2x2 for one sample, from the pooled gradient g.

    Each pool window's gradient goes to its winner (code) only: per window, the four candidate
    gradients are g or 0 by code, and each tap adds its four products to dw in one chain of
    fused multiply-adds. The nine taps of a channel are nine 1-D rows, made once per channel:
    LLVM vectorises updates of separate rows along f, not of one 4-D array's. db gets each
    window's gradient in the same pass, with the first channel: g and code are read once, not
    twice (the same sums in the same order as a pass of its own).
    Shapes: xp (>= 2*Hq+2, >= 2*Wq+2, C), g, code (Hq, Wq, F), dw (3, 3, C, F), db (F,).
    """
    Hq, Wq, F = g.shape
    C = xp.shape[2]
    zero = g.dtype.type(0)
    for c in range(C):
        first = c == 0
        w00, w01, w02 = dw[0, 0, c], dw[0, 1, c], dw[0, 2, c]
        w10, w11, w12 = dw[1, 0, c], dw[1, 1, c], dw[1, 2, c]
        w20, w21, w22 = dw[2, 0, c], dw[2, 1, c], dw[2, 2, c]
        for iq in range(Hq):
            i = 2 * iq
            for jq in range(Wq):
                j = 2 * jq
                x00, x01, x02, x03 = xp[i, j, c], xp[i, j + 1, c], xp[i, j + 2, c], xp[i, j + 3, c]
                x10, x11 = xp[i + 1, j, c], xp[i + 1, j + 1, c]
                x12, x13 = xp[i + 1, j + 2, c], xp[i + 1, j + 3, c]
                x20, x21 = xp[i + 2, j, c], xp[i + 2, j + 1, c]
                x22, x23 = xp[i + 2, j + 2, c], xp[i + 2, j + 3, c]
                x30, x31 = xp[i + 3, j, c], xp[i + 3, j + 1, c]
                x32, x33 = xp[i + 3, j + 2, c], xp[i + 3, j + 3, c]
                gr, cr = g[iq, jq], code[iq, jq]
                for f in range(F):
                    k, v = cr[f], gr[f]
                    g0 = v if k == 0 else zero
                    g1 = v if k == 1 else zero
                    g2 = v if k == 2 else zero
                    g3 = v if k == 3 else zero
                    # later channels add 0, which changes no sum that started at +0 (db's)
                    sb = db[f] + (v if (k >= 0) & first else zero)
                    s00 = (((w00[f] + x00 * g0) + x01 * g1) + x10 * g2) + x11 * g3
                    s01 = (((w01[f] + x01 * g0) + x02 * g1) + x11 * g2) + x12 * g3
                    s02 = (((w02[f] + x02 * g0) + x03 * g1) + x12 * g2) + x13 * g3
                    s10 = (((w10[f] + x10 * g0) + x11 * g1) + x20 * g2) + x21 * g3
                    s11 = (((w11[f] + x11 * g0) + x12 * g1) + x21 * g2) + x22 * g3
                    s12 = (((w12[f] + x12 * g0) + x13 * g1) + x22 * g2) + x23 * g3
                    s20 = (((w20[f] + x20 * g0) + x21 * g1) + x30 * g2) + x31 * g3
                    s21 = (((w21[f] + x21 * g0) + x22 * g1) + x31 * g2) + x32 * g3
                    s22 = (((w22[f] + x22 * g0) + x23 * g1) + x32 * g2) + x33 * g3
                    # stored after every load: a store first would make LLVM load them again
                    db[f] = sb
                    w00[f] = s00
                    w01[f] = s01
                    w02[f] = s02
                    w10[f] = s10
                    w11[f] = s11
                    w12[f] = s12
                    w20[f] = s20
                    w21[f] = s21
                    w22[f] = s22
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
def _route_relu(g, code, tile, db_row):
    """_route without a pool: tile (zeroed here first) = g where relu passed it (code >= 0);
    the rows are flat and aligned. Shapes as _route's."""
    Hq, Wq, F = g.shape
    zero = g.dtype.type(0)
    _fill_zero(tile)
    for i in range(Hq):
        gr, cr, tr = g[i].ravel(), code[i].ravel(), tile[i].ravel()  # (Wq*F,) prefix used
        for e in range(Wq * F):
            tr[e] = gr[e] if cr[e] >= 0 else zero
        for e in range(Wq * F):
            db_row[e] += tr[e]


@njit(**JIT)
def _route(g, code, PH, PW, psh, psw, tile, db_row):
    """Send each pooled gradient g to its window's winner in tile (zeroed here first).

    Shapes: g, code (Hq, Wq, F); tile (>= Ho, >= Wo, F); db_row (Wq*F,) += the routed g, by
    (j, f), so the bias gradient is summed with long loops.
    """
    if PH == 1 and PW == 1 and psh == 1 and psw == 1:  # no pooling
        _route_relu(g, code, tile, db_row)
        return
    Hq, Wq, F = g.shape
    zero = g.dtype.type(0)
    _fill_zero(tile)
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
def _winners_dw(g, code, PW, psh, psw, sh, sw, xp, dw_f, db):
    """dw_f, db += the weight and bias gradients of one sample from its pool winners only.

    Of a pooled, relu'd and dropped-out output, at most one conv output per pool window and
    channel gets a gradient (its winner, code >= 0): with 2x2 windows at most 1 in 4 of the
    (Ho, Wo, F) conv outputs, fewer where relu and dropout silence a window. Visiting just
    those, each winner adds its gradient v times its input window to dw, instead of the dense
    products over every conv output. Each window row (KW pixels of C channels) is contiguous
    in xp, and so is each filter row in dw_f (filter axis first): one loop of KW*C per row,
    long enough to vectorise (a loop over C alone, 32 for the deep model, ran scalar).
    Shapes: g, code (Hq, Wq, F); xp (Hp, Wp, C) padded input; dw_f (F, KH, KW, C); db (F,).
    """
    Hq, Wq, F = g.shape
    _, KH, KW, C = dw_f.shape
    Wp = xp.shape[1]
    L = KW * C
    x_flat, dw_flat = xp.ravel(), dw_f.ravel()
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
                    for e in range(L):
                        dw_flat[at_w + e] += v * x_flat[at_x + e]


@njit(**JIT)
def _winners_dw_dx(g, code, PW, psh, psw, sh, sw, xp, w_f, dw_f, db, dxp):
    """_winners_dw, and dxp += each winner's gradient times its filter (the input gradient).

    Shapes: as _winners_dw; w_f (F, KH, KW, C) the kernel filter-first; dxp (Hp, Wp, C) the
    padded input gradient, zeroed by the caller.
    """
    Hq, Wq, F = g.shape
    _, KH, KW, C = w_f.shape
    Wp = xp.shape[1]
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
                r0 = (iq * psh + k // PW) * sh
                s0 = (jq * psw + k % PW) * sw
                for p in range(KH):
                    at_x = max(0, ((r0 + p) * Wp + s0) * C)
                    at_w = max(0, (f * KH + p) * L)
                    for e in range(L):
                        dw_flat[at_w + e] += v * x_flat[at_x + e]
                    for e in range(L):
                        dx_flat[at_x + e] += v * w_flat[at_w + e]


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


# --- chunk kernels: one thread's share of a batch (numba_threads.run_chunks) ------------------
# The seed's layers (3x3 conv, stride 1, then a 2x2 pool, stride 2) have their own helpers; the
# callers (numba_ops) pick the chunk kernel, so a model compiles only the code it runs.
def is_3x3_pool2(g) -> bool:
    """A 3x3 stride-1 conv followed by a 2x2 stride-2 pool (the seed's and deep's layers)."""
    return (g.KH, g.KW, g.sh, g.sw, g.PH, g.PW, g.psh, g.psw) == (3, 3, 1, 1, 2, 2, 2, 2)


@njit(**JIT)
def conv_pool_forward_3x3_c1(x, w, b, g, keys, thresholds, scales, out, code, t, n0, n1):
    """conv_pool_forward for the seed's first layer: one input channel, a 3x3 stride-1 conv and
    a 2x2 stride-2 pool (is_3x3_pool2), each window's four outputs held in registers."""
    F = w.shape[3]
    M = g.Hq * g.Wq * F
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, 1) if padded else (0, 0, 1), x.dtype)
    keep, words = dropout_scratch(M)
    for n in range(n0, n1):
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _conv3x3_pool2x2_c1(src, w, b, out[n], code[n])
        _dropout_rows(out[n].ravel(), code[n].ravel(), n * M, keys, thresholds, scales, keep,
                      words)


@njit(**JIT)
def conv_pool_forward_3x3(x, w, b, g, keys, thresholds, scales, out, code, t, n0, n1):
    """conv_pool_forward for a 3x3 stride-1 conv and a 2x2 stride-2 pool (is_3x3_pool2): the
    four conv outputs of each pool window computed together and pooled in registers."""
    C, F = x.shape[3], w.shape[3]
    M = g.Hq * g.Wq * F
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), x.dtype)
    acc = np.empty((4, F), out.dtype)
    keep, words = dropout_scratch(M)
    for n in range(n0, n1):
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _conv3x3_pool2x2(src, w, b, out[n], code[n], acc)
        _dropout_rows(out[n].ravel(), code[n].ravel(), n * M, keys, thresholds, scales, keep,
                      words)


def is_3x3_no_pool(g) -> bool:
    """A 3x3 stride-1 conv at least four outputs wide and no pool (the deep model's first
    layer): conv_relu_forward_3x3's case."""
    return (g.KH, g.KW, g.sh, g.sw, g.PH, g.PW, g.psh, g.psw) == (3, 3, 1, 1, 1, 1, 1, 1) \
        and g.Wo >= 4


@njit(**JIT)
def conv_relu_forward_3x3(x, w, b, g, keys, thresholds, scales, out, code, t, n0, n1):
    """conv_pool_forward for a 3x3 stride-1 conv with no pool (is_3x3_no_pool): the same
    helpers in the same order, so the same bits, without the general kernel's other routes
    (any kernel and stride, any pool), which it compiles too: on a cold start the deep model's
    first conv compiled for 6.8 s through the general kernel."""
    C, F = x.shape[3], w.shape[3]
    M = g.Hq * g.Wq * F
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), x.dtype)
    z = np.empty((g.Ho, g.Wo, F), out.dtype)  # one sample's conv output
    acc = np.empty((4, F), out.dtype)
    keep, words = dropout_scratch(M)
    for n in range(n0, n1):
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _conv3x3_rows(src, w, b, z, acc)
        _relu(z, out[n], code[n])
        _dropout_rows(out[n].ravel(), code[n].ravel(), n * M, keys, thresholds, scales, keep,
                      words)


@njit(**JIT)
def conv_pool_forward(x, w, b, g, keys, thresholds, scales, out, code, t, n0, n1):
    """out = dropouts(relu(max-pool(conv(x, w) + b))), and each output's winner code, for the
    samples n in [n0, n1) (chunk t); any conv and 'valid' pool (1x1: none).

    code[n, i, j, f] is the winner's row-major index p*PW + q in its pool window, or -1 when no
    gradient flows back (max z <= 0 or NaN, or a dropout dropped the unit), so backward needs
    nothing else. The dropouts: keys, thresholds (D,) uint64 as dropout_mask.mask_key and
    keep_threshold give them (size 0: none), scales (D,) their 1 / (1 - rate); the masks are
    hashed over the batch's C order, so sample n's units are numbered from n * Hq * Wq * F.
    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,) -> out, code (N, Hq, Wq, F) int8;
    g a ConvGeometry. A chunk writes out[n] and code[n] of its own samples only.
    """
    C, F = x.shape[3], w.shape[3]
    M = g.Hq * g.Wq * F
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), x.dtype)
    z = np.empty((g.Ho, g.Wo, F), out.dtype)  # one sample's conv output
    acc = np.empty((4, F), out.dtype)
    best = np.empty(F, out.dtype)
    arg = np.empty(F, np.int8)
    keep, words = dropout_scratch(M)
    for n in range(n0, n1):
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _conv_sample(src, w, b, g.sh, g.sw, z, acc)
        _pool_relu(z, g.PH, g.PW, g.psh, g.psw, out[n], code[n], best, arg)
        _dropout_rows(out[n].ravel(), code[n].ravel(), n * M, keys, thresholds, scales, keep,
                      words)


@njit(**JIT)
def conv_pool_backward_3x3(dout, code, x, scales, g, parts_w, parts_b, t, n0, n1):
    """conv_pool_backward for the seed's layers (is_3x3_pool2, few input channels): each pool
    window's gradient goes straight into the weight gradient, no tile."""
    C, F = x.shape[3], dout.shape[3]
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), dout.dtype)
    gs = np.empty((g.Hq, g.Wq, F), dout.dtype)
    dw = parts_w[t][: 9 * C * F].reshape((3, 3, C, F))
    for n in range(n0, n1):
        _scaled(dout[n].ravel(), scales, gs.ravel())
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _dw3x3_pool2x2(src, gs, code[n], dw, parts_b[t, :F])


@njit(**JIT)
def conv_pool_backward_winners(dout, code, x, scales, g, parts_w, parts_b, t, n0, n1):
    """conv_pool_backward through the pool winners only (many input channels behind a pool):
    parts_w[t] holds the chunk's dw filter-first, (F, KH, KW, C) (_sum_parts_filter_first)."""
    C, F = x.shape[3], dout.shape[3]
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), dout.dtype)
    gs = np.empty((g.Hq, g.Wq, F), dout.dtype)
    dw_f = parts_w[t][: F * g.KH * g.KW * C].reshape((F, g.KH, g.KW, C))
    for n in range(n0, n1):
        _scaled(dout[n].ravel(), scales, gs.ravel())
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _winners_dw(gs, code[n], g.PW, g.psh, g.psw, g.sh, g.sw, src, dw_f, parts_b[t, :F])


@njit(**JIT)
def conv_relu_backward_3x3(dout, code, x, scales, g, parts_w, parts_b, t, n0, n1):
    """conv_pool_backward for conv_relu_forward_3x3's case (is_3x3_no_pool): the same helpers in
    the same order, so the same bits, without the general kernel's other routes (any kernel,
    stride and pool), which it compiles too. Shapes as conv_pool_backward's."""
    C, F = x.shape[3], dout.shape[3]
    Ho, Wo = g.Ho, g.Wo
    padded = g.Hp != g.H or g.Wp != g.W
    Ht, Wt = Ho + Ho % 2, Wo + (-Wo) % 4  # _dw3x3_blocks' 2x4 blocks
    copy_x = padded or Ht != Ho or Wt != Wo
    xp = _zeros((max(g.Hp, Ht + 2), max(g.Wp, Wt + 2), C) if copy_x else (0, 0, C),
                dout.dtype)
    gs = np.empty((g.Hq, g.Wq, F), dout.dtype)
    tile = _zeros((Ht, Wt, F), dout.dtype)
    dw = parts_w[t][: 9 * C * F].reshape((3, 3, C, F))
    for n in range(n0, n1):
        _scaled(dout[n].ravel(), scales, gs.ravel())
        src = _into(x[n], xp, g.pt, g.pl) if copy_x else x[n]
        _route_relu(gs, code[n], tile, parts_b[t])
        _dw3x3_blocks(src, tile, dw)


@njit(**JIT)
def conv_pool_backward(dout, code, x, scales, g, parts_w, parts_b, t, n0, n1):
    """dw, db: the weight and bias gradients of conv_pool_forward for the samples in [n0, n1)
    (no input gradient: the unit is the model's first layer); any conv and pool.

    Per sample the gradient is scaled by the dropouts (in the layers' reverse order) and sent
    to its pool winner through a thread-local (Ho, Wo, F) tile.
    Shapes: dout, code (N, Hq, Wq, F); x (N, H, W, C); scales (D,); g a ConvGeometry ->
    parts_w (T, >= KH*KW*C*F) (dw, (KH, KW, C, F), in the first entries of row t), parts_b
    (T, >= Wq*F) (db by column and filter), each zeroed by the caller, which sums the parts in
    order: chunk t writes only its own row. The caller pads the rows (numba_ops._parts) so that
    no cache line holds two chunks' partial sums: two threads adding to one line would pass it
    back and forth at every update.
    """
    C, F = x.shape[3], dout.shape[3]
    KH, KW, Ho, Wo = g.KH, g.KW, g.Ho, g.Wo
    padded = g.Hp != g.H or g.Wp != g.W
    blocks = KH == 3 and KW == 3 and g.sh == 1 and g.sw == 1
    Ht, Wt = (Ho + Ho % 2, Wo + (-Wo) % 4) if blocks else (Ho, Wo)
    copy_x = padded or Ht != Ho or Wt != Wo
    xp = _zeros((max(g.Hp, Ht + KH - 1), max(g.Wp, Wt + KW - 1), C) if copy_x
                else (0, 0, C), dout.dtype)
    gs = np.empty((g.Hq, g.Wq, F), dout.dtype)
    tile = _zeros((Ht, Wt, F), dout.dtype)
    dw = parts_w[t][: KH * KW * C * F].reshape((KH, KW, C, F))
    for n in range(n0, n1):
        _scaled(dout[n].ravel(), scales, gs.ravel())
        src = _into(x[n], xp, g.pt, g.pl) if copy_x else x[n]
        _route(gs, code[n], g.PH, g.PW, g.psh, g.psw, tile, parts_b[t])
        if blocks:
            _dw3x3_blocks(src, tile, dw)
        else:
            _dw_any(src, tile, Ho, Wo, g.sh, g.sw, dw)


@njit(**JIT)
def conv_pool_backward_dx_winners(dout, code, x, w_f, scales, g, parts_w, parts_b, dx,
                                  t, n0, n1):
    """conv_pool_backward_dx through the pool winners only (many input channels behind a
    pool): w_f (F, KH, KW, C) the kernel filter-first; parts_w[t] filter-first too."""
    C, F = x.shape[3], dout.shape[3]
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), dout.dtype)
    dxp = np.empty((g.Hp, g.Wp, C) if padded else (0, 0, C), dout.dtype)
    gs = np.empty((g.Hq, g.Wq, F), dout.dtype)
    dw_f = parts_w[t][: F * g.KH * g.KW * C].reshape((F, g.KH, g.KW, C))
    for n in range(n0, n1):
        _scaled(dout[n].ravel(), scales, gs.ravel())
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        dst = dxp if padded else dx[n]
        _fill_zero(dst)
        _winners_dw_dx(gs, code[n], g.PW, g.psh, g.psw, g.sh, g.sw, src, w_f, dw_f,
                       parts_b[t, :F], dst)
        if padded:
            _crop(dxp, g.pt, g.pl, dx[n])


@njit(**JIT)
def conv_pool_backward_dx(dout, code, x, w_flip, w_t, scales, g, parts_w, parts_b, dx,
                          t, n0, n1):
    """conv_pool_backward, and dx[n], the input gradient (the unit is not the first layer).

    Shapes: as conv_pool_backward; w_flip, w_t (KH, KW, F, C) from numba_conv.flipped_kernels
    -> also dx (N, H, W, C), of which a chunk writes its own samples only.
    """
    C, F = x.shape[3], dout.shape[3]
    KH, KW, Ho, Wo = g.KH, g.KW, g.Ho, g.Wo
    padded = g.Hp != g.H or g.Wp != g.W
    blocks = KH == 3 and KW == 3 and g.sh == 1 and g.sw == 1
    Ht, Wt = (Ho + Ho % 2, Wo + (-Wo) % 4) if blocks else (Ho, Wo)
    copy_x = padded or Ht != Ho or Wt != Wo
    xp = _zeros((max(g.Hp, Ht + KH - 1), max(g.Wp, Wt + KW - 1), C) if copy_x
                else (0, 0, C), dout.dtype)
    gs = np.empty((g.Hq, g.Wq, F), dout.dtype)
    tile = _zeros((Ht, Wt, F), dout.dtype)
    dzp = _zeros((Ho + 2 * (KH - 1), Wo + 2 * (KW - 1), F), dout.dtype)
    dxp = np.empty((g.Hp, g.Wp, C) if padded else (0, 0, C), dout.dtype)
    acc = np.empty((4, C), dout.dtype)
    zero_c = _zeros((C,), dout.dtype)
    dw = parts_w[t][: KH * KW * C * F].reshape((KH, KW, C, F))
    for n in range(n0, n1):
        _scaled(dout[n].ravel(), scales, gs.ravel())
        src = _into(x[n], xp, g.pt, g.pl) if copy_x else x[n]
        _route(gs, code[n], g.PH, g.PW, g.psh, g.psw, tile, parts_b[t])
        if blocks:
            _dw3x3_blocks(src, tile, dw)
        else:
            _dw_any(src, tile, Ho, Wo, g.sh, g.sw, dw)
        if padded:
            _dx_sample(tile, Ho, Wo, w_flip, w_t, zero_c, g.sh, g.sw, dzp, dxp, acc)
            _crop(dxp, g.pt, g.pl, dx[n])
        else:
            _dx_sample(tile, Ho, Wo, w_flip, w_t, zero_c, g.sh, g.sw, dzp, dx[n], acc)


# --- the seed's whole network: conv + pool + dropouts + flatten + dropouts + Dense ------------
# When the model's last layer, a Dense, follows the unit's Flatten, the unit computes its logits
# too (minicnn.fusion.ConvReluPoolDense): forward, each pair of samples' flattened outputs go
# through the Dense while they are still in cache; backward, each sample's gradient at those
# outputs (dz @ w.T) is made on the fly instead of being written to and read from memory
# (2.8 MB a batch for the seed model). The Dense's weight gradient stays one product over the
# batch (BLAS), in the unit.


@njit(**JIT)
def _dense_dx_rows(dza, dzb, wt, ga, gb):
    """ga = wt.T @ dza and gb = wt.T @ dzb: the gradients at two samples' flattened outputs
    from their logits' gradients.

    Shapes: dza, dzb (K,), wt (K, M) the Dense kernel transposed -> ga, gb (M,). One vectorised
    pass along M per four logits (a pass per logit would load and store g K times: 10 for the
    seed), for both samples at once: each load of wt, which lives in L2, serves two products.
    """
    K, M = wt.shape
    zero = ga.dtype.type(0)
    for e in range(M):
        ga[e] = zero
    for e in range(M):
        gb[e] = zero
    k = 0
    while k + 4 <= K:
        a0, a1, a2, a3 = dza[k], dza[k + 1], dza[k + 2], dza[k + 3]
        b0, b1, b2, b3 = dzb[k], dzb[k + 1], dzb[k + 2], dzb[k + 3]
        for e in range(M):
            u0, u1, u2, u3 = wt[k, e], wt[k + 1, e], wt[k + 2, e], wt[k + 3, e]
            sa = ga[e] + (a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3)
            sb = gb[e] + (b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3)
            ga[e] = sa  # stored after every load (numba_dense's rule)
            gb[e] = sb
        k += 4
    while k < K:
        a, b = dza[k], dzb[k]
        for e in range(M):
            u = wt[k, e]
            sa = ga[e] + a * u
            sb = gb[e] + b * u
            ga[e] = sa
            gb[e] = sb
        k += 1


# The forty products are written out as the sums they are: not for the formatter.
# fmt: off
@njit(**JIT)
def _dense_dx_rows10(z0, z1, z2, z3, wt, s0, s1, g0, g1, g2, g3):
    """g_i = (wt.T @ z_i) * s1 * s0 for four samples: the seed's ten logits (K = 10) behind two
    dropouts (scales s0, s1), in one pass over wt.

    _dense_dx_rows passes over its output once per four logits and once per logit left over,
    and _scaled once more: five loads and stores of each g, and wt read once per two samples.
    Here each g[e] is made in registers and stored once, and each load of wt serves four
    samples: the Dense's input gradient took half the time (README, "How the kernels got
    here"). Each g[e] is the same expression as theirs, in the same order (the logits in two
    blocks of four from +0, then the last two one by one, then times s1 and s0): the same bits.
    Shapes: z0 .. z3 (>= 10,) dL/dlogits; wt (10, M) the Dense kernel transposed; g0 .. g3 (M,).
    """
    M = wt.shape[1]
    zero = g0.dtype.type(0)
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9 = (z0[0], z0[1], z0[2], z0[3], z0[4], z0[5], z0[6],
                                              z0[7], z0[8], z0[9])
    b0, b1, b2, b3, b4, b5, b6, b7, b8, b9 = (z1[0], z1[1], z1[2], z1[3], z1[4], z1[5], z1[6],
                                              z1[7], z1[8], z1[9])
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = (z2[0], z2[1], z2[2], z2[3], z2[4], z2[5], z2[6],
                                              z2[7], z2[8], z2[9])
    d0, d1, d2, d3, d4, d5, d6, d7, d8, d9 = (z3[0], z3[1], z3[2], z3[3], z3[4], z3[5], z3[6],
                                              z3[7], z3[8], z3[9])
    w0, w1, w2, w3, w4 = wt[0], wt[1], wt[2], wt[3], wt[4]
    w5, w6, w7, w8, w9 = wt[5], wt[6], wt[7], wt[8], wt[9]
    for e in range(M):  # vectorised along e
        u0, u1, u2, u3, u4 = w0[e], w1[e], w2[e], w3[e], w4[e]
        u5, u6, u7, u8, u9 = w5[e], w6[e], w7[e], w8[e], w9[e]
        sa = (((zero + (a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3))
               + (a4 * u4 + a5 * u5 + a6 * u6 + a7 * u7)) + a8 * u8) + a9 * u9
        sb = (((zero + (b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3))
               + (b4 * u4 + b5 * u5 + b6 * u6 + b7 * u7)) + b8 * u8) + b9 * u9
        sc = (((zero + (c0 * u0 + c1 * u1 + c2 * u2 + c3 * u3))
               + (c4 * u4 + c5 * u5 + c6 * u6 + c7 * u7)) + c8 * u8) + c9 * u9
        sd = (((zero + (d0 * u0 + d1 * u1 + d2 * u2 + d3 * u3))
               + (d4 * u4 + d5 * u5 + d6 * u6 + d7 * u7)) + d8 * u8) + d9 * u9
        g0[e] = sa * s1 * s0
        g1[e] = sb * s1 * s0
        g2[e] = sc * s1 * s0
        g3[e] = sd * s1 * s0
# fmt: on


@njit(**JIT)
def conv_pool_dense_forward_c1(x, w, b, g, keys, thresholds, scales, wt, bd, out, code, z,
                               t, n0, n1):
    """conv_pool_forward_3x3_c1, then z[n] = out[n].ravel() @ wt.T + bd (the Dense's logits),
    four samples at a time (numba_dense._forward_rows), for the samples [n0, n1) (chunk t).

    Shapes: as conv_pool_forward_3x3_c1; wt (Kp, M) the Dense kernel transposed (M = Hq*Wq*F),
    bd (K,) -> also z (N, K). A chunk writes its own samples' out, code and z only.
    """
    F = w.shape[3]
    M = g.Hq * g.Wq * F
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, 1) if padded else (0, 0, 1), x.dtype)
    keep, words = dropout_scratch(M)
    a = np.empty((8, LANES), z.dtype)
    h = out.reshape((out.shape[0], M))
    for n in range(n0, n1):
        src = _into(x[n], xp, g.pt, g.pl) if padded else x[n]
        _conv3x3_pool2x2_c1(src, w, b, out[n], code[n])
        _dropout_rows(out[n].ravel(), code[n].ravel(), n * M, keys, thresholds, scales, keep,
                      words)
        if (n - n0) % 4 == 3 or n == n1 - 1:  # four samples (or the chunk's last few) are done
            _forward_rows(h, wt, bd, z, n - (n - n0) % 4, n + 1, a[0], a[1], a[2], a[3], a[4],
                          a[5], a[6], a[7])


@njit(**JIT)
def conv_pool_dense_backward_3x3(dz, wt, code, x, scales, g, parts_w, parts_b, t, n0, n1):
    """conv_pool_backward_3x3 with the gradient at the unit's output made from the Dense's:
    per sample (dz[n] @ wt) times the dropout scales, never stored for the batch: two samples'
    at a time (_dense_dx_rows, then _scaled). The seed's Dense(10) has a faster route of its
    own, conv_pool_dense_backward_k10.

    Shapes: dz (N, K) dL/dlogits; wt (K, M) the Dense kernel transposed; code (N, Hq, Wq, F);
    x (N, H, W, C); scales (D,) -> parts_w, parts_b as conv_pool_backward. A chunk writes only
    its own parts.
    """
    C, F = x.shape[3], code.shape[3]
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), x.dtype)
    M = g.Hq * g.Wq * F
    dw = parts_w[t][: 9 * C * F].reshape((3, 3, C, F))
    # two arrays, not rows of one: LLVM then knows they do not overlap, and vectorises
    row_a, row_b = np.empty(M, x.dtype), np.empty(M, x.dtype)
    gs = np.empty((g.Hq, g.Wq, F), x.dtype)
    for n in range(n0, n1, 2):
        m = min(n + 1, n1 - 1)  # an odd last sample pairs with itself: its row made twice
        _dense_dx_rows(dz[n], dz[m], wt, row_a, row_b)
        for i in range(m - n + 1):
            _scaled(row_a if i == 0 else row_b, scales, gs.ravel())
            src = _into(x[n + i], xp, g.pt, g.pl) if padded else x[n + i]
            _dw3x3_pool2x2(src, gs, code[n + i], dw, parts_b[t, :F])


def is_k10(wt, scales) -> bool:
    """The seed's Dense(10) behind two dropouts: conv_pool_dense_backward_k10's case."""
    return wt.shape[0] == 10 and scales.size == 2


@njit(**JIT)
def conv_pool_dense_backward_k10(dz, wt, code, x, scales, g, parts_w, parts_b, t, n0, n1):
    """conv_pool_dense_backward_3x3 for ten logits behind two dropouts (is_k10): four samples'
    gradients at the unit's output a pass, in one pass over wt (_dense_dx_rows10), the same
    bits. A kernel of its own, so that a model compiles only the route it takes.

    Shapes: as conv_pool_dense_backward_3x3, with K = 10 and scales (2,).
    """
    C, F = x.shape[3], code.shape[3]
    padded = g.Hp != g.H or g.Wp != g.W
    xp = _zeros((g.Hp, g.Wp, C) if padded else (0, 0, C), x.dtype)
    M = g.Hq * g.Wq * F
    dw = parts_w[t][: 9 * C * F].reshape((3, 3, C, F))
    # four arrays, not rows of one: LLVM then knows they do not overlap, and vectorises
    rows = (np.empty(M, x.dtype), np.empty(M, x.dtype), np.empty(M, x.dtype),
            np.empty(M, x.dtype))
    for n in range(n0, n1, 4):
        last = n1 - 1  # past the chunk's last sample, that sample again (made, not used)
        _dense_dx_rows10(dz[n], dz[min(n + 1, last)], dz[min(n + 2, last)],
                         dz[min(n + 3, last)], wt, scales[0], scales[1], *rows)
        for i in range(min(4, n1 - n)):
            src = _into(x[n + i], xp, g.pt, g.pl) if padded else x[n + i]
            _dw3x3_pool2x2(src, rows[i].reshape((g.Hq, g.Wq, F)), code[n + i], dw,
                           parts_b[t, :F])


@njit(**JIT)
def conv_pool_dense_backward_c1(dzp, h, dwd, wt, code, x, scales, g, parts_w, parts_b, t, n0,
                                n1):
    """Chunk t of the seed network's whole backward: the Dense's weight gradient for the
    columns [n0*D//N, n1*D//N) (numba_dense.dense_weight_gradient: each column summed over
    every row, so the result does not depend on the chunks), then conv_pool_dense_backward_3x3
    for the samples [n0, n1). One launch instead of two.

    Shapes: dzp (N, Kp) dz zero-padded (numba_dense.pad_and_sum), h (N, D) the flat output,
    -> dwd (D, K), the Dense kernel's gradient; the rest as conv_pool_dense_backward_3x3, which
    reads dzp's first K columns (the padding is never indexed: K comes from wt).
    """
    N, D = h.shape
    dense_weight_gradient(dzp, h, dwd, t, n0 * D // N, n1 * D // N)
    conv_pool_dense_backward_3x3(dzp, wt, code, x, scales, g, parts_w, parts_b, t, n0, n1)


@njit(**JIT)
def conv_pool_dense_backward_c1_k10(dzp, h, dwd, wt, code, x, scales, g, parts_w, parts_b, t,
                                    n0, n1):
    """conv_pool_dense_backward_c1 with conv_pool_dense_backward_k10's route (is_k10)."""
    N, D = h.shape
    dense_weight_gradient(dzp, h, dwd, t, n0 * D // N, n1 * D // N)
    conv_pool_dense_backward_k10(dzp, wt, code, x, scales, g, parts_w, parts_b, t, n0, n1)
