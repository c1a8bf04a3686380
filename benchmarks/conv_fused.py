"""Adapter from minicnn's fused Numba unit to the benchmark's fused passes.

fused_forward:  x, w, b -> pooled = maxpool2x2(relu(conv(x, w) + b))   (N, Hp, Wp, F)
fused_backward: dpool (N, Hp, Wp, F) -> dw (KH, KW, C, F), db (F,), from the forward's cache
                (the first layer's case: no input gradient, as in the seed model)

The unit is built the way the model builds it: real Conv2D(relu) and MaxPooling2D layers,
grouped by ``minicnn.fusion.plan``; so the timed call is exactly what a training step runs.
"""

from __future__ import annotations

import importlib

from benchmarks.conv_impls import Impl
from benchmarks.conv_problems import POOL, Problem

FUSED_MODULE = "minicnn.kernels.numba_conv_pool"


def _unit(p: Problem, d: dict):
    """A ConvReluPool over Conv2D(F, relu) -> MaxPooling2D(2) holding w and b."""
    from minicnn.fusion import plan
    from minicnn.layers import Conv2D, Flatten, MaxPooling2D

    conv = Conv2D(
        p.F, (p.KH, p.KW), strides=p.strides, padding=p.padding, activation="relu", dtype="float32"
    )
    conv.build_for((p.H, p.W, p.C))
    conv.set_weights([d["w"], d["b"]])
    conv.needs_input_grad = False  # the seed model's conv is its first layer
    pool = MaxPooling2D(POOL)
    pool.build_for(conv.compute_output_shape((p.H, p.W, p.C)))
    # the model's last layer is never fused: a Flatten stands in for it
    units = plan([conv, pool, Flatten()], "numba")
    unit = units[0]
    if unit is conv or getattr(unit, "pool", None) is not pool:
        raise NotImplementedError(f"fusion.plan did not fuse conv + pool for {p.label()}")
    return unit, conv


def _forward(p: Problem, d: dict):
    unit, _ = _unit(p, d)
    x = d["x"]
    return lambda: {"pooled": unit.forward(x, training=False)}


def _backward(p: Problem, d: dict):
    unit, conv = _unit(p, d)
    unit.forward(d["x"], training=True)  # the cache backward reads: one byte per output
    dpool = d["dpool"]

    def run():
        unit.backward(dpool)
        return {"dw": conv.grads["kernel"], "db": conv.grads["bias"]}

    return run


def impls(threads) -> list[Impl]:
    """The fused Impl, or an 'unavailable' one saying why."""
    try:
        mod = importlib.import_module(FUSED_MODULE)
    except Exception as exc:  # noqa: BLE001 - any import failure means 'not available here'
        return [
            Impl(
                "numba-fused",
                "minicnn",
                unavailable=f"{FUSED_MODULE} not importable: {type(exc).__name__}: {exc}",
                jit=True,
            )
        ]
    if not hasattr(mod, "conv_pool_forward"):
        return [
            Impl("numba-fused", "minicnn", unavailable=f"{FUSED_MODULE} has no kernels",
                 jit=True)
        ]
    return [
        Impl(
            "numba-fused",
            "minicnn",
            {"fused_forward": _forward, "fused_backward": _backward},
            threads,
            "minicnn's fused Numba unit (ConvReluPool): conv+bias+pool+relu in one pass, "
            "1-byte winner code; backward visits only the winners",
            {
                "fused_forward": "ConvReluPool.forward",
                "fused_backward": "ConvReluPool.backward (dW, db; no dX)",
            },
            jit=True,
        )
    ]
