"""PNG figures of the conv benchmark (matplotlib, Agg backend: no display needed).

plot_results: one panel per shape, grouped bars of GFLOP/s (log scale) per pass and
implementation, the GEMM roofline as a dashed line; bars timed on a reduced problem and
scaled are hatched.
plot_scaling: time vs batch size and vs image size, log-log, with a slope-1 guide (cost
proportional to work).
"""

from __future__ import annotations

import math
import os
import tempfile

from benchmarks.conv_report import PASS_SHORT


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    """Write the PNG atomically: a temp file in the same folder, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _colors(names):
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
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
            prow = [
                r for name in impls for r in srows if r["impl"] == name and r["pass"] == pass_name
            ]
            width = 0.8 / max(1, len(prow))
            for k, r in enumerate(prow):
                ax.bar(
                    j - 0.4 + (k + 0.5) * width,
                    r["gflops"],
                    width,
                    color=colors[r["impl"]],
                    hatch="//" if r["scaled_from"] else None,
                    edgecolor="white",
                    linewidth=0.3,
                )
        if roof:
            ax.axhline(roof, color="black", linestyle="--", linewidth=1)
            ax.text(
                len(passes) - 0.5,
                roof,
                f" GEMM peak {roof:.0f}",
                va="bottom",
                ha="right",
                fontsize=7,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(passes)))
        ax.set_xticklabels([PASS_SHORT.get(p, p) for p in passes], fontsize=8)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{shape}: {labels.get(shape, '')}", fontsize=9)
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in list(axes.flat)[len(shapes) :]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n]) for n in impls]
    fig.legend(
        handles, impls, loc="upper center", ncol=min(len(impls), 8), fontsize=8, frameon=False
    )
    env = doc["environment"]
    fig.suptitle(
        f"conv kernels, {doc['config']['threads']} threads, {env['cpu']['model']} "
        f"(hatched: naive/scipy timed on a reduced problem, scaled)",
        fontsize=9,
        y=0.005,
        va="bottom",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    _save(fig, path)
    plt.close(fig)


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
        impls = sorted({r["impl"] for r in rows}, key=lambda n: (n == "tf", n))
        colors = _colors(impls)
        for name in impls:
            for pass_name, ls in styles.items():
                pts = sorted(
                    (r[xkey], r["median_ms"], r["flops"])
                    for r in rows
                    if r["impl"] == name and r["pass"] == pass_name
                )
                if not pts:
                    continue
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    ls,
                    marker="o",
                    markersize=3,
                    color=colors[name],
                    label=f"{name} {PASS_SHORT[pass_name]}",
                )
        if rows:
            # cost proportional to work, through the largest point of the fastest series
            top = max(rows, key=lambda r: r["flops"])
            fastest = min(
                (r for r in rows if r["flops"] == top["flops"]), key=lambda r: r["median_ms"]
            )
            work = {r[xkey]: r["flops"] for r in rows}
            xs = sorted(work)
            ref = [fastest["median_ms"] * work[x] / fastest["flops"] for x in xs]
            ax.plot(
                xs, ref, color="grey", alpha=0.5, linewidth=4, label="time proportional to work"
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median ms per call")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
    best = sc.get("best", {})
    fig.suptitle(
        "cost vs work, seed layer geometry (3x3, 1->32, valid); minicnn kernels: "
        + ", ".join(f"{PASS_SHORT[p]}={n}" for p, n in best.items()),
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
