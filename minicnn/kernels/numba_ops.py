"""The 'numba' backend: the same functions and results as naive.py, compiled.

Each function checks and allocates in Python, then runs a chunk kernel (numba_conv,
numba_conv_pool, numba_winograd, numba_pool, numba_dense) on one chunk of the batch per thread
(numba_threads.run_chunks); see naive.py for the conventions. Importing this module compiles
nothing: each kernel compiles on its first call for the dtypes it meets (float32 and float64)
and is cached on disk, so later processes only load it; the wrappers pick the kernel for the
case at hand, so a model compiles only the code it runs. 3x3 stride-1 convolutions with enough
channels run by Winograd F(2x2, 3x3) (numba_winograd); the rule is by conv2d_forward below.

The dense layer's products run on one BLAS thread inside the model's compute scope
(numba_config.compute_scope): two BLAS threads beside the kernels' made a seed-model step
several times slower. Where that single thread is the slower choice (thin products: few
outputs, enough rows), they run on numba_dense's kernels, on all the threads; the rule is by
dense_forward below.

Layers call these one op at a time; the fused conv + relu + max-pool unit the model trains with
(minicnn.fusion) calls conv_pool_forward and conv_pool_backward.
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels import numba_conv, numba_conv_pool, numba_dense, numba_pool, numba_winograd
from minicnn.kernels.geometry import conv_geometry, out_hw
from minicnn.kernels.numba_config import chunks_for
from minicnn.kernels.numba_threads import run_chunks

__all__ = [
    "conv2d_backward_input",
    "conv2d_backward_weights",
    "conv2d_forward",
    "conv_pool_backward",
    "conv_pool_dense_backward",
    "conv_pool_dense_forward",
    "conv_pool_forward",
    "dense_backward",
    "dense_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
]


def _float_arrays(*arrays, bias=None):
    """The arrays as C-contiguous float32 or float64 (np.result_type's choice), and the bias
    (zeros when None) in the same dtype."""
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    out = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
    if bias is not None:
        out.append(np.ascontiguousarray(bias, dtype=dtype))
    return out


def _check_ndim(name, a, ndim):
    if np.ndim(a) != ndim:
        raise ValueError(
            f"Invalid shape for argument {name}. Expected a {ndim}-D array. "
            f"Received: {name}.shape={np.shape(a)}"
        )


# Which convolutions run by Winograd F(2x2, 3x3) (numba_winograd) instead of the direct kernels
# (numba_conv, numba_conv_pool): 3x3, stride 1, enough input channels C and output channels F.
# Winograd does 2.25x fewer multiplications but pays per tile and channel for its transforms,
# and its products are padded to a multiple of 64 output channels: with few input channels (the
# seed's first conv has one) or few outputs the direct kernels win. The rule comes from timing
# both side by side on one thread (a chunk's share of a batch; float32; 8x8, 14x14 and 26x26
# images; C from 2 to 64, F from 16 to 192; plain and fused with a pool): Winograd was ahead
# everywhere inside it, and behind or level just outside.


def _winograd(g, C, F) -> bool:
    """Run this conv (geometry g, C input and F output channels) by Winograd?"""
    return (g.KH, g.KW, g.sh, g.sw) == (3, 3, 1, 1) and (C >= 8 and F >= 48 or
                                                         C >= 16 and F >= 32)


def _winograd_weights(w, b, dtype):
    """(U, bp): the transformed filters and the bias padded to match (numba_winograd)."""
    U = numba_winograd.winograd_filters(w, dtype)
    return U, numba_winograd.padded_bias(b, U.shape[2], dtype)


def _parts(T, size, dtype):
    """Zeroed (T, size + pad) buffers for T chunks' partial sums: the rows padded to whole
    64-byte cache lines plus one, so no line holds two chunks' sums (two threads adding to one
    line would pass it back and forth at every update: measured 1.3x slower on two threads)."""
    per_line = 64 // np.dtype(dtype).itemsize
    return np.zeros((T, size + (-size) % per_line + per_line), dtype)


def _sum_db(parts_b, Wq, db):
    """db[f] = the sum over chunks t and columns j of parts_b[t, j*F + f], in a fixed order."""
    T, F = parts_b.shape[0], db.shape[0]
    rows = np.ascontiguousarray(parts_b[:, : Wq * F]).reshape(T * Wq, F)
    numba_conv._sum_parts(rows, db)


def conv2d_forward(x, w, b, strides, pads):
    """out[n, i, j, f] = b[f] + sum_{p, q, c} x[n, i*sh + p - pt, j*sw + q - pl, c] * w[p, q, c, f].

    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,) or None -> out (N, Ho, Wo, F).
    """
    _check_ndim("x", x, 4)
    _check_ndim("w", w, 4)
    x, w, b = _float_arrays(x, w, bias=np.zeros(np.shape(w)[3]) if b is None else b)
    N, H, W, C = x.shape
    g = conv_geometry((H, W), w.shape[:2], strides, pads)
    out = np.empty((N, g.Ho, g.Wo, w.shape[3]), dtype=x.dtype)
    if _winograd(g, C, w.shape[3]):
        U, bp = _winograd_weights(w, b, x.dtype)
        run_chunks(numba_winograd.winograd_forward, N, x, U, bp, g, out)
    else:
        run_chunks(numba_conv.conv_forward, N, x, w, b, g, out)  # a chunk of samples per thread
    return out


def conv2d_backward_input(dout, w, x_shape, strides, pads):
    """dx = sum over every (i, j, f) whose window covers (r, s) of dout * w.

    Shapes: dout (N, Ho, Wo, F), w (KH, KW, C, F) -> dx x_shape = (N, H, W, C).
    """
    _check_ndim("dout", dout, 4)
    dout, w = _float_arrays(dout, w)
    N, H, W, C = x_shape
    dx = np.empty((N, H, W, C), dtype=dout.dtype)
    w_flip, w_t = numba_conv.flipped_kernels(w)
    g = conv_geometry((H, W), w.shape[:2], strides, pads)
    if _winograd(g, w.shape[3], C) and max(pads) <= 2:
        # stride 1: a convolution of dout, zero-padded by 2 - pad, with w_flip (3, 3, F, C)
        pt, pb, pl, pr = pads
        g_dx = conv_geometry((g.Ho, g.Wo), (3, 3), (1, 1), (2 - pt, 2 - pb, 2 - pl, 2 - pr))
        U, bp = _winograd_weights(w_flip, np.zeros(C, dout.dtype), dout.dtype)
        run_chunks(numba_winograd.winograd_forward, N, dout, U, bp, g_dx, dx)
    else:
        run_chunks(numba_conv.conv_backward_input, N, dout, w_flip, w_t, g, dx)
    return dx


def conv2d_backward_weights(dout, x, kernel_size, strides, pads):
    """dw[p, q, c, f] = sum_{n, i, j} x[n, i*sh + p - pt, j*sw + q - pl, c] * dout[n, i, j, f].

    Shapes: dout (N, Ho, Wo, F), x (N, H, W, C) -> dw (KH, KW, C, F).
    """
    _check_ndim("dout", dout, 4)
    _check_ndim("x", x, 4)
    dout, x = _float_arrays(dout, x)
    N, H, W, C = x.shape
    dw = np.zeros((*kernel_size, C, dout.shape[3]), dtype=dout.dtype)
    g = conv_geometry((H, W), kernel_size, strides, pads)
    T = chunks_for(N)
    parts = _parts(T, dw.size, dw.dtype)  # one partial dw per chunk, summed in order
    run_chunks(numba_conv.conv_backward_weights, N, dout, x, g, parts, chunks=T)
    numba_conv._sum_parts(parts, dw.ravel())
    return dw


def conv_pool_forward(x, w, b, g, keys, thresholds, scales, out, code):
    """The fused unit's forward into the caller's out and code (numba_conv_pool, or
    numba_winograd for a 3x3 stride-1 conv and 2x2 pool with enough channels: _winograd).

    out = dropouts(relu(max-pool(conv(x, w) + b))); code the winners (-1: no gradient).
    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,); g a geometry.ConvGeometry; keys,
    thresholds (D,) uint64, scales (D,) -> out (N, Hq, Wq, F) float, code (N, Hq, Wq, F) int8.
    """
    if numba_conv_pool.is_3x3_pool2(g) and _winograd(g, x.shape[3], w.shape[3]):
        U, bp = _winograd_weights(w, b, x.dtype)
        run_chunks(numba_winograd.winograd_pool_forward, x.shape[0], x, U, bp, g, keys,
                   thresholds, scales, out, code)
        return
    if numba_conv_pool.is_3x3_no_pool(g):
        kernel = numba_conv_pool.conv_relu_forward_3x3
    elif not numba_conv_pool.is_3x3_pool2(g):
        kernel = numba_conv_pool.conv_pool_forward
    elif x.shape[3] == 1:
        kernel = numba_conv_pool.conv_pool_forward_3x3_c1
    else:
        kernel = numba_conv_pool.conv_pool_forward_3x3
    run_chunks(kernel, x.shape[0], x, w, b, g, keys, thresholds, scales, out, code)


def conv_pool_backward(dout, code, x, w, scales, g, dw, db, dx=None):
    """The fused unit's gradients into the caller's dw, db and, unless None, dx.

    Shapes: dout, code (N, Hq, Wq, F); x (N, H, W, C); w (KH, KW, C, F); scales (D,); g the
    forward's ConvGeometry -> dw (KH, KW, C, F), db (F,), dx (N, H, W, C).
    Which chunk kernel: with many input channels behind a pool, the winners-only route; for
    the seed's layers (one channel, 3x3 conv, 2x2 pool) without dx, straight into dw; for a
    3x3 stride-1 conv with no pool (the deep model's first) without dx, the tile route's own
    kernel; else the general tile route (numba_conv_pool).
    """
    N, C, F = dout.shape[0], x.shape[3], w.shape[3]
    T = chunks_for(N)
    winners = C >= numba_conv_pool.SPARSE_MIN_CHANNELS and g.PH * g.PW > 1
    parts_w = _parts(T, dw.size, dw.dtype)  # one partial dw and db per chunk
    parts_b = _parts(T, g.Wq * F, dw.dtype)
    args = (dout, code, x)
    if dx is None:
        if winners:
            kernel = numba_conv_pool.conv_pool_backward_winners
        elif numba_conv_pool.is_3x3_no_pool(g):
            kernel = numba_conv_pool.conv_relu_backward_3x3
        elif numba_conv_pool.is_3x3_pool2(g):
            kernel = numba_conv_pool.conv_pool_backward_3x3
        else:
            kernel = numba_conv_pool.conv_pool_backward
        run_chunks(kernel, N, *args, scales, g, parts_w, parts_b, chunks=T)
    elif winners:
        w_f = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # (F, KH, KW, C)
        run_chunks(numba_conv_pool.conv_pool_backward_dx_winners, N, *args, w_f, scales, g,
                   parts_w, parts_b, dx, chunks=T)
    else:
        w_flip, w_t = numba_conv.flipped_kernels(w)
        run_chunks(numba_conv_pool.conv_pool_backward_dx, N, *args, w_flip, w_t, scales, g,
                   parts_w, parts_b, dx, chunks=T)
    if winners:
        numba_conv_pool._sum_parts_filter_first(parts_w, dw)
    else:
        numba_conv._sum_parts(parts_w, dw.ravel())
    _sum_db(parts_b, g.Wq, db)


def conv_pool_dense_forward(x, w, b, g, keys, thresholds, scales, wt, bd, out, code, z):
    """conv_pool_forward for the seed's layers (one input channel, 3x3 conv, 2x2 pool), then the
    model's last Dense on the flattened output: z = out.reshape(N, -1) @ wt.T + bd.

    Shapes: as conv_pool_forward; wt (K, Hq*Wq*F) the Dense kernel transposed, bd (K,) -> also
    z (N, K), the logits.
    """
    run_chunks(numba_conv_pool.conv_pool_dense_forward_c1, x.shape[0], x, w, b, g, keys,
               thresholds, scales, wt, bd, out, code, z)


def conv_pool_dense_backward(dz, wt, h, code, x, scales, g, dw, db, dwd, dbd):
    """The gradients of conv_pool_dense_forward from the Dense's logit gradient dz (N, K):
    the Dense's dwd = h.T @ dz (D, K) and dbd (K,) on the kernels' threads (numba_dense), then
    the conv's dw (3, 3, C, F), db (F,), the gradient at the unit's output made per sample in
    the kernel from dz and wt (K, D), the Dense kernel transposed; h (N, D) the flat output.
    Both in one launch: each chunk takes its share of the Dense's columns and of the conv's
    samples (numba_conv_pool.conv_pool_dense_backward_c1; _c1_k10 for the seed's Dense(10))."""
    N, F = dz.shape[0], code.shape[3]
    K = dwd.shape[1]
    dzp = np.empty((N, K + (-K) % 4), dz.dtype)
    numba_dense.pad_and_sum(dz, dzp, dbd)
    T = chunks_for(N)
    parts_w = _parts(T, dw.size, dw.dtype)
    parts_b = _parts(T, g.Wq * F, dw.dtype)
    kernel = (numba_conv_pool.conv_pool_dense_backward_c1_k10
              if numba_conv_pool.is_k10(wt, scales) else
              numba_conv_pool.conv_pool_dense_backward_c1)
    run_chunks(kernel, N, dzp, h, dwd, wt, code, x, scales, g, parts_w, parts_b, chunks=T)
    numba_conv._sum_parts(parts_w, dw.ravel())
    _sum_db(parts_b, g.Wq, db)


def maxpool2d_forward(x, pool_size, strides, pads):
    """Max over each window and the row-major index of its first maximum.

    Shapes: x (N, H, W, C) -> out (N, Ho, Wo, C), argmax (N, Ho, Wo, C) int32.
    """
    _check_ndim("x", x, 4)
    (x,) = _float_arrays(x)
    N, H, W, C = x.shape
    Ho, Wo = out_hw((H, W), pool_size, strides, pads)
    out = np.empty((N, Ho, Wo, C), dtype=x.dtype)
    argmax = np.empty((N, Ho, Wo, C), dtype=np.int32)
    run_chunks(numba_pool.maxpool_forward, N, x, pool_size[0], pool_size[1], strides[0],
               strides[1], pads[0], pads[2], out, argmax)
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, pool_size, strides, pads):
    """Route each dout to its window's winner.  dout, argmax (N, Ho, Wo, C) -> dx x_shape."""
    _check_ndim("dout", dout, 4)
    (dout,) = _float_arrays(dout)
    argmax = np.ascontiguousarray(argmax, dtype=np.int32)
    dx = np.empty(x_shape, dtype=dout.dtype)
    run_chunks(numba_pool.maxpool_backward, dout.shape[0], dout, argmax, pool_size[1],
               strides[0], strides[1], pads[0], pads[2], dx)
    return dx


# Which dense products go to the Numba kernels (numba_dense) and which stay NumPy matmuls on one
# BLAS thread: the rule below came from timing both side by side over the shapes the models use
# (the table is in the README, "How the kernels were chosen"):
# * enough work: each kernel call first wakes the sleeping worker threads, which small products
#   do not earn back: N*D*K >= 2**22 multiply-adds for the forward (the seed's 128 x 5408 x 10
#   is 6.9M), >= 2**21 for the backward, whose kernel gains more;
# * few units for the forward: its dot products win up to K ~ 12 (BLAS packs K = 16 as cheaply
#   as K = 10; at K = 1 it runs a matrix-vector product, which it does well). The backward's
#   products stream along d and win from K = 1 to 128.
# BLAS on two threads for the Dense(128) alone ran its products faster but the whole deep step
# slower: its threads keep spinning after the call, against the kernels' threads.
# The products that stay in BLAS run on one BLAS thread per kernel thread: big ones are split
# into one slice per thread (NumPy's matmul releases the GIL, so the slices run at once), the
# Dense(128) of the deep model twice as fast as on one thread; small ones would not repay the
# hand-off.
_BLAS_SPLIT_WORK = 2**22


def _matmul_rows(x, w, out, t, n0, n1):
    """out[n0:n1] = x[n0:n1] @ w on this thread's BLAS (chunk t of the rows)."""
    np.matmul(x[n0:n1], w, out=out[n0:n1])


def _dense_backward_blas(dout, x, w, dx, dw, T, t, t0, t1):
    """Chunk t of T of dx = dout @ w.T (its rows) and dw = x.T @ dout (its rows of dw, i.e.
    columns of x): disjoint slices of dx and dw per chunk."""
    N, D = x.shape
    for c in range(t0, t1):
        n0, n1, d0, d1 = c * N // T, (c + 1) * N // T, c * D // T, (c + 1) * D // T
        np.matmul(dout[n0:n1], w.T, out=dx[n0:n1])
        np.matmul(x[:, d0:d1].T, dout, out=dw[d0:d1])


_FORWARD_UNITS = (2, 12)
_BACKWARD_MAX_UNITS = 128
_FORWARD_MIN_WORK = 2**22
_BACKWARD_MIN_WORK = 2**21


def _dense_forward_on_kernels(N, D, K):
    lo, hi = _FORWARD_UNITS
    return lo <= K <= hi and N * D * K >= _FORWARD_MIN_WORK


def _dense_backward_on_kernels(N, D, K):
    return K <= _BACKWARD_MAX_UNITS and N * D * K >= _BACKWARD_MIN_WORK


def dense_forward(x, w, b):
    """out = x @ w + b.  Shapes: x (N, D), w (D, K), b (K,) or None -> (N, K)."""
    _check_ndim("x", x, 2)
    _check_ndim("w", w, 2)
    x, w = _float_arrays(x, w)
    (N, D), K = x.shape, w.shape[1]
    if not _dense_forward_on_kernels(N, D, K):
        out = np.empty((N, K), dtype=x.dtype)
        if N * D * K >= _BLAS_SPLIT_WORK:
            run_chunks(_matmul_rows, N, x, w, out)
        else:
            np.matmul(x, w, out=out)
        if b is not None:
            out += b
        return out
    b = np.zeros(K, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    out = np.empty((N, K), dtype=x.dtype)
    wt = np.ascontiguousarray(w.T)  # (K, D): the kernel's dot products run along rows of wt
    run_chunks(numba_dense.dense_forward, N, x, wt, b, out)
    return out


def dense_backward(dout, x, w):
    """dx = dout @ w.T, dw = x.T @ dout, db = sum_n dout.  -> (N, D), (D, K), (K,)."""
    _check_ndim("dout", dout, 2)
    dout, x, w = _float_arrays(dout, x, w)
    (N, D), K = x.shape, w.shape[1]
    if not _dense_backward_on_kernels(N, D, K):
        if N * D * K < _BLAS_SPLIT_WORK:
            return dout @ w.T, x.T @ dout, dout.sum(axis=0)
        dx, dw = np.empty_like(x), np.empty_like(w)
        T = chunks_for(min(N, D))
        run_chunks(_dense_backward_blas, T, dout, x, w, dx, dw, T, chunks=T)
        return dx, dw, dout.sum(axis=0)
    dx, dw = np.empty_like(x), np.empty_like(w)
    db = np.empty(K, dtype=dout.dtype)
    dz = np.empty((N, K + (-K) % 4), dout.dtype)
    numba_dense.pad_and_sum(dout, dz, db)
    run_chunks(numba_dense.dense_backward, D, dz, x, w, True, dx, dw)  # chunks of columns
    return dx, dw, db
