"""The conv benchmark: its JSON schema, its correctness gate, and its handling of bad kernels.

No timing is asserted: only that every implementation agreed with the naive loops, that a wrong
one is reported as wrong and never timed, and that the output has every field it promises.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import conv_check
from benchmarks.conv import run_benchmark
from benchmarks.conv_impls import Impl, backend_impls, discover_variants
from benchmarks.conv_problems import (
    FULL,
    PASSES,
    TINY,
    Problem,
    crop_inputs,
    make_inputs,
    reduced,
)

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {
    "shape",
    "pass",
    "impl",
    "family",
    "status",
    "checks",
    "timing",
    "median_ms",
    "gflops",
    "pct_roofline",
    "scaled_from",
    "threads",
    "note",
}
TIMING_KEYS = {
    "median_ms",
    "q25_ms",
    "q75_ms",
    "min_ms",
    "max_ms",
    "repeats",
    "number",
    "first_call_ms",
}
DOC_KEYS = {
    "schema",
    "created_unix",
    "command",
    "config",
    "roofline",
    "shapes",
    "impls",
    "unavailable",
    "results",
    "first_calls",
    "scaling",
    "jit",
    "environment",
    "duration_s",
}
FAST_TIMING = {"budget": 0.0, "min_repeats": 2}


def _numpy_and_naive():
    return backend_impls(
        "naive", "minicnn.kernels.naive", 1, "loops", time_on_check_twin=True
    ) + backend_impls("numpy", "minicnn.kernels.numpy_ops", 1, "im2col")


def test_discovers_backend_variants_by_name_and_signature():
    from minicnn.kernels import numpy_ops

    v = discover_variants(numpy_ops)
    assert set(v) == {"", "offsets"}
    assert set(v[""]) == {"forward", "backward_input", "backward_weights"}
    assert v["offsets"] == {"forward": numpy_ops.conv2d_forward_offsets}


@pytest.mark.parametrize("p", FULL, ids=lambda p: p.name)
def test_reduced_twin_keeps_the_layer_and_fits_the_budget(p):
    q = reduced(p, 1e6)
    assert (q.C, q.F, q.KH, q.KW, q.padding, q.strides) == (
        p.C,
        p.F,
        p.KH,
        p.KW,
        p.padding,
        p.strides,
    )
    assert q.N <= p.N and q.H <= p.H and q.W <= p.W
    # over budget only when it cannot shrink further: one sample, a 2x2 pooled output
    assert q.flops() <= 1e6 or (q.N == 1 and min(q.pooled_hw) == 2)
    assert min(q.pooled_hw) >= 2  # the fused passes still pool more than one window
    d = crop_inputs(
        make_inputs(Problem("t", 2, 9, 9, 3, 4)), reduced(Problem("t", 2, 9, 9, 3, 4), 1e3)
    )
    assert d["x"].flags.c_contiguous


def test_wrong_and_crashing_implementations_are_reported_not_timed():
    calls = {"wrong": 0}

    def wrong_forward(p, d):
        from minicnn.kernels import numpy_ops

        def run():
            calls["wrong"] += 1
            out = numpy_ops.conv2d_forward(d["x"], d["w"], d["b"], p.strides, p.pads)
            return {"out": out[:, ::-1]}  # a flipped image: right values, wrong places

        return run

    def crashing(p, d):
        def run():
            raise IndexError("boom")

        return run

    def unsupported(p, d):
        raise NotImplementedError("only 'valid' padding")

    impls = _numpy_and_naive() + [
        Impl("wrong", "minicnn", {"forward": wrong_forward}),
        Impl("crash", "minicnn", {"forward": crashing, "backward_weights": crashing}),
        Impl("partial", "minicnn", {"forward": unsupported}),
        Impl("absent", "minicnn", unavailable="not installed here"),
    ]
    doc = run_benchmark(
        [TINY[0]],
        impls,
        ["forward", "backward_weights"],
        threads=1,
        roofline=False,
        log=lambda *a: None,
        **FAST_TIMING,
    )
    rows = {(r["impl"], r["pass"]): r for r in doc["results"]}
    wrong = rows["wrong", "forward"]
    assert wrong["status"] == "wrong"
    assert wrong["timing"] is None and wrong["median_ms"] is None and wrong["gflops"] is None
    assert not wrong["checks"]["twin_vs_naive"]["ok"]
    assert calls["wrong"] <= 2  # the twin check and the full-size check, never a timing loop
    assert rows["crash", "forward"]["status"] == "error"
    assert "boom" in rows["crash", "forward"]["error"]
    assert rows["crash", "backward_weights"]["timing"] is None
    assert rows["partial", "forward"]["status"] == "unsupported"
    assert doc["unavailable"] == [{"impl": "absent", "reason": "not installed here"}]
    for name in ("naive", "numpy", "numpy-offsets"):
        assert rows[name, "forward"]["status"] == "ok"
        assert rows[name, "forward"]["timing"]["median_ms"] > 0


def test_check_catches_an_off_by_one_and_accepts_float32_rounding():
    p = TINY[1]
    d = make_inputs(p)
    from minicnn.kernels import naive, numpy_ops

    exp = conv_check.reference("backward_weights", p, d, naive)
    good = numpy_ops.conv2d_backward_weights(d["dout"], d["x"], (3, 3), p.strides, p.pads)
    assert conv_check.compare({"dw": good}, exp)["ok"]
    shifted = np.roll(good, 1, axis=0)
    res = conv_check.compare({"dw": shifted}, exp)
    assert not res["ok"] and res["max_rel_err"] > 0.1
    assert not conv_check.compare({"dw": good[:1]}, exp)["ok"]  # wrong shape
    assert not conv_check.compare({"dw": good * np.nan}, exp)["ok"]  # not finite


def test_every_minicnn_kernel_passes_its_check_on_the_tiny_shapes():
    """naive, NumPy, every Numba variant and the fused unit, all passes, 'valid' and 'same'.

    In-process, so the Numba compile is shared with the rest of the suite (and cached on disk
    for the subprocess test below)."""
    from benchmarks.conv_fused import impls as fused_impls
    from minicnn.config import numba_available

    impls = _numpy_and_naive()
    if numba_available():
        impls += backend_impls("numba", "minicnn.kernels.numba_ops", 1, "numba", jit=True)
        impls += fused_impls(1)
    doc = run_benchmark(
        TINY, impls, list(PASSES), threads=1, roofline=False, log=lambda *a: None, **FAST_TIMING
    )
    assert not doc["unavailable"], doc["unavailable"]
    names = {i.name for i in impls}
    assert {r["impl"] for r in doc["results"]} == names
    for r in doc["results"]:
        where = f"{r['impl']}/{r['pass']}@{r['shape']}"
        assert r["status"] == "ok", f"{where}: {r.get('error') or r['checks']}"
    if numba_available():
        fused = {(r["shape"], r["pass"]) for r in doc["results"] if r["impl"] == "numba-fused"}
        assert fused == {(p.name, n) for p in TINY for n in ("fused_forward", "fused_backward")}


@pytest.mark.keras
def test_quick_benchmark_writes_schema_and_every_implementation_passes(tmp_path):
    out, png = tmp_path / "conv.json", tmp_path / "conv.png"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.conv",
            "--quick",
            "--shapes",
            "tiny",
            "--threads",
            "2",
            "--budget",
            "0",
            "--min-repeats",
            "2",
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert DOC_KEYS <= set(doc) and doc["schema"] == "minicnn.bench.conv/1"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["roofline"]["gflops"] > 0 and doc["roofline"]["blas_kernel"]
    env_doc = doc["environment"]
    assert {"cpu", "versions", "env", "blas", "numba", "tensorflow", "threads"} <= set(env_doc)
    assert env_doc["threads"]["requested"] == 2 and env_doc["tensorflow"]["imported"]
    assert [s["name"] for s in doc["shapes"]] == [p.name for p in TINY]
    available = {i["name"] for i in doc["impls"] if not i["unavailable"]}
    assert {"naive", "numpy", "numpy-offsets", "scipy-corr2d", "scipy-fft", "tf"} <= available
    assert {r["impl"] for r in doc["results"]} == available
    for r in doc["results"]:
        where = f"{r['impl']}/{r['pass']}@{r['shape']}"
        assert ROW_KEYS <= set(r), where
        assert r["status"] == "ok", f"{where}: {r.get('error') or r['checks']}"
        assert all(c["ok"] for c in r["checks"].values() if c is not None), where
        assert TIMING_KEYS <= set(r["timing"]), where
        assert r["gflops"] > 0 and r["pct_roofline"] > 0, where
    for p in TINY:  # every pass of every shape was run by the naive oracle and by TF
        for pass_name in doc["config"]["passes"]:
            got = {
                r["impl"] for r in doc["results"] if r["shape"] == p.name and r["pass"] == pass_name
            }
            assert {"naive", "numpy", "tf"} <= got, (p.name, pass_name)
