"""Dense-layer kernels in Numba: out = x @ w + b and its gradients, on both cores.

The seed model's Dense(10) multiplies thin matrices (x (128, 5408) @ w (5408, 10)), which NumPy's
BLAS, kept to one thread while the model trains (numba_config.compute_scope), does slowly:
thin products are the case BLAS packs least well. These kernels split the same products over
the kernels' threads; numba_ops decides which shapes they take (few outputs K, enough work to
pay for waking the threads).

* forward   out[n, k] = b[k] + sum_d x[n, d] * wt[k, d], wt = w.T: a dot product per (n, k),
            four rows x two outputs per pass so that each load of wt feeds four products.
            Numba keeps fastmath to 'contract' (no reassociation), so ``s += x[d] * w[d]``
            would be one serial chain that never vectorises: each dot product keeps LANES
            partial sums instead, lane l collecting the d = l (mod LANES), summed at the end
            in a fixed order. Rows are split between the threads.
* dx        dx[n] = sum_k dz[n, k] * w[:, k]: rows of w.T scaled and added, along d.
* dw        dw[d, k] = sum_n x[n, d] * dz[n, k]: built transposed, along d, then written out.
            Columns d are split between the threads, for dx and dw alike; each transposes its
            own TILE-wide slices of w, which stay in L1 for every row.

How LLVM is coaxed into vector code here. Numba runs LLVM's loop vectoriser but not its SLP
vectoriser, so only a loop over contiguous elements vectorises: every hot loop runs along d.
Partial sums live in memory (LLVM cannot prove they never alias the inputs), so each update adds
UNROLL products, stores come after every load of a pass (a store first would make LLVM load the
inputs again), and the partial sums are separate 1-D arrays passed in (rows of one 2-D array in
the same function defeat its dependence analysis). Indexes are provably >= 0 (``max(0, c)``),
or Numba's negative-index wraparound turns the loads into gathers.

Each kernel splits its work into T chunks (one per thread) writing disjoint parts of the output,
and every sum runs in the same order whatever the chunks: the results do not depend on T. The
helpers live here, with the kernels that call them, because Numba's on-disk cache does not notice
edits to another file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.numba_config import JIT

LANES = 16  # partial sums per dot product: one AVX-512 register of float32, two of AVX2
UNROLL = 4  # blocks of LANES added per update of the partial sums
BLOCK = LANES * UNROLL
L1, L2, L3 = LANES, 2 * LANES, 3 * LANES  # offsets of the blocks of a pass
TILE = 256  # d-columns of dx and dw handled per pass: a (K, TILE) slice of wt stays in L1


# --- forward --------------------------------------------------------------------------------------


@njit(**JIT)
def _sum_lanes(au, av, bk, bj, row, k, j):
    """row[k] = bk + the lanes of au, row[j] = bj + those of av, in lane order."""
    su, sv = bk, bj
    for l in range(LANES):
        su += au[l]
        sv += av[l]
    row[k], row[j] = su, sv


# The four-by-two tile is written out as the products it is: not for the formatter.
# fmt: off
@njit(**JIT)
def _forward_rows(x, wt, b, out, n0, n1, a0u, a0v, a1u, a1v, a2u, a2v, a3u, a3v):
    """out[n] = wt @ x[n] + b for the rows n0 <= n < n1, four rows and two outputs per pass.

    a_iu[l] (a_iv[l]) collects x[n + i, d] * wt[k, d] (wt[k + 1, d]) over the d = l (mod LANES):
    eight separate arrays, not one (4, 2, LANES): with one, LLVM does not vectorise the loop
    (it cannot tell that its rows never overlap). Four rows a pass, not two: wt (10 x 5408
    floats for the seed) lives in L2, and each of its loads now serves four products; each
    (row, output) is still its own sum in the same order, so the results do not depend on how
    rows are grouped.
    Shapes: x (N, D), wt (Kp, D) with Kp >= K, b (K,), out (N, K); a0u .. a3v (LANES,) scratch.
    """
    K, D = out.shape[1], x.shape[1]
    Dm = D - D % BLOCK
    for n in range(n0, n1, 4):
        # past the last row, the last row again: computed more than once, identically
        m1, m2, m3 = min(n + 1, n1 - 1), min(n + 2, n1 - 1), min(n + 3, n1 - 1)
        x0, x1, x2, x3 = x[n], x[m1], x[m2], x[m3]
        for k in range(0, K, 2):
            j = min(k + 1, K - 1)  # likewise an odd last output
            u, v = wt[k], wt[j]
            for l in range(LANES):
                a0u[l] = 0
                a0v[l] = 0
                a1u[l] = 0
                a1v[l] = 0
                a2u[l] = 0
                a2v[l] = 0
                a3u[l] = 0
                a3v[l] = 0
            for d in range(0, Dm, BLOCK):
                for l in range(LANES):  # vectorised along l
                    i0, i1, i2, i3 = d + l, d + L1 + l, d + L2 + l, d + L3 + l
                    u0, u1, u2, u3 = u[i0], u[i1], u[i2], u[i3]
                    v0, v1, v2, v3 = v[i0], v[i1], v[i2], v[i3]
                    p0, p1, p2, p3 = x0[i0], x0[i1], x0[i2], x0[i3]
                    q0, q1, q2, q3 = x1[i0], x1[i1], x1[i2], x1[i3]
                    r0, r1, r2, r3 = x2[i0], x2[i1], x2[i2], x2[i3]
                    s0, s1, s2, s3 = x3[i0], x3[i1], x3[i2], x3[i3]
                    t0u = a0u[l] + (p0 * u0 + p1 * u1 + p2 * u2 + p3 * u3)
                    t0v = a0v[l] + (p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3)
                    t1u = a1u[l] + (q0 * u0 + q1 * u1 + q2 * u2 + q3 * u3)
                    t1v = a1v[l] + (q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3)
                    t2u = a2u[l] + (r0 * u0 + r1 * u1 + r2 * u2 + r3 * u3)
                    t2v = a2v[l] + (r0 * v0 + r1 * v1 + r2 * v2 + r3 * v3)
                    t3u = a3u[l] + (s0 * u0 + s1 * u1 + s2 * u2 + s3 * u3)
                    t3v = a3v[l] + (s0 * v0 + s1 * v1 + s2 * v2 + s3 * v3)
                    # stored after every load: a store first would make LLVM load x and wt again
                    a0u[l] = t0u
                    a0v[l] = t0v
                    a1u[l] = t1u
                    a1v[l] = t1v
                    a2u[l] = t2u
                    a2v[l] = t2v
                    a3u[l] = t3u
                    a3v[l] = t3v
            for d in range(Dm, D):  # the tail, fewer than BLOCK
                a0u[0] += x0[d] * u[d]
                a0v[0] += x0[d] * v[d]
                a1u[0] += x1[d] * u[d]
                a1v[0] += x1[d] * v[d]
                a2u[0] += x2[d] * u[d]
                a2v[0] += x2[d] * v[d]
                a3u[0] += x3[d] * u[d]
                a3v[0] += x3[d] * v[d]
            _sum_lanes(a0u, a0v, b[k], b[j], out[n], k, j)
            _sum_lanes(a1u, a1v, b[k], b[j], out[m1], k, j)
            _sum_lanes(a2u, a2v, b[k], b[j], out[m2], k, j)
            _sum_lanes(a3u, a3v, b[k], b[j], out[m3], k, j)
# fmt: on


@njit(**JIT)
def dense_forward(x, wt, b, out, t, n0, n1):
    """out[n0:n1] = x[n0:n1] @ wt[:K].T + b (chunk t of the rows).

    Shapes: x (N, D), wt (Kp, D) the transposed kernel (rows past K unused), b (K,) -> out
    (N, K). A chunk writes its own rows of out only: chunks never share memory.
    """
    a = np.empty((8, LANES), out.dtype)
    _forward_rows(x, wt, b, out, n0, n1, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])


# --- backward -------------------------------------------------------------------------------------


# fmt: off
@njit(**JIT)
def _dx_cols(dz, w, dx, d0, d1, wt, p, q):
    """dx[:, d] = (dz @ w.T)[:, d] for the columns d0 <= d < d1, TILE at a time: the tile of w
    is transposed into wt, where it stays in L1 for all the rows; two rows and four terms per
    pass are summed in p and q, then copied out (the loop does not vectorise on two rows of dx
    itself: LLVM cannot tell that they never overlap).
    Shapes: dz (N, Kp) zero-padded to Kp, a multiple of 4; w (D, K); dx (N, D); wt (Kp, TILE),
    p, q (TILE,) scratch.
    """
    N, K = dx.shape[0], w.shape[1]
    Kp = dz.shape[1]
    for c in range(d0, d1, TILE):
        c0 = max(0, c)  # lets LLVM see c0 + l >= 0: no negative-index checks, no gathers
        r = min(TILE, d1 - c0)
        for k in range(K):
            for l in range(r):
                wt[k, l] = w[c0 + l, k]
        for k in range(K, Kp):  # the zero pad
            for l in range(r):
                wt[k, l] = 0
        for n in range(0, N, 2):
            m = min(n + 1, N - 1)  # an odd last row pairs with itself: written twice, alike
            for l in range(r):
                p[l] = 0
                q[l] = 0
            for k in range(0, Kp, 4):
                g0, g1, g2, g3 = dz[n, k], dz[n, k + 1], dz[n, k + 2], dz[n, k + 3]
                h0, h1, h2, h3 = dz[m, k], dz[m, k + 1], dz[m, k + 2], dz[m, k + 3]
                for l in range(r):  # vectorised along l
                    u0, u1, u2, u3 = wt[k, l], wt[k + 1, l], wt[k + 2, l], wt[k + 3, l]
                    sn = p[l] + (g0 * u0 + g1 * u1 + g2 * u2 + g3 * u3)
                    sm = q[l] + (h0 * u0 + h1 * u1 + h2 * u2 + h3 * u3)
                    p[l] = sn  # stored after every load (see _forward_rows)
                    q[l] = sm
            for l in range(r):
                dx[n, c0 + l] = p[l]
            for l in range(r):
                dx[m, c0 + l] = q[l]


@njit(**JIT)
def _dw_cols(dz, x, dw, d0, d1, t0, t1, t2, t3):
    """dw[d] = (x.T @ dz)[d] for the columns d0 <= d < d1, TILE at a time, built transposed:
    four outputs k .. k + 3 and four rows per pass, in t0 .. t3 (each output's sum in the same
    order as with fewer outputs a pass: the same bits).
    Shapes: dz (N, Kp) zero-padded to Kp, a multiple of 4; x (N, D); dw (D, K); t0 .. t3
    (TILE,) scratch.
    """
    N, K = x.shape[0], dw.shape[1]
    N4 = N - N % 4
    for c in range(d0, d1, TILE):
        c0 = max(0, c)
        r = min(TILE, d1 - c0)
        for k in range(0, K, 4):  # four outputs a pass: each load of x feeds four sums
            # k + 1 .. k + 3 may be zero pads (Kp is a multiple of 4): computed, never written
            for l in range(r):
                t0[l] = 0
                t1[l] = 0
                t2[l] = 0
                t3[l] = 0
            for n in range(0, N4, 4):
                z0, z1, z2, z3 = dz[n], dz[n + 1], dz[n + 2], dz[n + 3]
                ga0, ga1, ga2, ga3 = z0[k], z1[k], z2[k], z3[k]
                gb0, gb1, gb2, gb3 = z0[k + 1], z1[k + 1], z2[k + 1], z3[k + 1]
                gc0, gc1, gc2, gc3 = z0[k + 2], z1[k + 2], z2[k + 2], z3[k + 2]
                gd0, gd1, gd2, gd3 = z0[k + 3], z1[k + 3], z2[k + 3], z3[k + 3]
                for l in range(r):  # vectorised along l
                    i = c0 + l
                    y0, y1, y2, y3 = x[n, i], x[n + 1, i], x[n + 2, i], x[n + 3, i]
                    s0 = t0[l] + (ga0 * y0 + ga1 * y1 + ga2 * y2 + ga3 * y3)
                    s1 = t1[l] + (gb0 * y0 + gb1 * y1 + gb2 * y2 + gb3 * y3)
                    s2 = t2[l] + (gc0 * y0 + gc1 * y1 + gc2 * y2 + gc3 * y3)
                    s3 = t3[l] + (gd0 * y0 + gd1 * y1 + gd2 * y2 + gd3 * y3)
                    t0[l] = s0  # stored after every load (see _forward_rows)
                    t1[l] = s1
                    t2[l] = s2
                    t3[l] = s3
            for n in range(N4, N):  # the last N % 4 rows, one at a time
                ga0, gb0, gc0, gd0 = dz[n, k], dz[n, k + 1], dz[n, k + 2], dz[n, k + 3]
                for l in range(r):
                    y0 = x[n, c0 + l]
                    t0[l] += ga0 * y0
                    t1[l] += gb0 * y0
                    t2[l] += gc0 * y0
                    t3[l] += gd0 * y0
            for l in range(r):
                dw[c0 + l, k] = t0[l]
            if k + 1 < K:
                for l in range(r):
                    dw[c0 + l, k + 1] = t1[l]
            if k + 2 < K:
                for l in range(r):
                    dw[c0 + l, k + 2] = t2[l]
            if k + 3 < K:
                for l in range(r):
                    dw[c0 + l, k + 3] = t3[l]
# fmt: on


@njit(**JIT)
def pad_and_sum(dout, dz, db):
    """dz[:, :K] = dout and the rest 0 (four outputs per pass, no remainder); db = dout summed
    over the rows, in row order. Shapes: dout (N, K), dz (N, Kp), db (K,)."""
    N, K = dout.shape
    for n in range(N):
        for k in range(dz.shape[1]):
            dz[n, k] = dout[n, k] if k < K else 0
    for k in range(K):
        db[k] = 0
    for n in range(N):
        for k in range(K):
            db[k] += dout[n, k]


@njit(**JIT)
def dense_backward(dz, x, w, need_dx, dx, dw, t, d0, d1):
    """dx[:, d0:d1] = (dout @ w.T)[:, d0:d1] (if need_dx) and dw[d0:d1] = (x.T @ dout)[d0:d1]
    (chunk t of the columns).

    Shapes: dz (N, Kp) from pad_and_sum, x (N, D), w (D, K) -> dx (N, D) (may be (0, 0) when
    not need_dx), dw (D, K). A chunk writes its own columns of dx and rows of dw only.
    """
    if need_dx:
        wt = np.empty((dz.shape[1], TILE), dw.dtype)
        pq = np.empty((2, TILE), dw.dtype)
        _dx_cols(dz, w, dx, d0, d1, wt, pq[0], pq[1])
    dense_weight_gradient(dz, x, dw, t, d0, d1)


@njit(**JIT)
def dense_weight_gradient(dz, x, dw, t, d0, d1):
    """dw[d0:d1] = (x.T @ dout)[d0:d1] only (chunk t of the columns): dense_backward without
    the input gradient, for a caller that never needs it (the seed's first-layer unit), so
    that only this part is compiled. Shapes: as dense_backward."""
    buf = np.empty((4, TILE), dw.dtype)
    _dw_cols(dz, x, dw, d0, d1, buf[0], buf[1], buf[2], buf[3])
