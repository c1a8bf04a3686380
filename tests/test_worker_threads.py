"""numba_threads.run_chunks: every chunk runs once, errors come back to the caller, several
callers may launch at once, and the workers stop spinning soon after the last launch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from minicnn.config import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="needs Numba")

if numba_available():
    from numba import njit

    from minicnn.kernels import numba_threads
    from minicnn.kernels.numba_threads import run_chunks

    @njit(nogil=True)
    def _mark(out, t, n0, n1):
        """out[n] = t + 1 for this chunk's n: which chunk wrote each element."""
        for n in range(n0, n1):
            out[n] = t + 1


def _owners(n, chunks):
    """What _mark leaves: chunk t's elements [t*n//chunks, (t+1)*n//chunks) hold t + 1."""
    bounds = [t * n // chunks for t in range(chunks + 1)]
    return np.repeat(np.arange(1, chunks + 1), np.diff(bounds))


@pytest.mark.parametrize("chunks", [1, 2, 3, 5])
@pytest.mark.parametrize("polls", [0, None])  # no spinning at all, and the default
def test_every_chunk_runs_once_on_its_own_range(chunks, polls, monkeypatch):
    if polls is not None:
        monkeypatch.setattr(numba_threads, "SPIN_POLLS", polls)
    for n in (7, 128):
        out = np.zeros(n, np.int64)
        run_chunks(_mark, n, out, chunks=chunks)
        np.testing.assert_array_equal(out, _owners(n, chunks))


def test_an_error_in_a_workers_chunk_reaches_the_caller_and_the_pool_goes_on():
    def fails_in_chunk_1(out, t, n0, n1):
        if t == 1:
            raise ArithmeticError("chunk 1 failed")
        out[n0:n1] = t + 1

    out = np.zeros(10, np.int64)
    with pytest.raises(ArithmeticError, match="chunk 1 failed"):
        run_chunks(fails_in_chunk_1, 10, out, chunks=2)
    np.testing.assert_array_equal(out[:5], 1)  # chunk 0 still ran to its end
    out[:] = 0
    run_chunks(_mark, 10, out, chunks=2)  # the worker survived its chunk's error
    np.testing.assert_array_equal(out, _owners(10, 2))


def test_several_threads_launching_at_once_each_get_their_own_result():
    errors, start = [], threading.Barrier(4)

    def caller(k):
        try:
            start.wait()
            for _ in range(200):
                out = np.zeros(50 + k, np.int64)
                run_chunks(_mark, out.size, out, chunks=3)
                np.testing.assert_array_equal(out, _owners(out.size, 3))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)


def _cpu_seconds(native_id):
    """User + system CPU time of one thread of this process, from /proc (Linux)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_workers_stop_spinning_soon_after_the_last_launch():
    out = np.zeros(8, np.int64)
    run_chunks(_mark, 8, out, chunks=2)
    worker = numba_threads._pool(1)[0].thread
    time.sleep(0.3)  # SPIN_POLLS is a few milliseconds of polling
    before = _cpu_seconds(worker.native_id)
    time.sleep(0.5)
    # a worker still spinning would have used ~0.5 s of CPU; a blocked one none (ticks: 0.01 s)
    assert _cpu_seconds(worker.native_id) - before < 0.05


@pytest.mark.parametrize("value, polls",
                         [("0", 0), ("5000", 5000), ("many", 200_000), ("", 200_000)])
def test_the_environment_sets_how_long_threads_poll(value, polls):
    # read at import, so in a fresh process; a launch must still work with no polling at all
    script = ("import numpy as np; from minicnn.kernels import numba_threads as t; "
              "print(t.SPIN_POLLS); out = np.zeros(6); "
              "t.run_chunks(lambda o, k, n0, n1: o.__setitem__(slice(n0, n1), k + 1), 6, out, "
              "chunks=2); print(out.tolist())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "MINICNN_SPIN_POLLS": value}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == [str(polls), "[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]"]


def test_a_worker_counts_its_last_job_then_waits_a_bounded_time():
    # _count_then_wait counts once, then polls at most `polls` times for the post and as many
    # again for the hand-over delay, even when the delay would be huge
    done, posted = np.zeros(1, np.int64), np.zeros(1, np.int64)
    assert not numba_threads._count_then_wait(done, posted, 1, 1000, 2**62)  # nothing posted
    assert done[0] == 1
    posted[0] = 1
    t0 = time.perf_counter()
    assert numba_threads._count_then_wait(done, posted, 1, 1000, 2**62)
    assert done[0] == 2
    assert time.perf_counter() - t0 < 0.5  # 1,000 pause hints, not 2**62 ticks


def test_the_hand_over_delay_is_timed_on_the_cpus_counter():
    # the time stamp counter runs at GHz rates on every x86 CPU Numba targets (0 elsewhere:
    # then the delay is 0 and a worker takes the GIL as soon as it sees its job)
    per_us = numba_threads._ticks_per_us()
    if numba_threads._X86:
        assert 100 < per_us < 10_000
    worker = numba_threads._pool(1)[0]
    assert worker.delay_ticks == pytest.approx(numba_threads.HANDOVER_US * per_us, rel=0.5)

