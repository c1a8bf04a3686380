"""The registry of conv implementations the benchmark times, each adapted to the same passes.

An Impl maps a pass name (see conv_problems.PASSES) to a builder: ``build(problem, inputs)``
does all the set-up that is not part of the pass (converting inputs to tensors, tracing a
tf.function, computing a forward cache) and returns ``run()``, a zero-argument callable that
does the pass once and returns its outputs as a dict of arrays (the names of conv_check).

minicnn's backends are discovered, not listed: every public function of a backend module whose
name starts with a pass's function name (``conv2d_forward``, ``conv2d_forward_offsets``, ...)
and whose parameters match it becomes a variant. A backend that does not import yields an
'unavailable' Impl that says why.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmarks.conv_problems import POOL, Problem

NO_PADS = (0, 0, 0, 0)
PASS_FUNCS = {
    "forward": "conv2d_forward",
    "backward_input": "conv2d_backward_input",
    "backward_weights": "conv2d_backward_weights",
}
# scipy's loops run ~0.1-1 GFLOP/s here: time on a smaller batch (cost is linear in N).
SCIPY_TIMING_FLOPS = 2.5e8


@dataclass
class Impl:
    """One implementation: its builders per pass and how it was run.

    Attributes:
        name: the row label ('numpy', 'numba-fused', 'tf', ...).
        family: 'minicnn', 'scipy' or 'tensorflow'.
        passes: pass name -> build(problem, inputs) -> run() -> dict of arrays.
        threads: the threads it computes with (callable: read when the report is written).
        note: one line for the legend: what it does.
        pass_notes: pass name -> what it does for that pass, when it differs.
        max_timing_flops: time on a reduced twin of at most this many FLOPs and scale up.
        time_on_check_twin: time on the twin the correctness check ran on, and scale up (for
            the naive loops, ~3 MFLOP/s: their cost is proportional to the multiply-adds).
        unavailable: why it cannot run here (then passes is empty).
        jit: whether it compiles on first call (its cold/warm compile time is measured).
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


# ---- minicnn backend modules -------------------------------------------------------------


def _first_doc_line(fn) -> str:
    doc = inspect.getdoc(getattr(fn, "py_func", fn)) or ""
    return doc.splitlines()[0] if doc else ""


def _param_names(fn):
    try:
        return list(inspect.signature(getattr(fn, "py_func", fn)).parameters)
    except (TypeError, ValueError):
        return None


def discover_variants(module) -> dict[str, dict[str, Callable]]:
    """{variant suffix: {pass: function}} of a backend module's public conv functions.

    'conv2d_forward' is variant '' and 'conv2d_forward_offsets' variant 'offsets'. A function
    counts only if it is defined in that module and takes the parameters of numpy_ops's
    function of the same pass (the backend-module API).
    """
    from minicnn.kernels import numpy_ops

    variants: dict[str, dict[str, Callable]] = {}
    for pass_name, base in PASS_FUNCS.items():
        want = _param_names(getattr(numpy_ops, base))
        for attr, fn in vars(module).items():
            if attr.startswith("_") or not callable(fn):
                continue
            if attr != base and not attr.startswith(base + "_"):
                continue
            if getattr(fn, "__module__", module.__name__) != module.__name__:
                continue
            params = _param_names(fn)
            if params is not None and len(params) != len(want):
                continue
            suffix = attr[len(base) + 1 :]
            # 'conv2d_backward_input...' also starts with 'conv2d_backward': not our concern,
            # since no pass is named that; but 'conv2d_forward_x' must not be a backward.
            variants.setdefault(suffix, {})[pass_name] = fn
    return variants


def _module_pass(pass_name: str, fn) -> Callable:
    """Adapt a backend function with the backend-module signature to a builder."""

    def build(p: Problem, d: dict):
        x, w, b, dout = d["x"], d["w"], d["b"], d["dout"]
        s, pads, k = p.strides, p.pads, (p.KH, p.KW)
        if pass_name == "forward":
            return lambda: {"out": fn(x, w, b, s, pads)}
        if pass_name == "backward_input":
            return lambda: {"dx": fn(dout, w, x.shape, s, pads)}
        return lambda: {"dw": fn(dout, x, k, s, pads)}

    return build


def composed_fused(mod) -> dict[str, Callable]:
    """Fused passes built from a backend's separate calls, as the unfused layers make them.

    fused_forward: conv2d_forward, relu (NumPy), maxpool2d_forward.
    fused_backward: maxpool2d_backward, relu mask (NumPy), conv2d_backward_weights, bias sum;
    the forward's z and argmax are computed once outside the timed call (the layers' cache).
    """

    def forward(p: Problem, d: dict):
        x, w, b = d["x"], d["w"], d["b"]

        def run():
            z = mod.conv2d_forward(x, w, b, p.strides, p.pads)  # (N, Ho, Wo, F)
            pooled, _ = mod.maxpool2d_forward(np.maximum(z, 0), POOL, POOL, NO_PADS)
            return {"pooled": pooled}

        return run

    def backward(p: Problem, d: dict):
        x, w, b, dpool = d["x"], d["w"], d["b"], d["dpool"]
        z = mod.conv2d_forward(x, w, b, p.strides, p.pads)
        a = np.maximum(z, 0)
        _, argmax = mod.maxpool2d_forward(a, POOL, POOL, NO_PADS)

        def run():
            da = mod.maxpool2d_backward(dpool, argmax, a.shape, POOL, POOL, NO_PADS)
            dz = da * (z > 0)  # relu'(z)
            return {
                "dw": mod.conv2d_backward_weights(dz, x, (p.KH, p.KW), p.strides, p.pads),
                "db": dz.sum(axis=(0, 1, 2)),
            }

        return run

    return {"fused_forward": forward, "fused_backward": backward}


def backend_impls(
    backend: str,
    module_name: str,
    threads,
    family_note: str,
    jit: bool = False,
    max_timing_flops=None,
    time_on_check_twin: bool = False,
) -> list[Impl]:
    """One Impl per discovered variant of a backend module (the base one also gets the
    composed fused passes); an 'unavailable' Impl when the module does not import."""
    try:
        mod = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure means 'not available here'
        return [
            Impl(
                backend,
                "minicnn",
                unavailable=f"{module_name} not importable: {type(exc).__name__}: {exc}",
                jit=jit,
            )
        ]
    impls = []
    for suffix, fns in sorted(discover_variants(mod).items()):
        name = backend if not suffix else f"{backend}-{suffix}"
        passes = {pn: _module_pass(pn, fn) for pn, fn in fns.items()}
        notes = {pn: _first_doc_line(fn) for pn, fn in fns.items()}
        if not suffix and all(hasattr(mod, f) for f in ("maxpool2d_forward", "maxpool2d_backward")):
            passes.update(composed_fused(mod))
            notes.update(
                fused_forward="unfused: conv, relu, pool as separate calls",
                fused_backward="unfused: pool-backward, relu mask, dW, db separately",
            )
        # a variant's own docstring says what it does differently
        note = family_note if not suffix else next(iter(notes.values()), family_note)
        impls.append(
            Impl(
                name,
                "minicnn",
                passes,
                threads,
                note,
                notes,
                max_timing_flops=max_timing_flops,
                time_on_check_twin=time_on_check_twin,
                jit=jit,
            )
        )
    return impls


def fused_impls(threads) -> list[Impl]:
    """The fused conv+bias+relu+maxpool kernels of the Numba backend, where they exist."""
    from benchmarks import conv_fused

    return conv_fused.impls(threads)


# ---- SciPy --------------------------------------------------------------------------------


def _pad(x, pads):
    pt, pb, pl, pr = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))


def _scipy_corr2d(p: Problem, d: dict):
    """Loop over (n, f), sum correlate2d over c: N*F*C calls of a 2-D 'valid' correlation."""
    from scipy.signal import correlate2d

    x, w, b = d["x"], d["w"], d["b"]
    sh, sw = p.strides

    def run():
        xt = np.ascontiguousarray(_pad(x, p.pads).transpose(0, 3, 1, 2))  # (N, C, Hp, Wp)
        wt = np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # (F, C, KH, KW)
        N, C = xt.shape[:2]
        F = wt.shape[0]
        out = np.empty((N, F, *p.out_hw), dtype=np.result_type(x, w))
        for n in range(N):
            for f in range(F):
                acc = correlate2d(xt[n, 0], wt[f, 0], mode="valid")
                for c in range(1, C):
                    acc += correlate2d(xt[n, c], wt[f, c], mode="valid")
                out[n, f] = acc[::sh, ::sw]
        return {"out": out.transpose(0, 2, 3, 1) + b}  # (N, Ho, Wo, F)

    return run


def _scipy_fft(threads):
    def build(p: Problem, d: dict):
        """One N-D FFT correlation per filter f: x (N, Hp, Wp, C) with w[None, ..., f], which
        sums over c and keeps n (the kernel's batch axis has length 1)."""
        import scipy.fft
        from scipy.signal import correlate

        x, w, b = d["x"], d["w"], d["b"]
        sh, sw = p.strides

        def run():
            xp = _pad(x, p.pads)
            out = np.empty((x.shape[0], *p.out_hw, w.shape[3]), dtype=np.result_type(x, w))
            with scipy.fft.set_workers(threads()):
                for f in range(w.shape[3]):
                    y = correlate(xp, w[None, :, :, :, f], mode="valid", method="fft")
                    out[..., f] = y[:, ::sh, ::sw, 0]
            return {"out": out + b}

        return run

    return build


def scipy_impls(threads) -> list[Impl]:
    try:
        import scipy.signal  # noqa: F401
    except ImportError as exc:
        return [Impl("scipy", "scipy", unavailable=f"scipy not importable: {exc}")]
    return [
        Impl(
            "scipy-corr2d",
            "scipy",
            {"forward": _scipy_corr2d},
            1,
            "scipy.signal.correlate2d per (n, f, c), summed over c; single-threaded",
            max_timing_flops=SCIPY_TIMING_FLOPS,
        ),
        Impl(
            "scipy-fft",
            "scipy",
            {"forward": _scipy_fft(threads)},
            threads,
            "scipy.signal.correlate(method='fft') per f on the whole (N, H, W, C) batch",
            max_timing_flops=SCIPY_TIMING_FLOPS,
        ),
    ]


# ---- TensorFlow ---------------------------------------------------------------------------


def tf_impls(threads) -> list[Impl]:
    """tf.nn.conv2d and its gradient ops, each pass one warmed-up tf.function call."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        return [Impl("tf", "tensorflow", unavailable=f"tensorflow not importable: {exc}")]
    from benchmarks.machine import set_tf_threads

    set_tf_threads(threads())  # before TF runs its first op, or it keeps its defaults

    def consts(d, *keys):
        return [tf.constant(d[k]) for k in keys]

    def forward(p: Problem, d: dict):
        x, w, b = consts(d, "x", "w", "b")
        st, pad = [1, *p.strides, 1], p.padding.upper()
        f = tf.function(lambda x, w, b: tf.nn.bias_add(tf.nn.conv2d(x, w, st, pad), b))
        return lambda: {"out": f(x, w, b)}

    def backward_input(p: Problem, d: dict):
        w, dout = consts(d, "w", "dout")
        shape = tf.constant(d["x"].shape, tf.int32)
        st, pad = [1, *p.strides, 1], p.padding.upper()
        f = tf.function(
            lambda s, w, g: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=s, filter=w, out_backprop=g, strides=st, padding=pad
            )
        )
        return lambda: {"dx": f(shape, w, dout)}

    def backward_weights(p: Problem, d: dict):
        x, dout = consts(d, "x", "dout")
        shape = tf.constant(d["w"].shape, tf.int32)
        st, pad = [1, *p.strides, 1], p.padding.upper()
        f = tf.function(
            lambda x, s, g: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=s, out_backprop=g, strides=st, padding=pad
            )
        )
        return lambda: {"dw": f(x, shape, dout)}

    def fused_forward(p: Problem, d: dict):
        x, w, b = consts(d, "x", "w", "b")
        st, pad = [1, *p.strides, 1], p.padding.upper()
        f = tf.function(
            lambda x, w, b: tf.nn.max_pool2d(
                tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, st, pad), b)), POOL, POOL, "VALID"
            )
        )
        return lambda: {"pooled": f(x, w, b)}

    def fused_backward(p: Problem, d: dict):
        """From the activations Keras keeps (relu output a and pooled): MaxPoolGrad, ReluGrad,
        Conv2DBackpropFilter and BiasAddGrad in one tf.function."""
        x, w, b, dpool = consts(d, "x", "w", "b", "dpool")
        st, pad = [1, *p.strides, 1], p.padding.upper()
        a = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, st, pad), b))
        pooled = tf.nn.max_pool2d(a, POOL, POOL, "VALID")
        wshape = tf.constant(d["w"].shape, tf.int32)
        k = [1, *POOL, 1]

        @tf.function
        def f(x, a, pooled, g, wshape):
            da = tf.raw_ops.MaxPoolGrad(
                orig_input=a, orig_output=pooled, grad=g, ksize=k, strides=k, padding="VALID"
            )
            dz = tf.raw_ops.ReluGrad(gradients=da, features=a)
            dw = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=wshape, out_backprop=dz, strides=st, padding=pad
            )
            return dw, tf.raw_ops.BiasAddGrad(out_backprop=dz)

        def run():
            dw, db = f(x, a, pooled, dpool, wshape)
            return {"dw": dw, "db": db}

        return run

    onednn = _tf_onednn()
    note = "tf.nn.conv2d / Conv2DBackprop{Input,Filter}, one tf.function call each; kernels: " + (
        "oneDNN" if onednn else "Eigen" if onednn is False else "unknown"
    )
    return [
        Impl(
            "tf",
            "tensorflow",
            {
                "forward": forward,
                "backward_input": backward_input,
                "backward_weights": backward_weights,
                "fused_forward": fused_forward,
                "fused_backward": fused_backward,
            },
            lambda: tf.config.threading.get_intra_op_parallelism_threads() or threads(),
            note,
            {
                "fused_forward": "conv2d+bias_add+relu+max_pool2d in one tf.function",
                "fused_backward": "MaxPoolGrad+ReluGrad+Conv2DBackpropFilter+BiasAddGrad",
            },
        )
    ]


def _tf_onednn():
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def tf_call_overhead_us(repeats: int = 200) -> float | None:
    """Median cost of calling a trivial tf.function (the Python dispatch in every TF time)."""
    import sys
    import time

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


# ---- the registry -------------------------------------------------------------------------


def _numba_threads():
    try:
        import numba

        return numba.get_num_threads()
    except ImportError:
        return 1


def default_registry(threads: int, tensorflow: bool = True, scipy: bool = True) -> list[Impl]:
    """Every implementation this machine can run, minicnn's first, then SciPy and TF."""

    def blas_threads():
        return threads

    impls = backend_impls(
        "naive",
        "minicnn.kernels.naive",
        1,
        "minicnn's nested Python loops (the oracle); timed on a reduced twin",
        time_on_check_twin=True,
    )
    impls += backend_impls(
        "numpy",
        "minicnn.kernels.numpy_ops",
        blas_threads,
        "NumPy: im2col + one BLAS GEMM (forward, dW); one GEMM per kernel tap (dX)",
    )
    impls += backend_impls(
        "numba", "minicnn.kernels.numba_ops", _numba_threads, "minicnn's Numba kernels", jit=True
    )
    impls += fused_impls(_numba_threads)
    if scipy:
        impls += scipy_impls(blas_threads)
    if tensorflow:
        impls += tf_impls(blas_threads)
    return impls
