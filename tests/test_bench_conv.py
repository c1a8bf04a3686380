"""The conv benchmark: its JSON schema, its correctness gate, and its handling of bad kernels.

No timing is asserted: only that every implementation agreed with the naive loops, that a wrong
one is reported as wrong and never timed, that "% of peak" is taken against the roofline's peak,
and that the output has every field it promises.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import machine
from benchmarks.conv import run as conv_run
from benchmarks.conv.impls import Impl, minicnn_impls
from benchmarks.conv.problems import FULL, PASSES, TINY, Problem, crop_inputs, make_inputs, reduced
from benchmarks.conv.run import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {"shape", "pass", "impl", "family", "status", "checks", "timing", "median_ms",
            "gflops", "pct_roofline", "scaled_from", "threads", "note"}
TIMING_KEYS = {"median_ms", "q25_ms", "q75_ms", "min_ms", "max_ms", "repeats", "number",
               "first_call_ms"}
DOC_KEYS = {"schema", "created_unix", "command", "config", "roofline", "shapes", "impls",
            "unavailable", "results", "first_calls", "scaling", "jit", "environment",
            "duration_s"}
FAST_TIMING = {"budget": 0.0, "min_repeats": 2}


def _numpy_and_naive():
    return [i for i in minicnn_impls(lambda: 1, lambda: 1) if not i.name.startswith("numba")]


def _quiet(*args):
    pass


def test_minicnn_implementations_are_listed_explicitly():
    from minicnn.config import numba_available

    impls = {i.name: i for i in minicnn_impls(lambda: 1, lambda: 1)}
    assert list(impls) == ["naive", "numpy", "numpy-offsets", "numba", "numba-fused"]
    for name in ("naive", "numpy", "numba"):
        assert set(impls[name].passes) == set(PASSES) or impls[name].unavailable, name
    assert set(impls["numpy-offsets"].passes) == {"forward"}
    assert numba_available() == (impls["numba-fused"].unavailable is None)


@pytest.mark.parametrize("p", FULL, ids=lambda p: p.name)
def test_reduced_twin_keeps_the_layer_and_fits_the_budget(p):
    q = reduced(p, 1e6)
    assert (q.C, q.F, q.KH, q.KW, q.padding, q.strides) == (
        p.C, p.F, p.KH, p.KW, p.padding, p.strides)
    assert q.N <= p.N and q.H <= p.H and q.W <= p.W
    # over budget only when it cannot shrink further: one sample, a 2x2 pooled output
    assert q.flops() <= 1e6 or (q.N == 1 and min(q.pooled_hw) == 2)
    assert min(q.pooled_hw) >= 2  # the fused passes still pool more than one window
    small = Problem("t", 2, 9, 9, 3, 4)
    assert crop_inputs(make_inputs(small), reduced(small, 1e3))["x"].flags.c_contiguous


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
    doc = run_benchmark([TINY[0]], impls, ["forward", "backward_weights"], threads=1,
                        roofline=False, log=_quiet, **FAST_TIMING)
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
    assert not any(r["impl"] == "absent" for r in doc["results"])
    for name in ("naive", "numpy", "numpy-offsets"):
        assert rows[name, "forward"]["status"] == "ok"
        assert rows[name, "forward"]["timing"]["median_ms"] > 0
    from benchmarks.conv.report import results_table

    table = results_table(doc)
    assert "skipped absent: not installed here" in table and "WRONG" in table


def test_check_catches_an_off_by_one_and_accepts_float32_rounding():
    from minicnn.kernels import numpy_ops
    from minicnn.kernels.dispatch import table

    p = TINY[1]
    d = make_inputs(p)
    exp = conv_run.reference("backward_weights", p, d, table("naive"))
    good = numpy_ops.conv2d_backward_weights(d["dout"], d["x"], (3, 3), p.strides, p.pads)
    assert conv_run.compare({"dw": good}, exp)["ok"]
    res = conv_run.compare({"dw": np.roll(good, 1, axis=0)}, exp)
    assert not res["ok"] and res["max_rel_err"] > 0.1
    assert not conv_run.compare({"dw": good[:1]}, exp)["ok"]  # wrong shape
    assert not conv_run.compare({"dw": good * np.nan}, exp)["ok"]  # not finite


def test_percent_of_peak_uses_the_best_kernels_peak(monkeypatch):
    """The roofline's 'gflops' (the best kernel's) is what every row's percentage divides by."""
    fake = {"n": 2048, "threads": 1, "gflops": 400.0, "blas_kernel": "SkylakeX",
            "best": {"gflops": 400.0, "gflops_best": 410.0, "blas_kernel": "SkylakeX",
                     "blas_version": "0.3"},
            "override": {"gflops": 200.0, "gflops_best": 210.0, "blas_kernel": "Haswell"},
            "override_env": "OPENBLAS_CORETYPE=Haswell"}
    monkeypatch.setattr(machine, "roofline", lambda *a, **k: dict(fake))
    doc = run_benchmark([TINY[0]], _numpy_and_naive()[1:2], ["forward"], threads=1, quick=True,
                        log=_quiet, **FAST_TIMING)
    (row,) = doc["results"]
    assert row["pct_roofline"] == pytest.approx(100 * row["gflops"] / 400.0)
    assert doc["roofline"]["nominal_peak"]["flop_per_cycle_per_core"] in (16, 32, 64)


def test_every_minicnn_kernel_passes_its_check_on_the_tiny_shapes():
    """naive, NumPy, Numba and the fused unit, all passes, 'valid' and 'same'.

    In-process, so the Numba compile is shared with the rest of the suite (and cached on disk
    for the subprocess test below)."""
    from minicnn.config import numba_available

    impls = [i for i in minicnn_impls(lambda: 1, lambda: 1) if not i.unavailable]
    doc = run_benchmark(TINY, impls, list(PASSES), threads=1, roofline=False, log=_quiet,
                        **FAST_TIMING)
    assert {r["impl"] for r in doc["results"]} == {i.name for i in impls}
    for r in doc["results"]:
        where = f"{r['impl']}/{r['pass']}@{r['shape']}"
        assert r["status"] == "ok", f"{where}: {r.get('error') or r['checks']}"
    if numba_available():
        fused = {(r["shape"], r["pass"]) for r in doc["results"] if r["impl"] == "numba-fused"}
        assert fused == {(p.name, n) for p in TINY for n in ("fused_forward", "fused_backward")}


def _bench(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.conv", "--shapes", "tiny", "--threads", "2",
         "--budget", "0", "--min-repeats", "2", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_pytorch_and_jax_pass_their_checks_on_the_tiny_shapes(tmp_path):
    """Every pass of the anchors, checked against the naive loops like every other (in a
    subprocess: their thread pools stay out of this process)."""
    libs = [lib for lib in ("torch", "jax") if importlib.util.find_spec(lib) is not None]
    if not libs:
        pytest.skip("torch and jax not installed (pip install -e '.[anchors]')")
    out = tmp_path / "conv.json"
    proc = _bench("--impls", ",".join(libs), "--no-tf", "--no-scipy", "--no-roofline",
                  "--no-scaling", "--no-jit", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert {(r["impl"], r["shape"], r["pass"]) for r in rows} == {
        (lib, p.name, n) for lib in libs for p in TINY for n in PASSES}
    for r in rows:
        where = f"{r['impl']}/{r['pass']}@{r['shape']}"
        assert r["status"] == "ok", f"{where}: {r.get('error') or r['checks']}"


def test_a_missing_library_is_one_skip_line(monkeypatch):
    import builtins

    from benchmarks.conv import impls as conv_impls

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    (impl,) = conv_impls.torch_impls(1)
    assert impl.name == "torch" and not impl.passes
    assert "torch not importable" in impl.unavailable and "[anchors]" in impl.unavailable


@pytest.mark.keras
def test_quick_benchmark_writes_schema_and_every_implementation_passes(tmp_path):
    out, png = tmp_path / "conv.json", tmp_path / "conv.png"
    proc = _bench("--quick", "--no-torch", "--no-jax", "--json", str(out), "--plot", str(png))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert DOC_KEYS <= set(doc) and doc["schema"] == conv_run.SCHEMA
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    roof = doc["roofline"]
    assert roof["gflops"] > 0 and roof["blas_kernel"] and roof["best"]["blas_kernel"]
    assert (roof["override"] is None) == (roof["override_env"] is None)
    assert "roofline: float32 GEMM" in proc.stdout and "% of peak uses" in proc.stdout
    env_doc = doc["environment"]
    assert {"machine", "cpu", "versions", "env", "blas", "numba", "tensorflow", "threads"} <= set(
        env_doc)
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
            got = {r["impl"] for r in doc["results"]
                   if r["shape"] == p.name and r["pass"] == pass_name}
            assert {"naive", "numpy", "tf"} <= got, (p.name, pass_name)
