"""Vectorised NumPy kernels: im2col + BLAS for convolution, strided windows for pooling.

Same signatures and results as ``naive.py`` (see its docstring for the conventions); the layers
use these when the backend is 'numpy'. Every function allocates its output.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minicnn.kernels.geometry import out_hw


def pad_nhwc(x, pads, value=0.0):
    """Pad the two spatial axes of x (N, H, W, C) by (top, bottom, left, right)."""
    pt, pb, pl, pr = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def _windows(xp, kh, kw, strides, ho, wo):
    """View of every (kh, kw) window of padded xp: (N, Ho, Wo, C, KH, KW), no copy."""
    v = sliding_window_view(xp, (kh, kw), axis=(1, 2))
    return v[:, : (ho - 1) * strides[0] + 1 : strides[0], : (wo - 1) * strides[1] + 1 : strides[1]]


def _out_hw(x_shape, k, strides, pads):
    return out_hw(x_shape[1:3], k, strides, pads)


def im2col(x, kernel_size, strides, pads):
    """Copy every receptive field into a row: (N, H, W, C) -> (N*Ho*Wo, KH*KW*C), (Ho, Wo).

    Row order matches w.reshape(KH*KW*C, F), so conv = im2col(x) @ w.reshape(-1, F).
    """
    KH, KW = kernel_size
    Ho, Wo = _out_hw(x.shape, kernel_size, strides, pads)
    win = _windows(pad_nhwc(x, pads), KH, KW, strides, Ho, Wo)  # (N, Ho, Wo, C, KH, KW)
    cols = win.transpose(0, 1, 2, 4, 5, 3)  # (N, Ho, Wo, KH, KW, C)
    return cols.reshape(-1, KH * KW * x.shape[3]), (Ho, Wo)


def conv2d_forward(x, w, b, strides, pads):
    """im2col + one GEMM.  Shapes: x (N, H, W, C), w (KH, KW, C, F) -> (N, Ho, Wo, F)."""
    KH, KW, C, F = w.shape
    cols, (Ho, Wo) = im2col(x, (KH, KW), strides, pads)
    out = cols @ w.reshape(-1, F)  # (N*Ho*Wo, F)
    if b is not None:
        out += b
    return out.reshape(x.shape[0], Ho, Wo, F)


def conv2d_forward_offsets(x, w, b, strides, pads):
    """The strided-window variant: one small GEMM per kernel offset (p, q), no im2col copy.

    out += x_pad[:, p::sh, q::sw, :] @ w[p, q] for each of the KH*KW offsets.
    Shapes: x (N, H, W, C), w (KH, KW, C, F) -> (N, Ho, Wo, F).
    """
    KH, KW, C, F = w.shape
    sh, sw = strides
    Ho, Wo = _out_hw(x.shape, (KH, KW), strides, pads)
    xp = pad_nhwc(x, pads)
    out = np.zeros((x.shape[0], Ho, Wo, F), dtype=np.result_type(x, w))
    for p in range(KH):
        for q in range(KW):
            win = xp[:, p : p + (Ho - 1) * sh + 1 : sh, q : q + (Wo - 1) * sw + 1 : sw, :]
            out += win @ w[p, q]  # (N, Ho, Wo, C) @ (C, F)
    if b is not None:
        out += b
    return out


def conv2d_backward_input(dout, w, x_shape, strides, pads):
    """Scatter dout back through each kernel offset.  dout (N, Ho, Wo, F) -> dx x_shape."""
    KH, KW, C, F = w.shape
    N, H, W, _ = x_shape
    _, Ho, Wo, _ = dout.shape
    sh, sw = strides
    pt, pb, pl, pr = pads
    dxp = np.zeros((N, H + pt + pb, W + pl + pr, C), dtype=np.result_type(dout, w))
    for p in range(KH):
        for q in range(KW):
            dxp[:, p : p + (Ho - 1) * sh + 1 : sh, q : q + (Wo - 1) * sw + 1 : sw, :] += (
                dout @ w[p, q].T  # (N, Ho, Wo, C)
            )
    return dxp[:, pt : pt + H, pl : pl + W, :]


def conv2d_backward_weights(dout, x, kernel_size, strides, pads):
    """dw = im2col(x).T @ dout.  dout (N, Ho, Wo, F), x (N, H, W, C) -> dw (KH, KW, C, F)."""
    KH, KW = kernel_size
    F = dout.shape[3]
    cols, _ = im2col(x, kernel_size, strides, pads)
    return (cols.T @ dout.reshape(-1, F)).reshape(KH, KW, x.shape[3], F)


def maxpool2d_forward(x, pool_size, strides, pads):
    """Max over each window, and the row-major index of its first maximum.

    Shapes: x (N, H, W, C) -> out (N, Ho, Wo, C), argmax (N, Ho, Wo, C) int32.
    """
    PH, PW = pool_size
    Ho, Wo = _out_hw(x.shape, pool_size, strides, pads)
    # -inf padding can never win a window that holds at least one real pixel
    win = _windows(pad_nhwc(x, pads, -np.inf), PH, PW, strides, Ho, Wo)
    flat = win.reshape(*win.shape[:4], PH * PW)  # (N, Ho, Wo, C, PH*PW)
    # argmax returns the first maximum, or the first NaN: the rule of the other backends
    argmax = flat.argmax(axis=-1).astype(np.int32)
    out = np.take_along_axis(flat, argmax[..., None].astype(np.intp), axis=-1)[..., 0]
    return out.astype(x.dtype, copy=False), argmax


def maxpool2d_backward(dout, argmax, x_shape, pool_size, strides, pads):
    """Scatter-add dout to each window's winner.  dout, argmax (N, Ho, Wo, C) -> dx x_shape."""
    N, H, W, C = x_shape
    _, Ho, Wo, _ = dout.shape
    PW = pool_size[1]
    sh, sw = strides
    pt, pb, pl, pr = pads
    Hp, Wp = H + pt + pb, W + pl + pr
    p, q = np.divmod(argmax, PW)
    rows = np.arange(Ho)[None, :, None, None] * sh + p  # (N, Ho, Wo, C) in padded coords
    cols = np.arange(Wo)[None, None, :, None] * sw + q
    idx = ((np.arange(N)[:, None, None, None] * Hp + rows) * Wp + cols) * C + np.arange(C)
    # bincount adds up repeated indices, which overlapping windows produce
    dxp = np.bincount(idx.ravel(), weights=dout.ravel(), minlength=N * Hp * Wp * C)
    dxp = dxp.astype(dout.dtype, copy=False).reshape(N, Hp, Wp, C)
    return dxp[:, pt : pt + H, pl : pl + W, :]


def dense_forward(x, w, b):
    """out = x @ w + b.  Shapes: x (N, D), w (D, K), b (K,) or None -> (N, K)."""
    out = x @ w
    if b is not None:
        out += b
    return out


def dense_backward(dout, x, w):
    """dx = dout @ w.T, dw = x.T @ dout, db = sum_n dout.  -> (N, D), (D, K), (K,)."""
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
