"""The 'numba' backend: the same functions and results as naive.py, compiled.

Each function checks and allocates in Python, then calls a private @njit kernel (numba_conv,
numba_pool); see naive.py for the conventions. Importing this module compiles nothing: each
kernel compiles on its first call for the dtypes it meets (float32 and float64) and is cached on
disk, so later processes only load it.

The dense layer's products are GEMMs, which BLAS does best: they stay NumPy matmuls, on one BLAS
thread inside the model's compute scope (numba_config.blas_single_threaded). Two BLAS threads
beside Numba's made a seed-model step 3-5x slower (measured: 4.5 vs 25 ms); one BLAS call per
Numba thread stalled in multiples of 4 ms.

Layers call these one op at a time; the fused conv + relu + max-pool path the model trains with
is numba_fused.py.
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels import numba_conv, numba_pool
from minicnn.kernels.numba_config import chunks_for

__all__ = [
    "conv2d_backward_input",
    "conv2d_backward_weights",
    "conv2d_forward",
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


def _out_hw(hw, k, strides, pads):
    (H, W), (KH, KW), (sh, sw), (pt, pb, pl, pr) = hw, k, strides, pads
    return (H + pt + pb - KH) // sh + 1, (W + pl + pr - KW) // sw + 1


def conv2d_forward(x, w, b, strides, pads):
    """out[n, i, j, f] = b[f] + sum_{p, q, c} x[n, i*sh + p - pt, j*sw + q - pl, c] * w[p, q, c, f].

    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,) or None -> out (N, Ho, Wo, F).
    """
    _check_ndim("x", x, 4)
    _check_ndim("w", w, 4)
    x, w, b = _float_arrays(x, w, bias=np.zeros(np.shape(w)[3]) if b is None else b)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    Ho, Wo = _out_hw((H, W), (KH, KW), strides, pads)
    out = np.empty((N, Ho, Wo, F), dtype=x.dtype)
    geom = numba_conv.geometry((H, W), strides, pads)
    no_keys, no_scales = np.empty(0, np.uint64), np.empty(0, x.dtype)
    no_code = np.empty((0, 0, 0, 0), np.int8)
    if N:
        T = chunks_for(N)  # one chunk of samples per thread
        numba_conv.conv_forward(x, w, b, geom, False, no_keys, no_keys, no_scales, out, no_code, T)
    return out


def conv2d_backward_input(dout, w, x_shape, strides, pads):
    """dx = sum over every (i, j, f) whose window covers (r, s) of dout * w.

    Shapes: dout (N, Ho, Wo, F), w (KH, KW, C, F) -> dx x_shape = (N, H, W, C).
    """
    _check_ndim("dout", dout, 4)
    dout, w = _float_arrays(dout, w)
    N, H, W, C = x_shape
    w_flip, w_t = numba_conv.flipped_kernels(w)
    dx = np.empty((N, H, W, C), dtype=dout.dtype)
    if N:
        no_x, no_dw = np.empty((0, 0, 0, 0), dout.dtype), np.empty(w.shape, dout.dtype)
        _conv_backward(dout, no_x, w_flip, w_t, (H, W), strides, pads, False, True, no_dw, dx)
    return dx


def conv2d_backward_weights(dout, x, kernel_size, strides, pads):
    """dw[p, q, c, f] = sum_{n, i, j} x[n, i*sh + p - pt, j*sw + q - pl, c] * dout[n, i, j, f].

    Shapes: dout (N, Ho, Wo, F), x (N, H, W, C) -> dw (KH, KW, C, F).
    """
    _check_ndim("dout", dout, 4)
    _check_ndim("x", x, 4)
    dout, x = _float_arrays(dout, x)
    N, H, W, C = x.shape
    F = dout.shape[3]
    dw = np.zeros((*kernel_size, C, F), dtype=dout.dtype)
    if N:
        w_t = np.empty((*kernel_size, F, C), dout.dtype)  # only its shape is read
        no_dx = np.empty((0, 0, 0, 0), dout.dtype)
        _conv_backward(dout, x, w_t, w_t, (H, W), strides, pads, True, False, dw, no_dx)
    return dw


def _conv_backward(dout, x, w_flip, w_t, hw, strides, pads, need_dw, need_dx, dw, dx):
    """The gradient of a plain convolution: the fused kernel, with no pooling code to route."""
    no_code, no_scales = np.empty((0, 0, 0, 0), np.int8), np.empty(0, dout.dtype)
    no_db = np.empty(dw.shape[3], dout.dtype)
    geom, T = numba_conv.geometry(hw, strides, pads), chunks_for(dout.shape[0])
    numba_conv.conv_backward(
        dout, no_code, x, w_flip, w_t, no_scales, geom, need_dw, need_dx, dw, no_db, dx, T
    )


def maxpool2d_forward(x, pool_size, strides, pads):
    """Max over each window and the row-major index of its first maximum.

    Shapes: x (N, H, W, C) -> out (N, Ho, Wo, C), argmax (N, Ho, Wo, C) int32.
    """
    _check_ndim("x", x, 4)
    (x,) = _float_arrays(x)
    N, H, W, C = x.shape
    Ho, Wo = _out_hw((H, W), pool_size, strides, pads)
    out = np.empty((N, Ho, Wo, C), dtype=x.dtype)
    argmax = np.empty((N, Ho, Wo, C), dtype=np.int32)
    numba_pool.maxpool_forward(
        x, pool_size[0], pool_size[1], strides[0], strides[1], pads[0], pads[2], out, argmax
    )
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, pool_size, strides, pads):
    """Route each dout to its window's winner.  dout, argmax (N, Ho, Wo, C) -> dx x_shape."""
    _check_ndim("dout", dout, 4)
    (dout,) = _float_arrays(dout)
    argmax = np.ascontiguousarray(argmax, dtype=np.int32)
    dx = np.empty(x_shape, dtype=dout.dtype)
    numba_pool.maxpool_backward(
        dout, argmax, pool_size[1], strides[0], strides[1], pads[0], pads[2], dx
    )
    return dx


def dense_forward(x, w, b):
    """out = x @ w + b.  Shapes: x (N, D), w (D, K), b (K,) or None -> (N, K)."""
    _check_ndim("x", x, 2)
    _check_ndim("w", w, 2)
    x, w = _float_arrays(x, w)
    out = x @ w
    if b is not None:
        out += b
    return out


def dense_backward(dout, x, w):
    """dx = dout @ w.T, dw = x.T @ dout, db = sum_n dout.  -> (N, D), (D, K), (K,)."""
    _check_ndim("dout", dout, 2)
    dout, x, w = _float_arrays(dout, x, w)
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
