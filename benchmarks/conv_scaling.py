"""How cost grows with work: time vs batch size and vs image size, best minicnn kernel vs TF.

Both sweeps keep the seed layer's geometry (3x3, 1 -> 32 channels, 'valid'): the batch sweep at
28x28, the image sweep at a fixed batch. Ideal scaling is a straight line of slope 1 on log-log
axes; fixed costs (thread start-up, Python dispatch) bend it flat at the small end.
"""

from __future__ import annotations

import time

from benchmarks.conv_problems import Problem
from benchmarks.conv_run import SWITCH_S, Runner

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
IMAGES = (14, 28, 56, 112)
IMAGE_BATCH = 32
SCALING_PASSES = ("forward", "backward_input", "backward_weights")


def best_minicnn(rows: list[dict], passes, prefer_shape: str = "seed-valid") -> dict[str, str]:
    """For each pass, the fastest correct minicnn implementation timed at full size.

    Judged on prefer_shape when it was run, else on the summed time over the shapes that every
    candidate ran; NumPy when nothing else qualifies.
    """
    best = {}
    for pass_name in passes:
        cands = [
            r
            for r in rows
            if r["pass"] == pass_name
            and r["family"] == "minicnn"
            and r["status"] == "ok"
            and not r["scaled_from"]
        ]
        on_shape = [r for r in cands if r["shape"] == prefer_shape]
        if on_shape:
            best[pass_name] = min(on_shape, key=lambda r: r["median_ms"])["impl"]
            continue
        totals: dict[str, float] = {}
        for r in cands:
            totals[r["impl"]] = totals.get(r["impl"], 0.0) + r["median_ms"]
        best[pass_name] = min(totals, key=totals.get) if totals else "numpy"
    return best


def sweep_problems(batches=BATCHES, images=IMAGES, image_batch=IMAGE_BATCH):
    batch = [Problem(f"seed-N{n}", n, 28, 28, 1, 32) for n in batches]
    image = [Problem(f"seed-{h}px-N{image_batch}", image_batch, h, h, 1, 32) for h in images]
    return batch, image


def run_scaling(
    rows,
    impls,
    runner: Runner,
    passes=SCALING_PASSES,
    batches=BATCHES,
    images=IMAGES,
    image_batch=IMAGE_BATCH,
) -> dict:
    """Rows of the two sweeps (same fields as the main rows), and which kernels were chosen."""
    from benchmarks.conv_problems import make_inputs

    by_name = {i.name: i for i in impls if not i.unavailable}
    best = best_minicnn(rows, passes)
    out = {"best": best, "image_batch": image_batch, "batch": [], "image": []}
    batch_ps, image_ps = sweep_problems(batches, images, image_batch)
    # which passes each implementation runs: its own best passes, and all of them for TF
    plan = {}
    for pass_name in passes:
        for name in (best.get(pass_name), "tf"):
            impl = by_name.get(name)
            if impl is not None and pass_name in impl.passes:
                plan.setdefault(name, []).append(pass_name)
    for sweep, problems in (("batch", batch_ps), ("image", image_ps)):
        for p in problems:
            inputs = make_inputs(p)
            runner.prepare(p, inputs, passes)
            for name, impl_passes in plan.items():
                time.sleep(SWITCH_S)
                for pass_name in impl_passes:
                    r = runner.row(p, pass_name, by_name[name], inputs)
                    r.update(N=p.N, H=p.H, flops=p.flops())
                    out[sweep].append(r)
                    t = r["timing"]
                    runner.log(
                        f"  scaling {p.name:<16} {pass_name:<17} {name:<12} "
                        + (f"{t['median_ms']:10.3f} ms" if t else r["status"])
                    )
            runner.forget()
    return out
