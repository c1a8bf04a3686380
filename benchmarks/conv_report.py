"""The terminal tables of the conv benchmark (results, first calls, scaling)."""

from __future__ import annotations

PASS_SHORT = {
    "forward": "fwd",
    "backward_input": "bwd-input",
    "backward_weights": "bwd-weights",
    "fused_forward": "fused-fwd",
    "fused_backward": "fused-bwd",
}


def fmt_ms(v) -> str:
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.3f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:.0f}"


def _check_cell(row) -> str:
    status = row["status"]
    if status in ("ok", "wrong"):
        rel = max(c["max_rel_err"] for c in row["checks"].values() if c is not None)
        return f"{'ok' if status == 'ok' else 'WRONG'} {rel:.0e}"
    return status.upper() if status == "error" else status


def _note_cell(row) -> str:
    if row["status"] == "error":
        return row.get("error", "")[:60]
    if row["status"] == "wrong":
        probs = [p for c in row["checks"].values() if c for p in c["problems"]]
        return "not timed: " + "; ".join(probs)[:60]
    if row.get("scaled_from"):
        sf = row["scaled_from"]
        return f"timed at {sf['label']}, x{sf['factor']:.4g}"
    return ""


def results_table(doc: dict) -> str:
    """Shape | pass | impl | median ms | IQR ms | min ms | GFLOP/s | % roofline | check | note.

    The minimum is shown beside the median because on a busy machine it is the better estimate
    of what the kernel itself costs; GFLOP/s and % roofline are from the median.
    """
    roof = doc.get("roofline") or {}
    lines = []
    head = (
        f"{'shape':<12} {'pass':<11} {'impl':<14} {'median ms':>10} {'IQR ms':>17} {'min ms':>9} "
        f"{'GFLOP/s':>8} {'%roof':>6} {'check':<10} note"
    )
    lines.append(head)
    lines.append("-" * len(head))
    prev = None
    for row in doc["results"]:
        key = (row["shape"], row["pass"])
        if prev is not None and key != prev:
            lines.append("")
        prev = key
        t = row.get("timing")
        iqr = f"{fmt_ms(t['q25_ms'])}-{fmt_ms(t['q75_ms'])}" if t else "-"
        g = f"{row['gflops']:.3g}" if row.get("gflops") is not None else "-"
        pct = f"{row['pct_roofline']:.2g}" if row.get("pct_roofline") is not None else "-"
        lines.append(
            f"{row['shape']:<12} {PASS_SHORT.get(row['pass'], row['pass']):<11} "
            f"{row['impl']:<14} {fmt_ms(t['median_ms'] if t else None):>10} "
            f"{iqr:>17} {fmt_ms(t['min_ms'] if t else None):>9} {g:>8} {pct:>6} "
            f"{_check_cell(row):<10} {_note_cell(row)}"
        )
    for u in doc.get("unavailable", []):
        lines.append(
            f"{'*':<12} {'*':<11} {u['impl']:<14} {'-':>10} {'-':>17} {'-':>9} {'-':>8} "
            f"{'-':>6} {'n/a':<10} not available: {u['reason'][:70]}"
        )
    if roof.get("gflops"):
        lines.append("")
        lines.append(
            f"roofline: float32 GEMM {roof['n']}^3, {roof['threads']} threads: "
            f"{roof['gflops']:.1f} GFLOP/s median ({roof['gflops_best']:.1f} best), "
            f"BLAS kernel {roof.get('blas_kernel')} (OpenBLAS {roof.get('blas_version')})"
            + (f", with {', '.join(roof['env_unset'])} unset" if roof.get("env_unset") else "")
        )
        if roof.get("end_gflops"):
            lines.append(
                f"  (measured at the start {roof['start_gflops']:.1f} and end "
                f"{roof['end_gflops']:.1f} GFLOP/s; the better one is the roofline)"
            )
        if (roof.get("one_thread") or {}).get("gflops"):
            lines.append(f"  one thread: {roof['one_thread']['gflops']:.1f} GFLOP/s")
        nom = roof.get("nominal_peak") or {}
        if nom.get("gflops"):
            lines.append(
                f"  nominal {nom['gflops']:.0f} GFLOP/s ({nom['assumption']}, "
                f"{nom['mhz']:.0f} MHz; a VM may report the base clock while the core boosts)"
            )
        lines.append(
            "  a row above 100% beats this GEMM as measured (on a busy machine the GEMM loses "
            "more than a short kernel does), not the hardware"
        )
    return "\n".join(lines)


def shapes_legend(doc: dict) -> str:
    lines = ["shapes (GFLOP/s counts 2*N*Ho*Wo*F*KH*KW*C per pass, the dense conv work):"]
    for s in doc["shapes"]:
        lines.append(
            f"  {s['name']:<12} {s['label']:<32} {s['flops'] / 1e6:9.1f} MFLOP  {s['note']}"
        )
    return "\n".join(lines)


def impls_legend(doc: dict) -> str:
    lines = ["implementations (threads):"]
    for i in doc["impls"]:
        if i.get("unavailable"):
            continue
        lines.append(f"  {i['name']:<14} ({i['threads']}) {i['note']}")
    return "\n".join(lines)


def first_call_table(doc: dict) -> str:
    """First call of each (impl, pass) in this process: JIT compile / cache load / tracing."""
    lines = ["first call in this process (compile, cache load or tf.function tracing included):"]
    for r in doc.get("first_calls", []):
        lines.append(
            f"  {r['impl']:<14} {PASS_SHORT.get(r['pass'], r['pass']):<11} "
            f"{fmt_ms(r['ms']):>10} ms  (on {r['shape']})"
        )
    jit = doc.get("jit")
    if jit:
        lines.append(
            "Numba JIT in a fresh process (first call, ms): cold = empty "
            "NUMBA_CACHE_DIR, warm = the real cache"
        )
        for name, cold in (jit.get("cold") or {}).get("calls", {}).items():
            warm = (jit.get("warm") or {}).get("calls", {}).get(name)
            lines.append(f"  {name:<32} cold {fmt_ms(cold):>9}   warm {fmt_ms(warm):>9}")
        for k in ("cold", "warm"):
            j = jit.get(k) or {}
            if j.get("process_wall_s") is not None:
                lines.append(
                    f"  {k}: whole process {j['process_wall_s']:.1f} s, first calls together "
                    f"{sum(j.get('calls', {}).values()) / 1e3:.1f} s (kernels shared by several "
                    "passes compile once, on the first pass that calls them)"
                )
        for k in ("cold", "warm"):
            if jit.get(k) and jit[k].get("error"):
                lines.append(f"  {k}: error {jit[k]['error'][:100]}")
    return "\n".join(lines)


def scaling_table(scaling: dict) -> str:
    lines = ["scaling (seed layer geometry; median ms; best minicnn kernel per pass vs tf):"]
    for sweep in ("batch", "image"):
        rows = scaling.get(sweep, [])
        if not rows:
            continue
        lines.append(f"  vs {sweep}:")
        for r in rows:
            t = r.get("timing")
            lines.append(
                f"    {r['shape']:<18} {PASS_SHORT.get(r['pass'], r['pass']):<11} "
                f"{r['impl']:<14} {fmt_ms(t['median_ms'] if t else None):>10} ms "
                f"{(r.get('gflops') or 0):8.2f} GFLOP/s  {r['status']}"
            )
    return "\n".join(lines)
