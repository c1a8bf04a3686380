"""The threads the Numba kernels run on: ``run_chunks`` and its workers.

Every kernel is a serial function over a range of samples [n0, n1) (or of channels, or
columns). ``run_chunks`` splits a batch into one contiguous chunk per thread
(numba_config.chunks_for), posts chunks 1 .. T-1 to the worker threads, runs chunk 0 on the
calling thread, and waits for the workers. Chunks write disjoint memory (each kernel says why);
partial sums (weight gradients) go to one buffer per chunk, summed afterwards in a fixed order,
so results depend on the chunk count, never on timing.

Why the workers spin. A launch is only as fast as its slowest chunk, and a worker that sleeps
between launches starts late: the OS (and, on a virtual machine, the hypervisor) takes tens of
microseconds to wake a sleeping thread. The seed model's kernels take a few hundred
microseconds a chunk, and an empty launch took ~75 us with sleeping workers. So a worker,
after its chunk, polls its job counter in compiled code (``_wait_until``, with the CPU's pause
hint between polls) for up to SPIN_POLLS polls (a few milliseconds) before it blocks, and the
caller polls the job's done counter the same way instead of sleeping on it. Training launches
a kernel every few hundred microseconds, so neither side sleeps in a training loop; after the
last launch a worker blocks within milliseconds. SPIN_POLLS = 0 (MINICNN_SPIN_POLLS=0 in the
environment) restores sleeping at once.
What is left of a launch (~45-60 us empty) is mostly Python's GIL: a worker must take it to
start its chunk while the caller still holds it, and waiting for the GIL sleeps. (An earlier
trial of spinning workers measured no gain in a training step; this version was measured
against the sleeping pool in alternated runs: the README's Speed section.)

Tried and not taken: a Numba prange twin per kernel (OpenMP's threads spin too, ~2 us a
launch, but each twin compiled for ~2 s on a cold cache, and GNU OpenMP aborts a forked child).
Handing out small pieces of the batch from an atomic counter balances a late start (measured
on a synthetic kernel with sleeping workers: 270 -> 240 us a launch); with awake workers a
chunk starts ~20 us late, and pieces would need per-piece weight-gradient buffers: not done.

Thread safety: several Python threads may launch at once (inference is thread-safe): each job
has its own done counter, and a worker runs the jobs posted to it in order. A child made by
fork() has no worker threads: the pool is dropped in the child and made again when needed.
"""

from __future__ import annotations

import os
import platform
import queue
import threading
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from minicnn.kernels.numba_config import JIT, chunks_for


def _spin_polls() -> int:
    """MINICNN_SPIN_POLLS if set to a whole number >= 0, else 200,000 (a few ms: a pause hint
    takes ~40-140 cycles). 0 suits a machine shared with other busy processes, as OpenMP's
    OMP_WAIT_POLICY=passive does: a polling worker holds its core between launches."""
    value = os.environ.get("MINICNN_SPIN_POLLS", "").strip()
    return int(value) if value.isdigit() else 200_000


SPIN_POLLS = _spin_polls()  # polls before sleeping, for the workers and the caller alike
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


# --- compiled atomics: what a spin needs and Numba does not offer ----------------------------
def _element_pointer(context, builder, array_type, array, index):
    struct = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, struct, [index])


@intrinsic
def _load_acquire(typingctx, counters, i):
    """counters[i], read atomically: the poll sees the other thread's increment, not a value
    LLVM hoisted out of the loop."""

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], *args)
        return builder.load_atomic(pointer, "acquire", 8)

    return types.int64(counters, i), codegen


@intrinsic
def _fetch_add(typingctx, counters, i):
    """counters[i] += 1, atomically (several threads may count at once)."""

    def codegen(context, builder, sig, args):
        pointer = _element_pointer(context, builder, sig.args[0], *args)
        return builder.atomic_rmw("add", pointer, ir.Constant(ir.IntType(64), 1), "acq_rel")

    return types.int64(counters, i), codegen


@intrinsic
def _pause(typingctx):
    """The CPU's spin-wait hint (x86 PAUSE): a poll loop then leaves the core's other work
    alone and exits without a memory-order stall. A no-op on other CPUs."""

    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(**JIT)
def _wait_until(counters, i, target, polls):
    """Poll until counters[i] >= target, polls + 1 times at most: True if it got there."""
    for _ in range(polls):
        if _load_acquire(counters, i) >= target:
            return True
        _pause()
    return _load_acquire(counters, i) >= target


@njit(**JIT)
def _count(counters, i):
    """counters[i] += 1 (atomic), from compiled code: no Python object is touched."""
    _fetch_add(counters, i)


if numba.config.DISABLE_JIT:  # intrinsics need the compiler: plain Python, which never spins
    _count_lock = threading.Lock()

    def _wait_until(counters, i, target, polls):  # noqa: F811
        return counters[i] >= target

    def _count(counters, i):  # noqa: F811
        with _count_lock:
            counters[i] += 1


# --- the workers ---------------------------------------------------------------------------
class _Worker:
    """One thread that runs the chunks posted to it, in order. ``posted`` counts the jobs
    posted (the worker polls it before sleeping on the queue); each job's ``done`` counter is
    counted once when its chunk has run, error or not (the error goes to the job's list)."""

    def __init__(self, index: int):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.posted = np.zeros(1, np.int64)
        self.thread = threading.Thread(target=self._loop, name=f"minicnn-{index}", daemon=True)
        self.thread.start()

    def post(self, kernel, args, done, errors) -> None:
        self.jobs.put((kernel, args, done, errors))
        _count(self.posted, 0)

    def _loop(self) -> None:
        taken = 0
        while True:
            _wait_until(self.posted, 0, taken + 1, SPIN_POLLS)  # then block, if still nothing
            kernel, args, done, errors = self.jobs.get()
            taken += 1
            try:
                kernel(*args)
            except BaseException as e:  # re-raised by the caller of run_chunks
                errors.append(e)
            _count(done, 0)


_workers: list[_Worker] = []
_workers_lock = threading.Lock()


def _pool(workers: int) -> list[_Worker]:
    with _workers_lock:
        while len(_workers) < workers:
            _workers.append(_Worker(len(_workers) + 1))
        return _workers


def run_chunks(kernel, n: int, *args, chunks: int | None = None) -> None:
    """kernel(*args, t, n0, n1) for chunk t = 0 .. T-1 of range(n), in parallel.

    T = chunks or chunks_for(n); chunk t covers [t*n//T, (t+1)*n//T). Chunk 0 runs on the
    calling thread, chunk t on worker t; returns when all are done (re-raising the first
    error). The kernel must be nogil (numba_config.JIT) and write only its chunk's part.
    """
    T = chunks if chunks is not None else chunks_for(n)
    if T <= 1:
        kernel(*args, 0, 0, n)
        return
    workers = _pool(T - 1)
    done = np.zeros(1, np.int64)
    errors: list[BaseException] = []
    for t in range(1, T):
        workers[t - 1].post(kernel, (*args, t, t * n // T, (t + 1) * n // T), done, errors)
    try:
        kernel(*args, 0, 0, n // T)
    finally:
        while not _wait_until(done, 0, T - 1, SPIN_POLLS):
            time.sleep(1e-4)  # a worker descheduled for long: stop spinning, look now and then
    if errors:
        raise errors[0]


def _after_fork_in_child() -> None:
    global _workers_lock
    _workers.clear()  # the parent's worker threads do not exist here: new ones when needed
    _workers_lock = threading.Lock()  # it may have been held by another thread at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)
