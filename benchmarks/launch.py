"""How long a kernel launch takes and where the time goes (minicnn's thread pool only).

    python -m benchmarks.launch [--repeats N] [--work-us US]

Launches a two-chunk kernel through numba_threads.run_chunks and reads the CPU's time stamp
counter (x86 only) when the call starts, when each chunk starts and ends, and when the call
returns; prints the medians in microseconds from the call's start, for empty chunks and for
chunks of about --work-us of arithmetic. The gaps are the hand-overs the pool's docstring
describes: the worker's chunk starting after the caller's, the call returning after the last
chunk ends. Wall clock on a shared machine: compare runs side by side.
"""

from __future__ import annotations

import argparse

import numpy as np
from numba import njit

from minicnn.kernels import numba_threads
from minicnn.kernels.numba_threads import _ticks, run_chunks


@njit(nogil=True)
def _stamped(stamps, loops, t, n0, n1):
    """stamps[t] = (start, end) ticks of chunk t around `loops` dependent multiply-adds."""
    stamps[t, 0] = _ticks()
    s = 0.0
    for i in range(loops):
        s = s * 0.999999 + i
    stamps[t, 2] = np.int64(s) & 1  # keeps the loop
    stamps[t, 1] = _ticks()


@njit(nogil=True)
def _now():
    return _ticks()


def timeline(loops: int, repeats: int) -> dict[str, float]:
    """Medians over `repeats` launches, in microseconds after the call: 'caller start',
    'worker start', 'caller end', 'worker end', 'return'."""
    per_us = numba_threads._ticks_per_us()
    stamps = np.zeros((2, 3), np.int64)
    rows = []
    for i in range(repeats + 20):  # 20 warm-up launches
        t0 = _now()
        run_chunks(_stamped, 2, stamps, loops, chunks=2)
        t1 = _now()
        if i >= 20:
            rows.append((stamps[0, 0] - t0, stamps[1, 0] - t0, stamps[0, 1] - t0,
                         stamps[1, 1] - t0, t1 - t0))
    med = np.median(np.array(rows, dtype=np.float64), axis=0) / per_us
    names = ("caller start", "worker start", "caller end", "worker end", "return")
    return dict(zip(names, med.tolist()))


def _loops_for(us: float) -> int:
    """How many of _stamped's loop steps take about `us` microseconds on one thread."""
    stamps = np.zeros((2, 3), np.int64)
    _stamped(stamps, 100_000, 0, 0, 1)
    best = min(_time_one(stamps, 100_000) for _ in range(5))
    return max(1, int(100_000 * us / best))


def _time_one(stamps, loops) -> float:
    _stamped(stamps, loops, 0, 0, 1)
    return (stamps[0, 1] - stamps[0, 0]) / numba_threads._ticks_per_us()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.launch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--work-us", type=float, default=50.0)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.work_us <= 0:
        parser.error("--repeats and --work-us must be positive")
    if not numba_threads._X86 or numba_threads._ticks_per_us() <= 0:
        print("benchmarks.launch reads the x86 time stamp counter: not available here")
        return 1
    print(f"run_chunks, 2 chunks, median of {args.repeats} launches, microseconds after the "
          f"call (HANDOVER_US={numba_threads.HANDOVER_US:g}, SPIN_POLLS="
          f"{numba_threads.SPIN_POLLS})")
    for label, loops in (("empty chunks", 0),
                         (f"~{args.work_us:g} us chunks", _loops_for(args.work_us))):
        row = timeline(loops, args.repeats)
        print(f"  {label:<16} " + "  ".join(f"{k} {v:6.1f}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
