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

Why nobody waits for the GIL. Python code needs the GIL, the kernels do not (nogil): both
threads hold it to start a chunk (the dispatcher reads the arguments), and a thread that asks
for it while the other holds it sleeps and is woken late, as above. `python -m
benchmarks.launch` reads the CPU's time stamp counter around a two-chunk launch; before the
changes below, with ~50 us chunks: the caller's chunk started 13 us after the call, the
worker's 25 us after the caller's, and the call returned 27 us after the worker's chunk ended
(115 us in all). So the hand-overs are placed where the GIL is free:
* the caller posts a job with one NumPy add under the GIL (not a compiled call, which would
  let go of the GIL in the middle of posting);
* the worker, once it sees the post, polls for HANDOVER_US more microseconds, the time the
  caller takes to enter its own chunk (its kernel lets go of the GIL), and only then takes it;
* the worker counts its chunk done in the same compiled call that then polls for the next
  job (``_count_then_wait``), so the caller, polling nogil, sees the count while the GIL is
  free and takes it straight back.
The same launch now: 2, 11 and 1.5 us (65 us in all; an empty launch 45 -> 15 us). If the
caller is slower than HANDOVER_US, the worker asks for the GIL early and sleeps as before: the
results are the same either way, only the timing moves.

Tried and not taken: a Numba prange twin per kernel (OpenMP's threads spin too, ~2 us a
launch, but each twin compiled for ~2 s on a cold cache, and GNU OpenMP aborts a forked child).
Handing out small pieces of the batch from an atomic counter balances a late start (measured
on a synthetic kernel with sleeping workers: 270 -> 240 us a launch); with awake workers a
chunk starts ~11 us late, and pieces would need per-piece weight-gradient buffers: not done.

Thread safety: several Python threads may launch at once (inference is thread-safe): each job
has its own done counter, and a worker runs the jobs posted to it in order. A child made by
fork() has no worker threads: the pool is dropped in the child and made again when needed.
"""

from __future__ import annotations

import contextlib
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
HANDOVER_US = 10.0  # how long a worker lets the caller enter its chunk before taking the GIL
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


@intrinsic
def _ticks(typingctx):
    """The x86 time stamp counter (rdtsc). 0 on other CPUs: AArch64's cycle counter may not
    be readable from user space (it would fault), so there the hand-over delay is 0."""

    def codegen(context, builder, sig, args):
        if not _X86:
            return ir.Constant(ir.IntType(64), 0)
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@njit(**JIT)
def _wait_until(counters, i, target, polls):
    """Poll until counters[i] >= target, polls + 1 times at most: True if it got there."""
    for _ in range(polls):
        if _load_acquire(counters, i) >= target:
            return True
        _pause()
    return _load_acquire(counters, i) >= target


@njit(**JIT)
def _count_then_wait(done, posted, target, polls, delay_ticks):
    """done[0] += 1 (the last job's chunk has run); then _wait_until(posted, 0, target, polls)
    and, if the job came, delay_ticks more of the time stamp counter (the caller entering its
    own chunk), at most polls polls. In one call, so the GIL stays free from the count to the
    next job: True if the job came."""
    _fetch_add(done, 0)
    if not _wait_until(posted, 0, target, polls):
        return False
    start = _ticks()
    for _ in range(polls):
        if _ticks() - start >= delay_ticks:
            break
        _pause()
    return True


@njit(**JIT)
def _ticks_now():
    return _ticks()


def _ticks_per_us() -> float:
    """Time stamp counter ticks per microsecond, timed against perf_counter over ~1 ms (0 if
    the counter does not advance)."""
    _ticks_now()  # compiled (or loaded) first: not inside the timing
    c0, t0 = _ticks_now(), time.perf_counter()
    while time.perf_counter() - t0 < 1e-3:
        pass
    ticks, seconds = _ticks_now() - c0, time.perf_counter() - t0
    return max(ticks, 0) / (seconds * 1e6)


if numba.config.DISABLE_JIT:  # intrinsics need the compiler: plain Python, which never spins
    _count_lock = threading.Lock()

    def _wait_until(counters, i, target, polls):  # noqa: F811
        return counters[i] >= target

    def _count_then_wait(done, posted, target, polls, delay_ticks):  # noqa: F811
        with _count_lock:
            done[0] += 1
        return posted[0] >= target

    def _ticks_per_us() -> float:  # noqa: F811
        return 0.0


# --- the workers ---------------------------------------------------------------------------
class _Worker:
    """One thread that runs the chunks posted to it, in order. ``posted`` counts the jobs
    posted (the worker polls it before sleeping on the queue); each job's ``done`` counter is
    counted once when its chunk has run, error or not (the error goes to the job's list)."""

    def __init__(self, index: int, delay_ticks: int):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.posted = np.zeros(1, np.int64)
        self.delay_ticks = delay_ticks
        self.thread = threading.Thread(target=self._loop, name=f"minicnn-{index}", daemon=True)
        self.thread.start()

    def post(self, kernel, args, done, errors) -> None:
        self.jobs.put((kernel, args, done, errors))  # the queue's lock orders this before...
        # ...the count: one ufunc call, one step under the GIL for threads posting at once
        # (``posted[0] += 1`` is a read, an add and a write, kept together only by CPython's
        # present bytecode); not a compiled call (see the docstring)
        np.add(self.posted, 1, out=self.posted)

    def _loop(self) -> None:
        taken = 0
        done = np.zeros(1, np.int64)  # before the first job: a counter nobody reads
        while True:
            # count the last job done, poll for the next, then block if still nothing
            _count_then_wait(done, self.posted, taken + 1, SPIN_POLLS, self.delay_ticks)
            kernel, args, done, errors = self.jobs.get()
            taken += 1
            try:
                kernel(*args)
            except BaseException as e:  # re-raised by the caller of run_chunks
                errors.append(e)


_workers: list[_Worker] = []
_workers_lock = threading.Lock()


def _pool(workers: int) -> list[_Worker]:
    with _workers_lock:
        if len(_workers) < workers:
            delay = int(HANDOVER_US * _ticks_per_us())  # bounded by SPIN_POLLS polls too
            while len(_workers) < workers:
                _workers.append(_Worker(len(_workers) + 1, delay))
        return _workers


_dry = False  # inside dry_launches(): run_chunks zeroes its arrays instead of running


@contextlib.contextmanager
def dry_launches():
    """Inside, run_chunks runs (and so compiles) no kernel: it zeroes the writable arrays it
    was given instead, so that what reads them next sees finite numbers of the right shapes and
    dtypes. For minicnn.coldstart's helper process, which compiles a model's backward without
    its forward; process-wide, not for a process that computes anything it keeps."""
    global _dry
    outer, _dry = _dry, True
    try:
        yield
    finally:
        _dry = outer


def run_chunks(kernel, n: int, *args, chunks: int | None = None) -> None:
    """kernel(*args, t, n0, n1) for chunk t = 0 .. T-1 of range(n), in parallel.

    T = chunks or chunks_for(n); chunk t covers [t*n//T, (t+1)*n//T). Chunk 0 runs on the
    calling thread, chunk t on worker t; returns when all are done (re-raising the first
    error). The kernel must be nogil (numba_config.JIT) and write only its chunk's part.
    """
    if _dry:
        for a in args:
            if isinstance(a, np.ndarray) and a.flags.writeable:
                a.fill(0)
        return
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
