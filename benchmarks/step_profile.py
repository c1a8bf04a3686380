"""Where one training step's time goes, unit by unit (minicnn only).

    python -m benchmarks.step_profile [--model seed|deep] [--steps N] [--batch N] [--backend B]

Trains the model on random images (batch 128 by default) inside the model's compute scope,
exactly as ``fit`` runs a step, and times each execution unit's forward and backward (a fused
Conv2D + pool + dropout unit counts as one), the loss and the optimizer step, by wrapping
them; then prints the mean per step over the last N steps and what the wrappers did not see
(Python glue: weight penalties, parameter lists). Timings are wall clock on a shared machine:
read them as proportions, side by side in one run.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def profile(model_name: str, steps: int, batch: int, backend: str) -> tuple[dict, float]:
    """({label: seconds per step}, seconds per whole step) over `steps` steps after 10 warm-up
    steps on random (batch, 28, 28, 1) float32 images and one-hot labels."""
    import minicnn
    from minicnn import architectures
    from minicnn.kernels.dispatch import ops

    minicnn.set_backend(backend)
    minicnn.set_random_seed(0)
    model = architectures.build(model_name)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    model.train_on_batch(x, y)  # builds, compiles the kernels, creates the optimizer's slots

    spent = collections.defaultdict(float)

    def timed(obj, method, label):
        inner = getattr(obj, method)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            result = inner(*args, **kwargs)
            spent[label] += time.perf_counter() - t0
            return result

        setattr(obj, method, wrapper)  # an instance attribute: the class stays untouched

    units = model._units()
    last = len(units) - 1
    for i, unit in enumerate(units):
        name = repr(unit) if not hasattr(unit, "name") else f"{type(unit).__name__} {unit.name}"
        timed(unit, "forward", f"forward  {name}")
        # the model calls the last layer's backward_linear (the fused softmax loss)
        timed(unit, "backward_linear" if i == last else "backward", f"backward {name}")
    timed(model, "loss_and_gradient", "loss")
    timed(model.optimizer, "update", f"optimizer ({type(model.optimizer).__name__})")

    with ops().compute_scope():
        for _ in range(10):
            model._train_step(x, y)
        spent.clear()
        t0 = time.perf_counter()
        for _ in range(steps):
            model._train_step(x, y)
        total = (time.perf_counter() - t0) / steps
    return {label: s / steps for label, s in spent.items()}, total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_profile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("seed", "deep"), default="seed")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default 300 for seed, 30 for deep)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--backend", choices=("numba", "numpy", "auto"), default="auto")
    args = parser.parse_args(argv)
    steps = args.steps or (300 if args.model == "seed" else 30)
    if steps < 1 or args.batch < 1:
        parser.error("--steps and --batch must be positive")
    parts, total = profile(args.model, steps, args.batch, args.backend)
    import minicnn

    print(f"{args.model} model, batch {args.batch}, backend {minicnn.config.get_backend()}, "
          f"mean of {steps} steps")
    parts["(the rest: Python glue)"] = total - sum(parts.values())
    width = max(map(len, parts))
    for label, s in parts.items():
        print(f"  {label:<{width}}  {s * 1e3:8.3f} ms  {100 * s / total:5.1f}%")
    print(f"  {'whole step':<{width}}  {total * 1e3:8.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
