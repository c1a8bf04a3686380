"""benchmarks.machine: the machine line is read from /proc/cpuinfo-style text, and the roofline
is measured with the best kernel and with the environment's override, the best one as the peak.
No timing value is asserted."""

import pytest

from benchmarks import machine

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2596.122
flags\t\t: fpu sse4_2 avx fma avx2 avx512f avx512dq avx512_vnni avx512_bf16 avx_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
"""
INTEL = ZEN5.replace("AuthenticAMD", "GenuineIntel").replace("26", "6").replace("AMD EPYC", "Xeon")


def test_cpu_info_reads_family_model_zen_generation_isa_and_cores():
    cpu = machine.cpu_info(ZEN5)
    assert (cpu["vendor"], cpu["family"], cpu["model_number"], cpu["zen"]) == ("AMD", 26, 2,
                                                                               "Zen 5")
    assert cpu["isa"] == ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni"]
    assert cpu["cores"] == 2 and cpu["mhz"] == pytest.approx(2596.122)
    intel = machine.cpu_info(INTEL)
    assert intel["vendor"] == "Intel" and intel["family"] == 6 and intel["zen"] is None


@pytest.mark.parametrize("family, model, zen", [
    (0x17, 0x31, "Zen 2"), (0x17, 0x08, "Zen 1"), (0x19, 0x01, "Zen 3"), (0x19, 0x11, "Zen 4"),
    (0x19, 0x61, "Zen 4"), (0x1A, 0x02, "Zen 5"), (0x1A, 0x44, "Zen 5"), (0x1A, 0x50, "Zen 6"),
    (0x1A, 0x30, None), (0x15, 0x02, None),
])
def test_zen_generation_from_family_and_model(family, model, zen):
    assert machine.zen_generation(family, model) == zen


def test_machine_line_names_the_cpu_and_the_libraries():
    vers = {"python": "3.11.7", "numpy": "2.4.6", "openblas": "0.3.31", "numba": "0.68.1",
            "torch": "2.13.0", "threadpoolctl": "3.5"}
    line = machine.machine_line(machine.cpu_info(ZEN5), vers)
    assert line.startswith("AMD EPYC (AMD family 26 model 2, Zen 5), 2 logical cores, 2596 MHz")
    assert "avx512f avx512_vnni" in line
    assert "NumPy 2.4.6 (OpenBLAS 0.3.31), Numba 0.68.1, PyTorch 2.13.0" in line
    assert "threadpoolctl" not in line
    assert machine.nominal_peak(2, machine.cpu_info(ZEN5))["flop_per_cycle_per_core"] == 64
    assert machine.cpu_info()["cores"] >= 1  # this machine's own /proc/cpuinfo parses


def _fake_peak(calls):
    def gemm_peak(threads, n=2048, repeats=5, unset=()):
        calls.append(tuple(unset))
        kernel, gflops = ("SkylakeX", 420.0) if machine.CORETYPE in unset else ("Haswell", 225.0)
        return {"n": n, "threads": threads, "gflops": gflops, "gflops_best": gflops + 5,
                "blas_kernel": kernel, "blas_version": "0.3.31", "median_s": 1.0}

    return gemm_peak


def test_roofline_measures_both_kernels_and_uses_the_best(monkeypatch):
    calls = []
    monkeypatch.setattr(machine, "gemm_peak", _fake_peak(calls))
    monkeypatch.setenv(machine.CORETYPE, "Haswell")
    roof = machine.roofline(2)
    assert calls == [(machine.CORETYPE,), ()]  # the best without the override, then with it
    assert (roof["gflops"], roof["blas_kernel"]) == (420.0, "SkylakeX")
    assert roof["override"]["blas_kernel"] == "Haswell"
    lines = "\n".join(machine.roofline_lines(roof))
    assert "% of peak uses 420.0 GFLOP/s (SkylakeX kernel)" in lines
    assert "OPENBLAS_CORETYPE=Haswell: Haswell kernel): 225.0 GFLOP/s" in lines

    calls.clear()
    monkeypatch.delenv(machine.CORETYPE)
    roof = machine.roofline(2)
    assert calls == [(machine.CORETYPE,)] and roof["override"] is None
    assert "no OPENBLAS_CORETYPE in the environment" in "\n".join(machine.roofline_lines(roof))


def test_gemm_peak_names_the_kernel_the_override_forces(monkeypatch):
    """A tiny GEMM in a fresh process: OpenBLAS reports the forced kernel, and the best-kernel
    run really runs without the variable."""
    monkeypatch.setenv(machine.CORETYPE, "Haswell")
    forced = machine.gemm_peak(1, n=64, repeats=1)
    best = machine.gemm_peak(1, n=64, repeats=1, unset=(machine.CORETYPE,))
    assert "error" not in forced and "error" not in best, (forced, best)
    if forced["blas_kernel"] is None:
        pytest.skip("this BLAS does not report its kernel (not OpenBLAS)")
    assert forced["blas_kernel"] == "Haswell" and forced["env_unset"] == []
    assert best["env_unset"] == [machine.CORETYPE] and best["gflops"] > 0
