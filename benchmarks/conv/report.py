"""The conv benchmark's terminal report and its PNG figures, both from the --json document.

print_report: machine, threads, shapes and implementations legends, the results table (median,
IQR, min, GFLOP/s, % of the GEMM peak, the check), the roofline, first calls and Numba's
compile times, scaling.
plot_results: one panel per shape, grouped bars of GFLOP/s (log scale) per pass and
implementation, the GEMM peak as a dashed line; bars timed on a reduced problem are hatched.
plot_scaling: time vs batch size and vs image size, log-log, with a slope-1 guide.
"""

from __future__ import annotations

import math
import os

from benchmarks.machine import roofline_lines

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
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


# ---- tables -------------------------------------------------------------------------------


def _check_cell(row) -> str:
    if row["status"] in ("ok", "wrong"):
        rel = max(c["max_rel_err"] for c in row["checks"].values() if c is not None)
        return f"{'ok' if row['status'] == 'ok' else 'WRONG'} {rel:.0e}"
    return row["status"].upper() if row["status"] == "error" else row["status"]


def _note_cell(row) -> str:
    if row["status"] in ("error", "unsupported"):
        return row.get("error", "")[:60]
    if row["status"] == "wrong":
        probs = [p for c in row["checks"].values() if c for p in c["problems"]]
        return "not timed: " + "; ".join(probs)[:60]
    if row.get("scaled_from"):
        sf = row["scaled_from"]
        return f"timed at {sf['label']}, x{sf['factor']:.4g}"
    return ""


def results_table(doc: dict) -> str:
    """shape | pass | impl | median ms | IQR ms | min ms | GFLOP/s | % of peak | check | note.

    The minimum is shown beside the median because on a busy machine it is the better estimate
    of what the kernel itself costs; GFLOP/s and % of peak are from the median.
    """
    head = (f"{'shape':<12} {'pass':<11} {'impl':<14} {'median ms':>10} {'IQR ms':>17} "
            f"{'min ms':>9} {'GFLOP/s':>8} {'%peak':>6} {'check':<10} note")
    lines, prev = [head, "-" * len(head)], None
    for row in doc["results"]:
        if prev is not None and (row["shape"], row["pass"]) != prev:
            lines.append("")
        prev = (row["shape"], row["pass"])
        t = row.get("timing")
        iqr = f"{fmt_ms(t['q25_ms'])}-{fmt_ms(t['q75_ms'])}" if t else "-"
        g = f"{row['gflops']:.3g}" if row.get("gflops") is not None else "-"
        pct = f"{row['pct_roofline']:.2g}" if row.get("pct_roofline") is not None else "-"
        lines.append(
            f"{row['shape']:<12} {PASS_SHORT.get(row['pass'], row['pass']):<11} "
            f"{row['impl']:<14} {fmt_ms(t['median_ms'] if t else None):>10} {iqr:>17} "
            f"{fmt_ms(t['min_ms'] if t else None):>9} {g:>8} {pct:>6} "
            f"{_check_cell(row):<10} {_note_cell(row)}"
        )
    for u in doc.get("unavailable", []):
        lines.append(f"skipped {u['impl']}: {u['reason']}")
    roof = doc.get("roofline")
    if roof:
        lines += ["", *roofline_lines(roof)]
        best = roof.get("best") or {}
        if best.get("end_gflops"):
            lines.append(f"  best kernel at the start {best['start_gflops']:.1f} and end "
                         f"{best['end_gflops']:.1f} GFLOP/s of the run: the better one is used")
        if (roof.get("one_thread") or {}).get("gflops"):
            lines.append(f"  one thread, best kernel: {roof['one_thread']['gflops']:.1f} GFLOP/s")
        nom = roof.get("nominal_peak") or {}
        if nom.get("gflops"):
            lines.append(f"  nominal {nom['gflops']:.0f} GFLOP/s ({nom['assumption']}, "
                         f"{nom['mhz']:.0f} MHz; a VM may report the base clock while the core "
                         "boosts)")
        if "gflops" in roof:
            lines.append("  a row above 100% beats this GEMM as measured (on a busy machine the "
                         "GEMM loses more than a short kernel does), not the hardware")
    return "\n".join(lines)


def first_call_table(doc: dict) -> str:
    """First call of each (impl, pass) in this process, then Numba's cold and warm compile."""
    lines = ["first call in this process (compile, cache load or tracing included):"]
    for r in doc.get("first_calls", []):
        lines.append(f"  {r['impl']:<14} {PASS_SHORT.get(r['pass'], r['pass']):<11} "
                     f"{fmt_ms(r['ms']):>10} ms  (on {r['shape']})")
    jit = doc.get("jit")
    if jit:
        lines.append("Numba JIT in a fresh process (first call, ms): cold = empty "
                     "NUMBA_CACHE_DIR, warm = the real cache")
        cold, warm = jit.get("cold") or {}, jit.get("warm") or {}
        for name, ms in cold.get("calls", {}).items():
            lines.append(f"  {name:<32} cold {fmt_ms(ms):>9}   "
                         f"warm {fmt_ms(warm.get('calls', {}).get(name)):>9}")
        for mode, j in (("cold", cold), ("warm", warm)):
            if j.get("process_wall_s") is not None:
                lines.append(f"  {mode}: whole process {j['process_wall_s']:.1f} s, first calls "
                             f"together {sum(j.get('calls', {}).values()) / 1e3:.1f} s (kernels "
                             "shared by several passes compile once, on the first that calls them)")
            if j.get("error"):
                lines.append(f"  {mode}: error {j['error'][:100]}")
    return "\n".join(lines)


def scaling_table(scaling: dict) -> str:
    lines = ["scaling (seed layer geometry; median ms; best minicnn kernel per pass vs anchors):"]
    for sweep in ("batch", "image"):
        if scaling.get(sweep):
            lines.append(f"  vs {sweep}:")
        for r in scaling.get(sweep, []):
            t = r.get("timing")
            lines.append(f"    {r['shape']:<18} {PASS_SHORT.get(r['pass'], r['pass']):<11} "
                         f"{r['impl']:<14} {fmt_ms(t['median_ms'] if t else None):>10} ms "
                         f"{(r.get('gflops') or 0):8.2f} GFLOP/s  {r['status']}")
    return "\n".join(lines)


def print_report(doc: dict, out=print) -> None:
    env, threads = doc["environment"], doc["config"]["threads"]
    out("")
    out(f"machine: {env['machine']}")
    out(f"load average at start {env['loadavg_start'][0]:.2f}, end {env['loadavg_end'][0]:.2f}")
    nb, tf = env["numba"], env["tensorflow"]
    counts = ", ".join(f"{k} {v}" for k, v in env["threads"].items() if k != "requested")
    out(f"threads: requested {threads}; Numba kernels on the {nb.get('threading_layer')}"
        + (f"; TensorFlow oneDNN {tf.get('onednn')}" if tf.get("imported") else "")
        + f"; per implementation: {counts}")
    if env.get("tf_call_overhead_us") is not None:
        out(f"TensorFlow: a trivial tf.function call costs {env['tf_call_overhead_us']:.0f} us "
            "(included in every tf time)")
    out("shapes (GFLOP/s counts 2*N*Ho*Wo*F*KH*KW*C per pass, the dense conv work):")
    for s in doc["shapes"]:
        out(f"  {s['name']:<12} {s['label']:<32} {s['flops'] / 1e6:9.1f} MFLOP  {s['note']}")
    out("implementations (threads):")
    for i in doc["impls"]:
        if not i.get("unavailable"):
            out(f"  {i['name']:<14} ({i['threads']}) {i['note']}")
    out("")
    out(results_table(doc))
    out("")
    out(first_call_table(doc))
    if doc.get("scaling"):
        out("")
        out(scaling_table(doc["scaling"]))
    out("")
    out("Timing is noisy on a shared machine: compare rows measured side by side in one run.")


# ---- figures ------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    from minicnn.atomic import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    _pyplot().close(fig)


def _colors(names):
    cmap = _pyplot().get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def plot_results(doc: dict, path: str) -> None:
    plt = _pyplot()
    rows = [r for r in doc["results"] if r["status"] == "ok"]
    shapes = [s["name"] for s in doc["shapes"] if any(r["shape"] == s["name"] for r in rows)]
    if not shapes:
        return
    impls = [i["name"] for i in doc["impls"] if any(r["impl"] == i["name"] for r in rows)]
    colors = _colors(impls)
    ncol = min(2, len(shapes))
    nrow = math.ceil(len(shapes) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.5 * ncol, 3.6 * nrow), squeeze=False)
    roof = (doc.get("roofline") or {}).get("gflops")
    labels = {s["name"]: s["label"] for s in doc["shapes"]}
    for ax, shape in zip(axes.flat, shapes):
        srows = [r for r in rows if r["shape"] == shape]
        passes = [p for p in doc["config"]["passes"] if any(r["pass"] == p for r in srows)]
        for j, pass_name in enumerate(passes):
            # only the implementations that have this pass, side by side, centred on the tick
            prow = [r for n in impls for r in srows if r["impl"] == n and r["pass"] == pass_name]
            width = 0.8 / max(1, len(prow))
            for k, r in enumerate(prow):
                ax.bar(j - 0.4 + (k + 0.5) * width, r["gflops"], width, color=colors[r["impl"]],
                       hatch="//" if r["scaled_from"] else None, edgecolor="white",
                       linewidth=0.3)
        if roof:
            ax.axhline(roof, color="black", linestyle="--", linewidth=1)
            ax.text(len(passes) - 0.5, roof, f" GEMM peak {roof:.0f}", va="bottom", ha="right",
                    fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(passes)))
        ax.set_xticklabels([PASS_SHORT.get(p, p) for p in passes], fontsize=8)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{shape}: {labels.get(shape, '')}", fontsize=9)
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in list(axes.flat)[len(shapes):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n]) for n in impls]
    fig.legend(handles, impls, loc="upper center", ncol=min(len(impls), 8), fontsize=8,
               frameon=False)
    fig.suptitle(f"conv kernels, {doc['config']['threads']} threads, "
                 f"{doc['environment']['cpu']['model']} (hatched: timed on a reduced problem, "
                 "scaled)", fontsize=9, y=0.005, va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    _save(fig, path)


def plot_scaling(doc: dict, path: str) -> None:
    plt = _pyplot()
    sc = doc.get("scaling") or {}
    if not (sc.get("batch") or sc.get("image")):
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    styles = {"forward": "-", "backward_input": "--", "backward_weights": ":"}
    for ax, sweep, xkey, xlabel in (
        (axes[0], "batch", "N", "batch size N (28x28)"),
        (axes[1], "image", "H", f"image size H = W (N = {sc.get('image_batch')})"),
    ):
        rows = [r for r in sc.get(sweep, []) if r["status"] == "ok"]
        colors = _colors(sorted({r["impl"] for r in rows}))
        for name in colors:
            for pass_name, ls in styles.items():
                pts = sorted((r[xkey], r["median_ms"]) for r in rows
                             if r["impl"] == name and r["pass"] == pass_name)
                if pts:
                    ax.plot(*zip(*pts), ls, marker="o", markersize=3, color=colors[name],
                            label=f"{name} {PASS_SHORT[pass_name]}")
        if rows:
            # cost proportional to work, through the largest point of the fastest series
            top = max(r["flops"] for r in rows)
            fastest = min((r for r in rows if r["flops"] == top), key=lambda r: r["median_ms"])
            work = {r[xkey]: r["flops"] for r in rows}
            xs = sorted(work)
            ax.plot(xs, [fastest["median_ms"] * work[x] / top for x in xs], color="grey",
                    alpha=0.5, linewidth=4, label="time proportional to work")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median ms per call")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("cost vs work, seed layer geometry (3x3, 1->32, valid); minicnn kernels: "
                 + ", ".join(f"{PASS_SHORT[p]}={n}" for p, n in sc.get("best", {}).items()),
                 fontsize=9)
    fig.tight_layout()
    _save(fig, path)
