"""The readable twin of every kernel: plain nested loops, one output element at a time.

This file is the lesson (read it aloud), the oracle the fast kernels are tested against, and the
slowest baseline in the benchmarks. Use it on tiny inputs only: it runs at Python speed.
Batch normalisation and the optimizers' update rules are here too, as whole-array NumPy (loops
would add nothing to those element-wise formulas): the twins of numba_batchnorm.py and
numba_optimizers.py, and what the 'naive' and 'numpy' backends run.

Conventions shared by every backend (naive, numpy, numba):
    x    (N, H, W, C)      activations, channels-last as in Keras
    w    (KH, KW, C, F)    conv kernel; cross-correlation, no flip
    b    (F,)              bias
    out  (N, Ho, Wo, F)
    strides = (sh, sw); pads = (pad_top, pad_bottom, pad_left, pad_right)
Padded pixels are zeros for convolution and are never chosen by max-pooling.
"""

from __future__ import annotations

import numpy as np

from minicnn.kernels.geometry import out_size


def conv2d_forward(x, w, b, strides, pads):
    """out[n, i, j, f] = b[f] + sum_{p, q, c} x[n, i*sh + p - pt, j*sw + q - pl, c] * w[p, q, c, f].

    Shapes: x (N, H, W, C), w (KH, KW, C, F), b (F,) or None -> out (N, Ho, Wo, F).
    """
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    sh, sw = strides
    pt, pb, pl, pr = pads
    Ho, Wo = out_size(H, KH, sh, pt, pb), out_size(W, KW, sw, pl, pr)
    out = np.zeros((N, Ho, Wo, F), dtype=np.result_type(x, w))
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for f in range(F):
                    acc = 0.0 if b is None else b[f]
                    for p in range(KH):
                        for q in range(KW):
                            r, s = i * sh + p - pt, j * sw + q - pl
                            if 0 <= r < H and 0 <= s < W:  # outside: a padded zero
                                for c in range(C):
                                    acc += x[n, r, s, c] * w[p, q, c, f]
                    out[n, i, j, f] = acc
    return out


def conv2d_backward_input(dout, w, x_shape, strides, pads):
    """dx[n, r, s, c] = sum over every (i, j, f) whose window covers (r, s) of dout * w.

    Each output pixel sends its gradient back along the same edges the forward pass used.
    Shapes: dout (N, Ho, Wo, F), w (KH, KW, C, F) -> dx x_shape = (N, H, W, C).
    """
    N, H, W, C = x_shape
    KH, KW, _, F = w.shape
    _, Ho, Wo, _ = dout.shape
    sh, sw = strides
    pt, _, pl, _ = pads
    dx = np.zeros(x_shape, dtype=np.result_type(dout, w))
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for p in range(KH):
                    for q in range(KW):
                        r, s = i * sh + p - pt, j * sw + q - pl
                        if 0 <= r < H and 0 <= s < W:
                            for c in range(C):
                                for f in range(F):
                                    dx[n, r, s, c] += dout[n, i, j, f] * w[p, q, c, f]
    return dx


def conv2d_backward_weights(dout, x, kernel_size, strides, pads):
    """dw[p, q, c, f] = sum_{n, i, j} x[n, i*sh + p - pt, j*sw + q - pl, c] * dout[n, i, j, f].

    Shapes: dout (N, Ho, Wo, F), x (N, H, W, C) -> dw (KH, KW, C, F).
    The bias gradient is simpler still: db[f] = sum_{n, i, j} dout[n, i, j, f].
    """
    N, H, W, C = x.shape
    KH, KW = kernel_size
    _, Ho, Wo, F = dout.shape
    sh, sw = strides
    pt, _, pl, _ = pads
    dw = np.zeros((KH, KW, C, F), dtype=np.result_type(dout, x))
    for p in range(KH):
        for q in range(KW):
            for c in range(C):
                for f in range(F):
                    acc = 0.0
                    for n in range(N):
                        for i in range(Ho):
                            for j in range(Wo):
                                r, s = i * sh + p - pt, j * sw + q - pl
                                if 0 <= r < H and 0 <= s < W:
                                    acc += x[n, r, s, c] * dout[n, i, j, f]
                    dw[p, q, c, f] = acc
    return dw


def maxpool2d_forward(x, pool_size, strides, pads):
    """out[n, i, j, c] = max of the (PH, PW) window at (i*sh - pt, j*sw - pl).

    Also returns where the maximum was, as the row-major index p*PW + q inside the window:
    the first maximum on ties (Keras/TensorFlow route the gradient to exactly one input).
    A NaN in the window wins (the first one): NaN propagates, as np.max's does.
    Shapes: x (N, H, W, C) -> out (N, Ho, Wo, C), argmax (N, Ho, Wo, C) int32.
    """
    N, H, W, C = x.shape
    PH, PW = pool_size
    sh, sw = strides
    pt, pb, pl, pr = pads
    Ho, Wo = out_size(H, PH, sh, pt, pb), out_size(W, PW, sw, pl, pr)
    out = np.zeros((N, Ho, Wo, C), dtype=x.dtype)
    argmax = np.zeros((N, Ho, Wo, C), dtype=np.int32)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    best, best_k = -np.inf, -1
                    for p in range(PH):
                        for q in range(PW):
                            r, s = i * sh + p - pt, j * sw + q - pl
                            if not (0 <= r < H and 0 <= s < W):
                                continue
                            v = x[n, r, s, c]
                            # strict '>' keeps the first maximum in row-major order
                            if v > best or (np.isnan(v) and not np.isnan(best)):
                                best, best_k = v, p * PW + q
                    out[n, i, j, c] = best
                    argmax[n, i, j, c] = best_k
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, pool_size, strides, pads):
    """Route each dout[n, i, j, c] to the input pixel that won its window (others get 0).

    Overlapping windows (strides < pool_size) add up where they share a winner.
    Shapes: dout, argmax (N, Ho, Wo, C) -> dx x_shape = (N, H, W, C).
    """
    N, Ho, Wo, C = dout.shape
    PW = pool_size[1]
    sh, sw = strides
    pt, _, pl, _ = pads
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    p, q = divmod(int(argmax[n, i, j, c]), PW)
                    dx[n, i * sh + p - pt, j * sw + q - pl, c] += dout[n, i, j, c]
    return dx


def dense_forward(x, w, b):
    """out[n, k] = b[k] + sum_d x[n, d] * w[d, k].  Shapes: x (N, D), w (D, K), b (K,) -> (N, K)."""
    N, D = x.shape
    K = w.shape[1]
    out = np.zeros((N, K), dtype=np.result_type(x, w))
    for n in range(N):
        for k in range(K):
            acc = 0.0 if b is None else b[k]
            for d in range(D):
                acc += x[n, d] * w[d, k]
            out[n, k] = acc
    return out


def dense_backward(dout, x, w):
    """dx = dout @ w.T, dw = x.T @ dout, db = sum_n dout, written as loops.

    Shapes: dout (N, K), x (N, D), w (D, K) -> dx (N, D), dw (D, K), db (K,).
    """
    N, D = x.shape
    K = w.shape[1]
    dx = np.zeros((N, D), dtype=dout.dtype)
    dw = np.zeros((D, K), dtype=dout.dtype)
    db = np.zeros(K, dtype=dout.dtype)
    for n in range(N):
        for k in range(K):
            g = dout[n, k]
            db[k] += g
            for d in range(D):
                dx[n, d] += g * w[d, k]
                dw[d, k] += g * x[n, d]
    return dx, dw, db


# --- batch normalisation (layers/batchnorm.py), as a matrix (M, C): one row per pixel ---------
def batchnorm_forward_train(x, gamma, beta, eps):
    """Normalise with the batch statistics.

    mean = 1/M sum_m x[m];  var = 1/M sum_m (x[m] - mean)^2  (biased, as tf.nn.moments);
    out = gamma * (x - mean) / sqrt(var + eps) + beta.
    Shapes: x (M, C), gamma, beta (C,) -> out (M, C), mean (C,), var (C,).
    """
    # statistics summed in float64: M reaches ~10^5 and a float32 running sum loses digits
    mean = x.mean(axis=0, dtype=np.float64)  # (C,)
    var = np.square(x - mean).mean(axis=0)  # (C,)
    xhat = (x - mean) / np.sqrt(var + eps)  # (M, C)
    out = (gamma * xhat + beta).astype(x.dtype)
    return out, mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_forward_infer(x, scale, shift):
    """out = x * scale + shift, with scale = gamma / sqrt(var + eps), shift = beta - mean * scale.

    Shapes: x (M, C), scale, shift (C,) -> out (M, C).
    """
    return x * scale + shift


def batchnorm_backward(dout, x, gamma, mean, inv, training):
    """Gradients of batch normalisation, the compact form.

    Shapes: dout, x (M, C); gamma, mean, inv = 1 / sqrt(var + eps) (C,)
            -> dx (M, C), dgamma (C,), dbeta (C,).

    With batch statistics, mean and var depend on every x[:, c], and the chain rule through
    them collapses to
        dx = gamma * inv / M * (M * dout - sum_m dout - xhat * sum_m(dout * xhat));
    with fixed (moving) statistics dx = gamma * inv * dout.
    """
    M = x.shape[0]
    xhat = (x - mean) * inv  # (M, C)
    dbeta = dout.sum(axis=0, dtype=np.float64)  # (C,)
    dgamma = (dout * xhat).sum(axis=0, dtype=np.float64)  # (C,)
    if training:
        dx = (gamma * inv / M) * (M * dout - dbeta - xhat * dgamma)
    else:
        dx = dout * (gamma * inv)
    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# --- the optimizers' update rules (optimizers.py), on whole arrays ------------------------------
# Pure: they return the new arrays and write nothing, so the optimizer can check every new value
# before it stores any. Scalars come in the arrays' dtype, as Keras casts them to the variable's.
def adam_step(w, g, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    """Keras's Adam, "epsilon hat" form:  m' = m + (g - m)(1 - b1);  v' = v + (g^2 - v)(1 - b2);
    w' = w - alpha * m' / (sqrt(v') + epsilon).  Shapes: all (P,) -> (w', m', v')."""
    m = m + (g - m) * one_minus_beta_1
    v = v + (g * g - v) * one_minus_beta_2
    return w - (m * alpha) / (np.sqrt(v) + epsilon), m, v


def sgd_step(w, g, lr):
    """Plain SGD:  w' = w - lr * g.  Shapes: (P,) -> (w',)."""
    return (w - g * lr,)


def sgd_momentum_step(w, g, m, lr, momentum, nesterov):
    """Keras's SGD with momentum:  m' = momentum * m - lr * g;  w' = w + m', or with nesterov
    w' = w + momentum * m' - lr * g.  Shapes: (P,) -> (w', m')."""
    m = m * momentum - g * lr
    return (w + (m * momentum - g * lr if nesterov else m)), m


# --- Winograd F(2x2, 3x3): the same 3x3 stride-1 convolution with 2.25x fewer multiplications ---
# (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; numba_winograd.py is
# the fast twin.) In 1-D, F(2, 3) computes two outputs of a 3-tap correlation from 4 inputs d
# with 4 multiplications instead of 6:  y = A^T [(G g) * (B^T d)],  * elementwise.  Nesting it
# in 2-D gives 2x2 outputs from a 4x4 input tile with 16 multiplications instead of 36:
#
#     Y = A^T [ (G g G^T) * (B^T d B) ] A            (g the 3x3 filter, d the 4x4 tile)
#
# B^T and A^T only add and subtract, and G's halves are exact in binary, so the algorithm is
# as exact as the direct sum up to rounding.
WINOGRAD_BT = np.array([[1, 0, -1, 0],
                        [0, 1, 1, 0],
                        [0, -1, 1, 0],
                        [0, 1, 0, -1]], dtype=np.float64)  # (4, 4) input transform
WINOGRAD_G = np.array([[1, 0, 0],
                       [0.5, 0.5, 0.5],
                       [0.5, -0.5, 0.5],
                       [0, 0, 1]], dtype=np.float64)  # (4, 3) filter transform
WINOGRAD_AT = np.array([[1, 1, 1, 0],
                        [0, 1, -1, -1]], dtype=np.float64)  # (2, 4) output transform


def winograd_conv2d_forward(x, w, b, pads):
    """conv2d_forward for a 3x3 kernel, stride 1, by Winograd F(2x2, 3x3).

    With U[:, :, c, f] = G w[:, :, c, f] G^T (once per filter) and, for each 2x2 block of
    outputs at (2ti, 2tj), the 4x4 tile d_c = xp[n, 2ti:2ti+4, 2tj:2tj+4, c] of the padded input
    under it (tiles overlap by two pixels) and V_c = B^T d_c B:

        out[n, 2ti:2ti+2, 2tj:2tj+2, f] = A^T (sum_c U[:, :, c, f] * V_c) A + b[f]

    The sum over c of the elementwise products is, for each of the 16 entries, a matrix
    product over the channels: that is where the fast kernel spends its time.
    An odd output size is rounded up to whole tiles (zeros past the input) and cropped.
    Shapes: x (N, H, W, C), w (3, 3, C, F), b (F,) or None -> out (N, Ho, Wo, F).
    """
    N, H, W, C = x.shape
    F = w.shape[3]
    pt, pb, pl, pr = pads
    Ho, Wo = out_size(H, 3, 1, pt, pb), out_size(W, 3, 1, pl, pr)
    th, tw = (Ho + 1) // 2, (Wo + 1) // 2  # tiles
    dtype = np.result_type(x, w)
    BT, G, AT = (m.astype(dtype) for m in (WINOGRAD_BT, WINOGRAD_G, WINOGRAD_AT))
    xp = np.zeros((N, 2 * th + 2, 2 * tw + 2, C), dtype)  # padded, and whole tiles
    xp[:, pt:pt + H, pl:pl + W] = x
    U = np.zeros((4, 4, C, F), dtype)
    for c in range(C):
        for f in range(F):
            U[:, :, c, f] = G @ w[:, :, c, f] @ G.T  # (4, 4)
    out = np.zeros((N, 2 * th, 2 * tw, F), dtype)
    for n in range(N):
        for ti in range(th):
            for tj in range(tw):
                d = xp[n, 2 * ti:2 * ti + 4, 2 * tj:2 * tj + 4]  # (4, 4, C) the tile
                m = np.zeros((4, 4, F), dtype)
                for c in range(C):
                    v = BT @ d[:, :, c] @ BT.T  # (4, 4)
                    for f in range(F):
                        m[:, :, f] += U[:, :, c, f] * v  # the 16 multiplications
                for f in range(F):
                    y = AT @ m[:, :, f] @ AT.T  # (2, 2)
                    out[n, 2 * ti:2 * ti + 2, 2 * tj:2 * tj + 2, f] = y + (0 if b is None else b[f])
    return out[:, :Ho, :Wo]
