"""Time a zero-argument callable: warm-up excluded, median and spread of repeats.

The first call is timed on its own (it carries JIT compilation, graph tracing, cache loads and
page faults of fresh buffers) and reported apart from the steady state. Each repeat runs the
callable ``number`` times so that one repeat lasts at least ``target_repeat_s``: calls of a few
microseconds are then not dominated by the timer's own cost.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median of repeats and their spread; first_call_s is separate."""

    median_s: float
    q25_s: float
    q75_s: float
    min_s: float
    max_s: float
    repeats: int
    number: int
    first_call_s: float | None

    def as_ms(self) -> dict:
        """The same numbers in milliseconds, keyed '*_ms', for reports and JSON."""
        d = asdict(self)
        out = {
            k.replace("_s", "_ms"): (None if v is None else v * 1e3)
            for k, v in d.items()
            if k.endswith("_s")
        }
        out.update(repeats=self.repeats, number=self.number)
        return out

    def scaled(self, factor: float) -> Timing:
        """Every time multiplied by factor (a timing taken on less work, scaled up)."""
        return Timing(
            self.median_s * factor,
            self.q25_s * factor,
            self.q75_s * factor,
            self.min_s * factor,
            self.max_s * factor,
            self.repeats,
            self.number,
            None if self.first_call_s is None else self.first_call_s * factor,
        )


def measure(
    fn,
    *,
    min_repeats: int = 5,
    max_repeats: int = 50,
    budget_s: float = 1.0,
    warmup: int = 2,
    target_repeat_s: float = 2e-3,
    first_call_done: float | None = None,
) -> Timing:
    """Time fn() after warm-up; stop after max_repeats or once budget_s is spent.

    Args:
        fn: the work, no arguments; its result is discarded.
        min_repeats: repeats always taken, whatever the budget.
        max_repeats: repeats never exceeded.
        budget_s: wall-clock seconds to spend on repeats once min_repeats are done.
        warmup: calls made (and discarded) before timing, after the first call.
        target_repeat_s: a repeat runs fn enough times to last at least this long.
        first_call_done: the first call's duration if the caller already made it (e.g. the
            correctness check); then fn is not called cold again here.

    Returns:
        A Timing in seconds per call.
    """
    if first_call_done is None:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
    else:
        first = first_call_done
    for _ in range(warmup):
        fn()
    # one more call to size the repeat: enough calls that timer resolution does not matter
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    number = max(1, min(1000, int(np.ceil(target_repeat_s / one))))
    # a call long enough to be its own repeat is a sample already (saves one slow call)
    samples = [one] if number == 1 else []
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one repeat is noise, not the kernel's cost
    try:
        start = time.perf_counter()
        while len(samples) < max_repeats:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t0) / number)
            if len(samples) >= min_repeats and time.perf_counter() - start >= budget_s:
                break
    finally:
        if was_enabled:
            gc.enable()
    s = np.asarray(samples)
    q25, med, q75 = np.percentile(s, [25, 50, 75])
    return Timing(
        float(med),
        float(q25),
        float(q75),
        float(s.min()),
        float(s.max()),
        len(samples),
        number,
        first,
    )
