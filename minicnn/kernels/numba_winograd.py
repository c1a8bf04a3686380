"""Winograd F(2x2, 3x3) convolution in Numba: 3x3 stride-1 convs with many input channels.

The algorithm (naive.winograd_conv2d_forward is its NumPy twin, with the matrices and the
equations). Each 2x2 block of outputs comes from the 4x4 input tile d under it (tiles overlap
by 2) as

    Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A        (* : elementwise, 4x4)

per filter: 16 multiplications per channel and filter for 4 outputs instead of 36, 2.25x
fewer. Summed over the channels, the 16 elementwise products are 16 independent matrix products

    M[xi] (tiles, F) = V[xi] (tiles, C) @ U[xi] (C, F),        xi = 0 .. 15

with V = B^T d B per tile and channel (the input transform) and U = G g G^T per channel and
filter (the filter transform, once per call in NumPy: winograd_filters). Per sample and block
of at most TB_MAX tiles, a chunk kernel runs the three steps:

1. _input_block: each tile's 4x4xC input -> V (16, tiles, C)
2. _products: the 16 products, by a register-blocked micro-kernel
3. _output_block: M (16, tiles, Fp) -> each tile's 2x2xF outputs + bias; or, fused
   (_pool_block), the tile is one 2x2 pool window: its max, relu and winner code, as
   numba_conv_pool's fused kernels write them; then the sample's dropouts (_dropout_rows).

A block's V, M and U stay in the core's L2 (the deep model's 32 -> 64 conv, 48 tiles: 98 +
197 + 131 KB), and each product's V[xi], U[xi], M[xi] in L1.

Registers, and why the scratch lives on the stack. The micro-kernel keeps an R x FK block of M
(4 x 64 with AVX-512: 16 registers; 4 x 16 with AVX2: 8) in registers across the whole sum over
channels, loading one row of U and broadcasting four values of V per channel. LLVM does that
only with an accumulator it can prove nothing else touches: a stack buffer (_stack_array),
which it then turns into registers. A heap buffer (np.empty) might alias the inputs, so every
+= went to memory and back, at a third of the speed or less. The same proof lets LLVM vectorise
the transforms without run-time overlap checks, hence their shape: every loop moves data
between the heap and a stack buffer (or within the stack), never from one heap array to
another. With AVX-512, FK is 64 because micro-kernels 16 or 32 wide compiled to scalar code
there (LLVM unrolls their short loops before it vectorises them); with AVX2, 16 wide vectorises
and 64 spills (_micro_kernel_filters). U and M are padded to a multiple of FB = 64 filters.

Compile time. The helpers are inline="always": Numba splices them into the chunk kernel before
LLVM sees it, so each is optimised once, inside the one kernel a model uses, instead of once on
its own and again in every caller it is linked into (a cold compile about 1.5x faster).

Numerics. The transforms only add and subtract (G's halves are exact), so the result differs
from the direct sum by rounding only: about as close to float64 as the direct kernels (the tests
and benchmark measure it). Non-finite inputs: the transforms mix a tile's 16 pixels, so an inf or
NaN input makes all four outputs of each tile that holds it non-finite (inf - inf = NaN), where
the direct kernels keep it to the outputs whose 3x3 window holds it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from minicnn.kernels.numba_config import JIT
from minicnn.kernels.numba_conv_pool import _dropout_rows, _wins, dropout_scratch

R = 4  # tiles per micro-kernel pass (its x0..x3 below)
FB = 64  # U and M are padded to a multiple of FB filters


def _micro_kernel_filters() -> int:
    """FK, the filters per micro-kernel pass (a divisor of FB): an R x FK accumulator must fit
    the vector registers. With AVX-512 (32 registers of 16 floats) 64: 16 registers. With AVX2
    (16 registers of 8 floats) 64 would need 32, and the spills cost 3x: on an AMD EPYC (Zen 3)
    the deep model's 16 products of a 48-tile block took 0.105 ms at FK = 64 and 0.036 ms at
    FK = 16 (15 -> 44 G multiply-adds/s on one core, the same bits). The features are those
    Numba compiles for (a user's NUMBA_CPU_FEATURES, else the host's), and its disk cache is
    keyed by them, so a kernel compiled for one width is never loaded on the other kind of CPU."""
    from numba.core.codegen import get_host_cpu_features

    features = numba.config.CPU_FEATURES or get_host_cpu_features()
    return 64 if "+avx512f" in features.split(",") else 16


FK = _micro_kernel_filters()
# With FK = 16, _products inlined into the chunk kernels ran at 11 G multiply-adds/s, as its own
# function at 31 (the deep conv's 64-sample forward 27 -> 9.8 ms on the Zen 3); with AVX-512 it
# stays inlined, as it was measured.
_INLINE_PRODUCTS = "always" if FK == 64 else "never"
CB = 64  # at most this many channels (or filters) per transform pass
TB_MAX = 64  # at most this many tiles per block (the working set in L2)
# Sizes of the stack buffers: module constants, which Numba compiles in as literals (_alloca
# needs a literal; an expression like 16 * CB in a kernel is a run-time int to it).
_SIZE_ACC, _SIZE_TILE, _SIZE_ROWS = R * FK, 16 * CB, 8 * CB


def _times_g(a):
    """G a along the first axis, (3, ...) -> (4, ...), with G = [[1, 0, 0], [1/2, 1/2, 1/2],
    [1/2, -1/2, 1/2], [0, 0, 1]] (naive.WINOGRAD_G) written out: elementwise NumPy, no BLAS (a
    BLAS call here, outside the model's one-thread scope, left OpenBLAS's threads spinning
    against the kernel's: the conv ran many times slower)."""
    a0, a1, a2 = a[0], a[1], a[2]
    return np.stack([a0, (a0 + a1 + a2) * 0.5, (a0 - a1 + a2) * 0.5, a2])


def winograd_filters(w, dtype):
    """U (16, C, Fp): U[4i + j, c, f] = (G w[:, :, c, f] G^T)[i, j], zero for f >= F, where Fp
    is F rounded up to a multiple of FB. Plain NumPy, once per call (w is small); computed in
    float64, rounded once to dtype.  Shapes: w (3, 3, C, F)."""
    _, _, C, F = w.shape
    Fp = -(-F // FB) * FB
    Gw = _times_g(np.asarray(w, np.float64))  # (4, 3, C, F): G along p
    GwG = _times_g(Gw.swapaxes(0, 1)).swapaxes(0, 1)  # (4, 4, C, F): and G along q
    U = np.zeros((16, C, Fp), dtype)
    U[..., :F] = GwG.reshape(16, C, F)
    return U


def padded_bias(b, Fp, dtype):
    """b (F,) zero-padded to (Fp,): the output transform adds bias to whole CB-wide passes."""
    bp = np.zeros(Fp, dtype)
    bp[: len(b)] = b
    return bp


# --- scratch on the stack --------------------------------------------------------------------
if numba.config.DISABLE_JIT:  # the kernels as plain Python (the tests' NUMBA_DISABLE_JIT run)

    def _stack_array(n, dtype):
        return np.empty(n, dtype)

else:

    @intrinsic
    def _alloca(typingctx, n, dtype):
        """A pointer to n (a compile-time constant) elements of dtype in the calling function's
        stack frame, 64-byte aligned."""
        if not isinstance(n, types.IntegerLiteral):
            return None
        count = n.literal_value
        item = dtype.dtype if isinstance(dtype, types.DType) else dtype.instance_type

        def codegen(context, builder, signature, args):
            ptr = cgutils.alloca_once(builder, context.get_data_type(item), size=count)
            ptr.align = 64
            return ptr

        return types.CPointer(item)(n, dtype), codegen

    # inline="always" puts the alloca in the caller's own frame (Numba inlines the IR before
    # lowering): the array must not outlive the function that asked for it.
    @njit(inline="always")
    def _stack_array(n, dtype):
        """np.empty(n, dtype) on the stack: n must be a constant; valid until the caller
        returns."""
        return carray(_alloca(n, dtype), n)


# --- step 1: input transform V = B^T d B -----------------------------------------------------
# B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]: the row combinations
# r0 - r2, r1 + r2, r2 - r1, r1 - r3, applied to the columns of d, then to the rows of B^T d.
@njit(inline="always", **JIT)
def _gather_tile(x, n, r0, s0, patch):
    """patch (4*4*C,) = the 4x4 tile of x[n] at (r0, s0), zero outside the image (padding, and
    the row or column past an odd output size)."""
    _, H, W, C = x.shape
    zero = patch.dtype.type(0)
    for i in range(4):
        for j in range(4):
            r, s = r0 + i, s0 + j
            inside = 0 <= r < H and 0 <= s < W
            for c in range(C):
                patch[(4 * i + j) * C + c] = x[n, r, s, c] if inside else zero


@njit(inline="always", **JIT)
def _input_block(x, n, pt, pl, tw, k0, k1, patch, V, TB):
    """V[xi, k - k0, c] = (B^T d B)[xi] of tile k's 4x4 input d in channel c, for the tiles
    k0 .. k1-1 of sample n (row-major, tw a row; tile (ti, tj) reads x at (2ti - pt, 2tj - pl)).

    Shapes: x (N, H, W, C); V flat (16, TB, C); patch (16*C,) scratch for border tiles.
    Up to CB channels a pass, through the stack buffer t (16, CB).
    """
    _, H, W, C = x.shape
    xf = x.ravel()
    t = _stack_array(_SIZE_TILE, V.dtype)
    vs = TB * C  # between the planes V[xi]
    for k in range(k0, k1):
        r0, s0 = 2 * (k // tw) - pt, 2 * (k % tw) - pl
        if 0 <= r0 and r0 + 4 <= H and 0 <= s0 and s0 + 4 <= W:
            src, base, rs = xf, ((n * H + r0) * W + s0) * C, W * C
        else:  # a tile over the border: zeros outside
            _gather_tile(x, n, r0, s0, patch)
            src, base, rs = patch, 0, 4 * C
        vb = (k - k0) * C
        for c0 in range(0, C, CB):
            nc = min(CB, C - c0)
            for j in range(4):  # t = B^T d, column j: the tile's rows combined (heap -> stack)
                # max: shows Numba the indices are >= 0, so it drops the negative-index
                # wraparound (which turns vector loads into gathers)
                a0, a1 = max(0, base + j * C + c0), max(0, base + rs + j * C + c0)
                a2, a3 = max(0, base + 2 * rs + j * C + c0), max(0, base + 3 * rs + j * C + c0)
                for e in range(nc):
                    x0, x1, x2, x3 = src[a0 + e], src[a1 + e], src[a2 + e], src[a3 + e]
                    t[j * CB + e] = x0 - x2
                    t[(4 + j) * CB + e] = x1 + x2
                    t[(8 + j) * CB + e] = x2 - x1
                    t[(12 + j) * CB + e] = x1 - x3
            for i in range(4):  # V = t B, row i: its columns combined (stack -> heap)
                r = 4 * i * CB
                a0 = max(0, 4 * i * vs + vb + c0)
                a1, a2, a3 = max(0, a0 + vs), max(0, a0 + 2 * vs), max(0, a0 + 3 * vs)
                for e in range(nc):
                    x0, x1 = t[r + e], t[r + CB + e]
                    x2, x3 = t[r + 2 * CB + e], t[r + 3 * CB + e]
                    V[a0 + e] = x0 - x2
                    V[a1 + e] = x1 + x2
                    V[a2 + e] = x2 - x1
                    V[a3 + e] = x1 - x3


# --- step 2: the 16 products M[xi] = V[xi] @ U[xi] -------------------------------------------
@njit(inline=_INLINE_PRODUCTS, **JIT)
def _products(V, U, M, TB, T, C, Fp):
    """M[xi, :T] = V[xi, :T] @ U[xi] for xi = 0 .. 15, R tiles by FK filters at a time.

    Shapes (flat): V (16, TB, C), U (16, C, Fp), M (16, TB, Fp); T <= TB, T % R == 0,
    Fp % FB == 0 (FB a multiple of FK).
    The accumulator acc (R, FK) is on the stack, so LLVM keeps it in registers over the sum
    (module docstring): per channel, one row of U (FK values) and R broadcasts of V feed R*FK
    multiply-adds.
    """
    acc = _stack_array(_SIZE_ACC, M.dtype)
    zero = M.dtype.type(0)
    for xi in range(16):
        for f0 in range(0, Fp, FK):
            for t in range(0, T, R):
                for e in range(R * FK):
                    acc[e] = zero
                for c in range(C):
                    vb = max(0, (xi * TB + t) * C + c)  # max: no wraparound check
                    ub = max(0, (xi * C + c) * Fp + f0)
                    x0, x1, x2, x3 = V[vb], V[vb + C], V[vb + 2 * C], V[vb + 3 * C]
                    for k in range(FK):
                        u = U[ub + k]
                        acc[k] += x0 * u
                        acc[FK + k] += x1 * u
                        acc[2 * FK + k] += x2 * u
                        acc[3 * FK + k] += x3 * u
                for i in range(R):
                    mb = max(0, (xi * TB + t + i) * Fp + f0)
                    for k in range(FK):
                        M[mb + k] = acc[i * FK + k]


# --- step 3: output transform Y = A^T m A --------------------------------------------------
# A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]: the row combinations r0 + r1 + r2 and r1 - r2 - r3,
# applied to the columns of m, then to the rows of A^T m.
@njit(inline="always", **JIT)
def _output_rows(M, mbase, ms, f0, s):
    """s (8, CB) = A^T m for filters f0 .. f0+CB-1 of one tile: s[4i + j] = row i, column j,
    from m[xi] = M[xi*ms + mbase + f0 : ... + CB] (M flat, xi = 4i + j; heap -> stack)."""
    for j in range(4):
        a0, a1 = max(0, j * ms + mbase + f0), max(0, (4 + j) * ms + mbase + f0)
        a2, a3 = max(0, (8 + j) * ms + mbase + f0), max(0, (12 + j) * ms + mbase + f0)
        for e in range(CB):
            m0, m1, m2, m3 = M[a0 + e], M[a1 + e], M[a2 + e], M[a3 + e]
            s[j * CB + e] = m0 + m1 + m2
            s[(4 + j) * CB + e] = m1 - m2 - m3


@njit(inline="always", **JIT)
def _output_block(M, TB, k0, k1, tw, bp, out, n):
    """out[n, 2ti + i, 2tj + j, :] = Y[i, j] + bp[:F] of the tiles k0 .. k1-1 of sample n
    ((ti, tj) = divmod(k, tw)), each output inside the image (odd sizes crop the last tiles).

    Shapes: M flat (16, TB, Fp); bp (Fp,); out (N, Ho, Wo, F).
    """
    _, Ho, Wo, F = out.shape
    Fp = bp.shape[0]
    of = out.ravel()
    s = _stack_array(_SIZE_ROWS, M.dtype)
    for k in range(k0, k1):
        ti, tj = k // tw, k % tw
        rows, cols = min(2, Ho - 2 * ti), min(2, Wo - 2 * tj)
        for f0 in range(0, F, CB):
            nf = min(CB, F - f0)
            fb = max(0, f0)
            _output_rows(M, (k - k0) * Fp, TB * Fp, f0, s)
            for i in range(rows):  # Y = s A + b, one output pixel a loop (stack -> heap)
                r, at = 4 * i * CB, max(0, ((n * Ho + 2 * ti + i) * Wo + 2 * tj) * F + f0)
                for e in range(nf):
                    of[at + e] = s[r + e] + s[r + CB + e] + s[r + 2 * CB + e] + bp[fb + e]
                if cols == 2:
                    at = max(0, at + F)
                    for e in range(nf):
                        of[at + e] = (s[r + CB + e] - s[r + 2 * CB + e] - s[r + 3 * CB + e]
                                      + bp[fb + e])


@njit(inline="always", **JIT)
def _pool_block(M, TB, k0, k1, bp, out, code, n):
    """out[n, ti, tj, f] = relu(max of tile k's four outputs + bias) and code[n, ti, tj, f] its
    winner (row-major, or -1), for the tiles k0 .. k1-1 of sample n, as
    numba_conv_pool._conv3x3_pool2x2 writes them: the first maximum stays and NaN propagates
    (_wins), relu after the max.  Shapes: M flat (16, TB, Fp); bp (Fp,); out, code (N, Hq, Wq,
    F), tile k = pool window (ti, tj) = divmod(k, Wq).
    """
    _, Hq, Wq, F = out.shape
    Fp = bp.shape[0]
    of, cf = out.ravel(), code.ravel()
    s = _stack_array(_SIZE_ROWS, M.dtype)
    o = _stack_array(CB, M.dtype)
    cd = _stack_array(CB, np.int8)
    zero = M.dtype.type(0)
    for k in range(k0, k1):
        for f0 in range(0, F, CB):
            nf = min(CB, F - f0)
            fb = max(0, f0)
            _output_rows(M, (k - k0) * Fp, TB * Fp, f0, s)
            for e in range(CB):  # Y = s A + b, then the window's first maximum
                b = bp[fb + e]
                y0 = s[e] + s[CB + e] + s[2 * CB + e] + b
                y1 = s[CB + e] - s[2 * CB + e] - s[3 * CB + e] + b
                y2 = s[4 * CB + e] + s[5 * CB + e] + s[6 * CB + e] + b
                y3 = s[5 * CB + e] - s[6 * CB + e] - s[7 * CB + e] + b
                v, w = y0, np.int8(0)
                w = np.int8(1) if _wins(y1, v) else w
                v = y1 if _wins(y1, v) else v
                w = np.int8(2) if _wins(y2, v) else w
                v = y2 if _wins(y2, v) else v
                w = np.int8(3) if _wins(y3, v) else w
                v = y3 if _wins(y3, v) else v
                o[e] = v if not v <= zero else zero  # relu; NaN passes
                cd[e] = w if v > zero else np.int8(-1)
            at = max(0, (n * Hq * Wq + k) * F + f0)
            for e in range(nf):
                of[at + e] = o[e]
            for e in range(nf):
                cf[at + e] = cd[e]


# --- chunk kernels: one thread's share of a batch (numba_threads.run_chunks) ------------------
@njit(inline="always", **JIT)
def _block_size(T):
    """TB: T tiles in blocks of at most TB_MAX, as even as possible, TB a multiple of R."""
    nb = max(1, (T + TB_MAX - 1) // TB_MAX)
    per_block = (T + nb - 1) // nb
    return (per_block + R - 1) // R * R


@njit(**JIT)
def winograd_forward(x, U, bp, g, out, t, n0, n1):
    """out[n] = conv(x[n], w) + b for the samples n in [n0, n1) (chunk t), 3x3 stride 1.

    Shapes: x (N, H, W, C); U (16, C, Fp) = winograd_filters(w), bp (Fp,) = padded_bias(b) ->
    out (N, Ho, Wo, F); g a ConvGeometry (any pads; odd Ho, Wo: the last tiles are cropped).
    A chunk writes out[n] of its own samples only: chunks never share memory.
    """
    C, Fp = x.shape[3], U.shape[2]
    tw = (g.Wo + 1) // 2
    T = (g.Ho + 1) // 2 * tw
    TB = _block_size(T)
    # rows of V past a block's last tile hold stale values: their products are never read
    V = np.empty(16 * TB * C, x.dtype)
    M = np.empty(16 * TB * Fp, x.dtype)
    patch = np.empty(16 * C, x.dtype)
    Uf = U.ravel()
    for n in range(n0, n1):
        for k0 in range(0, T, TB):
            k1 = min(T, k0 + TB)
            _input_block(x, n, g.pt, g.pl, tw, k0, k1, patch, V, TB)
            _products(V, Uf, M, TB, -(-(k1 - k0) // R) * R, C, Fp)
            _output_block(M, TB, k0, k1, tw, bp, out, n)


@njit(**JIT)
def winograd_pool_forward(x, U, bp, g, keys, thresholds, scales, out, code, t, n0, n1):
    """numba_conv_pool.conv_pool_forward for a 3x3 stride-1 conv and a 2x2 stride-2 pool
    (is_3x3_pool2) by Winograd: each tile is one pool window (an odd last conv row or column,
    which 'valid' pooling drops, is never computed).

    Shapes: x (N, H, W, C); U, bp as winograd_forward; keys, thresholds, scales (D,) the
    dropouts -> out (N, Hq, Wq, F), code (N, Hq, Wq, F) int8; g a ConvGeometry.
    A chunk writes out[n] and code[n] of its own samples only: chunks never share memory.
    """
    C, F, Fp = x.shape[3], out.shape[3], U.shape[2]
    T = g.Hq * g.Wq
    TB = _block_size(T)
    V = np.empty(16 * TB * C, x.dtype)  # stale rows past a block's last tile: never read
    M = np.empty(16 * TB * Fp, x.dtype)
    patch = np.empty(16 * C, x.dtype)
    keep, words = dropout_scratch(T * F)
    Uf = U.ravel()
    for n in range(n0, n1):
        for k0 in range(0, T, TB):
            k1 = min(T, k0 + TB)
            _input_block(x, n, g.pt, g.pl, g.Wq, k0, k1, patch, V, TB)
            _products(V, Uf, M, TB, -(-(k1 - k0) // R) * R, C, Fp)
            _pool_block(M, TB, k0, k1, bp, out, code, n)
        _dropout_rows(out[n].ravel(), code[n].ravel(), n * T * F, keys, thresholds, scales,
                      keep, words)
