"""Every conv implementation the benchmark times, listed one by one (see ``all_impls``).

An Impl maps a pass name (problems.PASSES) to a builder: ``build(problem, inputs)`` does the
set-up that is not part of the pass (converting inputs to tensors, tracing or compiling a
function, computing a forward cache) and returns ``run()``, a zero-argument callable that does
the pass once and returns its outputs as a dict of arrays (run.reference's names). A library
that does not import gives an Impl with ``unavailable`` saying why, and no passes.

minicnn's kernels are taken from its dispatch tables (``minicnn.kernels.dispatch.table``), the
functions its layers call; the fused unit is built by ``minicnn.fusion.plan``, as the model
builds it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmarks.conv.problems import POOL, Problem

NO_PADS = (0, 0, 0, 0)
# scipy's loops are orders of magnitude slower than BLAS: time them on a smaller batch (cost is
# linear in N).
SCIPY_TIMING_FLOPS = 2.5e8
INSTALL_ANCHORS = "pip install -e '.[anchors]'"


@dataclass
class Impl:
    """One implementation: its builders per pass and how it was run.

    Attributes:
        name: the row label ('numpy', 'numba-fused', 'tf', 'torch', ...).
        family: 'minicnn', 'scipy', 'tensorflow', 'pytorch' or 'jax'.
        passes: pass name -> build(problem, inputs) -> run() -> dict of arrays.
        threads: the threads it computes with (a callable is read when the report is written).
        note: one line for the legend: what it does.
        pass_notes: pass name -> what it does for that pass, when it differs.
        max_timing_flops: time on a reduced twin of at most this many FLOPs and scale up.
        time_on_check_twin: time on the twin the check ran on, and scale up (the naive loops).
        unavailable: why it cannot run here (then passes is empty).
        jit: whether minicnn compiles it with Numba (its cold/warm compile time is measured).
    """

    name: str
    family: str
    passes: dict[str, Callable] = field(default_factory=dict)
    threads: Callable[[], int] | int = 1
    note: str = ""
    pass_notes: dict[str, str] = field(default_factory=dict)
    max_timing_flops: float | None = None
    time_on_check_twin: bool = False
    unavailable: str | None = None
    jit: bool = False

    def thread_count(self):
        return self.threads() if callable(self.threads) else self.threads


# ---- minicnn ------------------------------------------------------------------------------


def plain_passes(forward=None, backward_input=None, backward_weights=None) -> dict[str, Callable]:
    """Builders of the plain passes whose functions are given (naive.py's signatures)."""

    def fwd(p: Problem, d: dict):
        return lambda: {"out": forward(d["x"], d["w"], d["b"], p.strides, p.pads)}

    def bwd_input(p: Problem, d: dict):
        return lambda: {"dx": backward_input(d["dout"], d["w"], d["x"].shape, p.strides, p.pads)}

    def bwd_weights(p: Problem, d: dict):
        k = (p.KH, p.KW)
        return lambda: {"dw": backward_weights(d["dout"], d["x"], k, p.strides, p.pads)}

    builders = {"forward": (forward, fwd), "backward_input": (backward_input, bwd_input),
                "backward_weights": (backward_weights, bwd_weights)}
    return {name: build for name, (fn, build) in builders.items() if fn is not None}


def table_passes(t) -> dict[str, Callable]:
    """A backend table's plain passes, and its fused passes composed of separate calls as the
    unfused layers make them: conv, relu, pool forward; pool-backward, relu mask, dW, db
    backward (z and argmax, the layers' cache, computed before the timed call)."""

    def fused_forward(p: Problem, d: dict):
        def run():
            z = t.conv2d_forward(d["x"], d["w"], d["b"], p.strides, p.pads)  # (N, Ho, Wo, F)
            return {"pooled": t.maxpool2d_forward(np.maximum(z, 0), POOL, POOL, NO_PADS)[0]}

        return run

    def fused_backward(p: Problem, d: dict):
        x = d["x"]
        z = t.conv2d_forward(x, d["w"], d["b"], p.strides, p.pads)
        a = np.maximum(z, 0)
        _, argmax = t.maxpool2d_forward(a, POOL, POOL, NO_PADS)

        def run():
            da = t.maxpool2d_backward(d["dpool"], argmax, a.shape, POOL, POOL, NO_PADS)
            dz = da * (z > 0)  # relu'(z)
            dw = t.conv2d_backward_weights(dz, x, (p.KH, p.KW), p.strides, p.pads)
            return {"dw": dw, "db": dz.sum(axis=(0, 1, 2))}

        return run

    passes = plain_passes(t.conv2d_forward, t.conv2d_backward_input, t.conv2d_backward_weights)
    return passes | {"fused_forward": fused_forward, "fused_backward": fused_backward}


UNFUSED_NOTES = {
    "fused_forward": "unfused: conv, relu, pool as separate calls",
    "fused_backward": "unfused: pool-backward, relu mask, dW, db separately",
}


def _fused_unit(p: Problem, d: dict):
    """minicnn.fusion's ConvReluPool over Conv2D(F, relu) -> MaxPooling2D(2), holding w, b."""
    from minicnn.fusion import ConvReluPool, plan
    from minicnn.layers import Conv2D, Flatten, MaxPooling2D

    conv = Conv2D(p.F, (p.KH, p.KW), strides=p.strides, padding=p.padding, activation="relu",
                  dtype="float32")
    conv.build_for((p.H, p.W, p.C))
    conv.set_weights([d["w"], d["b"]])
    conv.needs_input_grad = False  # the seed model's conv is its first layer
    pool = MaxPooling2D(POOL)
    pool.build_for(conv.compute_output_shape((p.H, p.W, p.C)))
    unit = plan([conv, pool, Flatten()], "numba")[0]  # the last layer is never fused
    if not isinstance(unit, ConvReluPool) or unit.pool is not pool:
        raise NotImplementedError(f"fusion.plan did not fuse conv + pool for {p.label()}")
    return unit, conv


def fused_unit_passes() -> dict[str, Callable]:
    def forward(p: Problem, d: dict):
        unit, _ = _fused_unit(p, d)
        return lambda: {"pooled": unit.forward(d["x"], training=False)}

    def backward(p: Problem, d: dict):
        unit, conv = _fused_unit(p, d)
        unit.forward(d["x"], training=True)  # the cache backward reads: one byte per output

        def run():
            unit.backward(d["dpool"])
            return {"dw": conv.grads["kernel"], "db": conv.grads["bias"]}

        return run

    return {"fused_forward": forward, "fused_backward": backward}


def minicnn_impls(blas_threads, numba_threads) -> list[Impl]:
    """naive, numpy, numpy-offsets, numba and numba-fused."""
    from minicnn.kernels import numpy_ops
    from minicnn.kernels.dispatch import table

    impls = [
        Impl("naive", "minicnn", table_passes(table("naive")), 1,
             "minicnn's nested Python loops (the oracle); timed on a reduced twin",
             UNFUSED_NOTES, time_on_check_twin=True),
        Impl("numpy", "minicnn", table_passes(table("numpy")), blas_threads,
             "NumPy: im2col + one BLAS GEMM (forward, dW); one GEMM per kernel tap (dX)",
             UNFUSED_NOTES),
        Impl("numpy-offsets", "minicnn",
             plain_passes(forward=numpy_ops.conv2d_forward_offsets), blas_threads,
             "NumPy: one GEMM per kernel tap on strided windows, no im2col"),
    ]
    try:
        numba = table("numba")
    except ValueError as exc:
        return impls + [Impl(n, "minicnn", unavailable=str(exc), jit=True)
                        for n in ("numba", "numba-fused")]
    return impls + [
        Impl("numba", "minicnn", table_passes(numba), numba_threads,
             "minicnn's Numba kernels (numba_ops)", UNFUSED_NOTES, jit=True),
        Impl("numba-fused", "minicnn", fused_unit_passes(), numba_threads,
             "minicnn's fused unit (fusion.ConvReluPool): conv+bias+pool+relu in one pass, "
             "1-byte winner code; backward visits only the winners",
             {"fused_forward": "ConvReluPool.forward",
              "fused_backward": "ConvReluPool.backward (dW, db; no dX)"}, jit=True),
    ]


# ---- SciPy --------------------------------------------------------------------------------


def _pad(x, pads):
    pt, pb, pl, pr = pads
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0))) if any(pads) else x


def _scipy_corr2d(p: Problem, d: dict):
    """Loop over (n, f), sum correlate2d over c: N*F*C calls of a 2-D 'valid' correlation."""
    from scipy.signal import correlate2d

    sh, sw = p.strides

    def run():
        xt = np.ascontiguousarray(_pad(d["x"], p.pads).transpose(0, 3, 1, 2))  # (N, C, Hp, Wp)
        wt = np.ascontiguousarray(d["w"].transpose(3, 2, 0, 1))  # (F, C, KH, KW)
        N, C, F = xt.shape[0], xt.shape[1], wt.shape[0]
        out = np.empty((N, F, *p.out_hw), dtype=xt.dtype)
        for n in range(N):
            for f in range(F):
                acc = correlate2d(xt[n, 0], wt[f, 0], mode="valid")
                for c in range(1, C):
                    acc += correlate2d(xt[n, c], wt[f, c], mode="valid")
                out[n, f] = acc[::sh, ::sw]
        return {"out": out.transpose(0, 2, 3, 1) + d["b"]}  # (N, Ho, Wo, F)

    return run


def _scipy_fft(threads):
    def build(p: Problem, d: dict):
        """One N-D FFT correlation per filter f: x (N, Hp, Wp, C) with w[None, ..., f], which
        sums over c and keeps n (the kernel's batch axis has length 1)."""
        import scipy.fft
        from scipy.signal import correlate

        x, w = d["x"], d["w"]
        sh, sw = p.strides

        def run():
            xp = _pad(x, p.pads)
            out = np.empty((x.shape[0], *p.out_hw, w.shape[3]), dtype=x.dtype)
            with scipy.fft.set_workers(threads()):
                for f in range(w.shape[3]):
                    y = correlate(xp, w[None, :, :, :, f], mode="valid", method="fft")
                    out[..., f] = y[:, ::sh, ::sw, 0]
            return {"out": out + d["b"]}

        return run

    return build


def scipy_impls(threads) -> list[Impl]:
    try:
        import scipy.signal  # noqa: F401
    except ImportError as exc:
        return [Impl("scipy", "scipy", unavailable=f"scipy not importable: {exc}")]
    return [
        Impl("scipy-corr2d", "scipy", {"forward": _scipy_corr2d}, 1,
             "scipy.signal.correlate2d per (n, f, c), summed over c; single-threaded",
             max_timing_flops=SCIPY_TIMING_FLOPS),
        Impl("scipy-fft", "scipy", {"forward": _scipy_fft(threads)}, threads,
             "scipy.signal.correlate(method='fft') per f on the whole (N, H, W, C) batch",
             max_timing_flops=SCIPY_TIMING_FLOPS),
    ]


# ---- TensorFlow ---------------------------------------------------------------------------


def tf_impls(threads: int) -> list[Impl]:
    """tf.nn.conv2d and its gradient ops, each pass one warmed-up tf.function call."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        return [Impl("tf", "tensorflow", unavailable=f"tensorflow not importable: {exc}")]
    from benchmarks.machine import set_tf_threads, tf_onednn

    set_tf_threads(threads)  # before TF runs its first op, or it keeps its defaults

    def setup(p: Problem, d: dict, *keys):
        return [tf.constant(d[k]) for k in keys], [1, *p.strides, 1], p.padding.upper()

    def forward(p: Problem, d: dict):
        (x, w, b), st, pad = setup(p, d, "x", "w", "b")
        f = tf.function(lambda x, w, b: tf.nn.bias_add(tf.nn.conv2d(x, w, st, pad), b))
        return lambda: {"out": f(x, w, b)}

    def backward_input(p: Problem, d: dict):
        (w, dout), st, pad = setup(p, d, "w", "dout")
        shape = tf.constant(d["x"].shape, tf.int32)
        f = tf.function(lambda s, w, g: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=s, filter=w, out_backprop=g, strides=st, padding=pad))
        return lambda: {"dx": f(shape, w, dout)}

    def backward_weights(p: Problem, d: dict):
        (x, dout), st, pad = setup(p, d, "x", "dout")
        shape = tf.constant(d["w"].shape, tf.int32)
        f = tf.function(lambda x, s, g: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=s, out_backprop=g, strides=st, padding=pad))
        return lambda: {"dw": f(x, shape, dout)}

    def conv_relu_pool(x, w, b, st, pad):
        a = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, st, pad), b))
        return a, tf.nn.max_pool2d(a, POOL, POOL, "VALID")

    def fused_forward(p: Problem, d: dict):
        (x, w, b), st, pad = setup(p, d, "x", "w", "b")
        f = tf.function(lambda x, w, b: conv_relu_pool(x, w, b, st, pad)[1])
        return lambda: {"pooled": f(x, w, b)}

    def fused_backward(p: Problem, d: dict):
        """From the activations Keras keeps (relu output a and pooled): MaxPoolGrad, ReluGrad,
        Conv2DBackpropFilter and BiasAddGrad in one tf.function."""
        (x, w, b, dpool), st, pad = setup(p, d, "x", "w", "b", "dpool")
        a, pooled = conv_relu_pool(x, w, b, st, pad)
        wshape = tf.constant(d["w"].shape, tf.int32)
        k = [1, *POOL, 1]

        @tf.function
        def f(x, a, pooled, g, wshape):
            da = tf.raw_ops.MaxPoolGrad(
                orig_input=a, orig_output=pooled, grad=g, ksize=k, strides=k, padding="VALID")
            dz = tf.raw_ops.ReluGrad(gradients=da, features=a)
            dw = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=wshape, out_backprop=dz, strides=st, padding=pad)
            return dw, tf.raw_ops.BiasAddGrad(out_backprop=dz)

        def run():
            dw, db = f(x, a, pooled, dpool, wshape)
            return {"dw": dw, "db": db}

        return run

    onednn = tf_onednn()
    kernels = "oneDNN" if onednn else "Eigen" if onednn is False else "unknown"
    return [Impl(
        "tf", "tensorflow",
        {"forward": forward, "backward_input": backward_input,
         "backward_weights": backward_weights, "fused_forward": fused_forward,
         "fused_backward": fused_backward},
        lambda: tf.config.threading.get_intra_op_parallelism_threads() or threads,
        f"tf.nn.conv2d / Conv2DBackprop{{Input,Filter}}, one tf.function call each ({kernels})",
        {"fused_forward": "conv2d+bias_add+relu+max_pool2d in one tf.function",
         "fused_backward": "MaxPoolGrad+ReluGrad+Conv2DBackpropFilter+BiasAddGrad"},
    )]


def tf_call_overhead_us(repeats: int = 200) -> float | None:
    """Median cost of calling a trivial tf.function (the Python dispatch in every TF time)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    f = tf.function(lambda t: t)
    t = tf.constant(1.0)
    for _ in range(10):
        f(t)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(t)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples) * 1e6)


# ---- PyTorch (eager) ----------------------------------------------------------------------


def torch_impls(threads: int) -> list[Impl]:
    """torch.nn.functional.conv2d and its gradients on channels-last tensors (the NHWC arrays
    themselves, no copy), eager: the oneDNN kernels PyTorch calls on CPU.

    Outputs are NHWC views of the NCHW-indexed results (permute is free), converted to NumPy
    by the check, outside the timed call.
    """
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        return [Impl("torch", "pytorch",
                     unavailable=f"torch not importable ({exc}); {INSTALL_ANCHORS}")]
    from benchmarks.machine import set_torch_threads

    set_torch_threads(threads)

    def setup(p: Problem, d: dict):
        pt, pb, pl, pr = p.pads
        if (pt, pl) != (pb, pr):  # PyTorch pads both sides alike; Keras puts the odd pixel last
            raise NotImplementedError(f"asymmetric padding {p.pads}")
        x = torch.from_numpy(d["x"]).permute(0, 3, 1, 2)  # (N, C, H, W) view, channels-last
        w = torch.from_numpy(d["w"]).permute(3, 2, 0, 1)  # (F, C, KH, KW)
        w = w.contiguous(memory_format=torch.channels_last)
        return x, w, torch.from_numpy(d["b"]), dict(stride=p.strides, padding=(pt, pl))

    def nhwc(t):
        return t.permute(0, 2, 3, 1)  # (N, H, W, C) view

    def forward(p: Problem, d: dict):
        x, w, b, kw = setup(p, d)
        return lambda: {"out": nhwc(F.conv2d(x, w, b, **kw))}

    def backward_input(p: Problem, d: dict):
        x, w, _, kw = setup(p, d)
        g = torch.from_numpy(d["dout"]).permute(0, 3, 1, 2)
        return lambda: {"dx": nhwc(torch.nn.grad.conv2d_input(x.shape, w, g, **kw))}

    def backward_weights(p: Problem, d: dict):
        x, w, _, kw = setup(p, d)
        g = torch.from_numpy(d["dout"]).permute(0, 3, 1, 2)
        return lambda: {
            "dw": torch.nn.grad.conv2d_weight(x, w.shape, g, **kw).permute(2, 3, 1, 0)
        }

    def fused(x, w, b, kw):
        return F.max_pool2d(F.relu(F.conv2d(x, w, b, **kw)), POOL)

    def fused_forward(p: Problem, d: dict):
        x, w, b, kw = setup(p, d)
        return lambda: {"pooled": nhwc(fused(x, w, b, kw))}

    def fused_backward(p: Problem, d: dict):
        """autograd's backward from the graph of one forward (what loss.backward() runs)."""
        x, w, b, kw = setup(p, d)
        w, b = w.requires_grad_(), b.clone().requires_grad_()
        pooled = fused(x, w, b, kw)
        g = torch.from_numpy(d["dpool"]).permute(0, 3, 1, 2)

        def run():
            dw, db = torch.autograd.grad(pooled, (w, b), g, retain_graph=True)
            return {"dw": dw.permute(2, 3, 1, 0), "db": db}

        return run

    return [Impl(
        "torch", "pytorch",
        {"forward": _no_grad(forward, torch), "backward_input": backward_input,
         "backward_weights": backward_weights,
         "fused_forward": _no_grad(fused_forward, torch), "fused_backward": fused_backward},
        torch.get_num_threads,
        f"PyTorch {torch.__version__} eager: F.conv2d, torch.nn.grad.conv2d_input/_weight "
        "on channels-last tensors",
        {"fused_forward": "conv2d+relu+max_pool2d, three eager calls",
         "fused_backward": "autograd.grad from one forward's graph (pool, relu, dW, db)"},
    )]


def _no_grad(build, torch):
    """A builder whose run() computes without recording an autograd graph."""

    def wrapped(p: Problem, d: dict):
        run = build(p, d)

        def no_grad_run():
            with torch.no_grad():
                return run()

        return no_grad_run

    return wrapped


# ---- JAX / XLA ----------------------------------------------------------------------------


def jax_impls() -> list[Impl]:
    """lax.conv_general_dilated in NHWC/HWIO, each pass one jax.jit call (XLA's CPU kernels);
    gradients by jax.linear_transpose (dX, dW) and jax.vjp (the fused backward)."""
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError as exc:
        return [Impl("jax", "jax", unavailable=f"jax not importable ({exc}); {INSTALL_ANCHORS}")]
    from benchmarks.machine import allowed_cpus

    def conv(p: Problem):
        pt, pb, pl, pr = p.pads
        return lambda x, w: lax.conv_general_dilated(
            x, w, p.strides, ((pt, pb), (pl, pr)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ready(out: dict) -> dict:
        return jax.block_until_ready(out)  # jax dispatches asynchronously

    def spec(a):
        return jax.ShapeDtypeStruct(a.shape, a.dtype)

    def forward(p: Problem, d: dict):
        x, w, b = (jnp.asarray(d[k]) for k in ("x", "w", "b"))
        f = jax.jit(lambda x, w, b: conv(p)(x, w) + b)
        return lambda: ready({"out": f(x, w, b)})

    def backward_input(p: Problem, d: dict):
        w, g = jnp.asarray(d["w"]), jnp.asarray(d["dout"])
        f = jax.jit(lambda w, g: jax.linear_transpose(lambda x: conv(p)(x, w), spec(d["x"]))(g))
        return lambda: ready({"dx": f(w, g)[0]})

    def backward_weights(p: Problem, d: dict):
        x, g = jnp.asarray(d["x"]), jnp.asarray(d["dout"])
        f = jax.jit(lambda x, g: jax.linear_transpose(lambda w: conv(p)(x, w), spec(d["w"]))(g))
        return lambda: ready({"dw": f(x, g)[0]})

    def fused(p: Problem):
        def f(x, w, b):
            a = jax.nn.relu(conv(p)(x, w) + b)
            win = (1, *POOL, 1)
            return lax.reduce_window(a, -jnp.inf, lax.max, win, win, "VALID")

        return f

    def fused_forward(p: Problem, d: dict):
        x, w, b = (jnp.asarray(d[k]) for k in ("x", "w", "b"))
        f = jax.jit(fused(p))
        return lambda: ready({"pooled": f(x, w, b)})

    def fused_backward(p: Problem, d: dict):
        """The vjp of one forward, jitted: the backward from the residuals it saved."""
        x, w, b, g = (jnp.asarray(d[k]) for k in ("x", "w", "b", "dpool"))
        _, vjp = jax.vjp(lambda w, b: fused(p)(x, w, b), w, b)
        f = jax.jit(lambda vjp, g: vjp(g))

        def run():
            dw, db = f(vjp, g)
            return ready({"dw": dw, "db": db})

        return run

    return [Impl(
        "jax", "jax",
        {"forward": forward, "backward_input": backward_input,
         "backward_weights": backward_weights, "fused_forward": fused_forward,
         "fused_backward": fused_backward},
        lambda: len(allowed_cpus()),
        f"JAX {jax.__version__}: lax.conv_general_dilated NHWC, one jax.jit call per pass "
        "(XLA; no thread setting: its pool spans the CPUs the process may use)",
        {"fused_forward": "conv+bias+relu+reduce_window max, one jitted function",
         "fused_backward": "the jitted vjp of one forward (pool, relu, dW, db)"},
    )]


# ---- the list -----------------------------------------------------------------------------


def numba_threads() -> int:
    try:
        from minicnn.kernels import numba_config
    except ImportError:
        return 1
    return numba_config.num_threads()


def all_impls(threads: int, tensorflow=True, scipy=True, torch=True, jax=True) -> list[Impl]:
    """Every implementation, in report order: minicnn's, then SciPy, TF, PyTorch, JAX."""
    impls = minicnn_impls(lambda: threads, numba_threads)
    if scipy:
        impls += scipy_impls(lambda: threads)
    if tensorflow:
        impls += tf_impls(threads)
    if torch:
        impls += torch_impls(threads)
    if jax:
        impls += jax_impls()
    return impls
