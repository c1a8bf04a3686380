"""benchmarks.launch: the timeline of a two-chunk launch is in order (no timing asserted)."""

import pytest

from minicnn.config import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="needs Numba")


def test_the_launch_timeline_is_in_the_order_things_happen(capsys):
    from benchmarks.launch import main, timeline
    from minicnn.kernels import numba_threads

    if not numba_threads._X86:
        assert main(["--repeats", "3"]) == 1  # says the counter is missing, does not crash
        return
    row = timeline(loops=20_000, repeats=20)
    assert 0 <= row["caller start"] < row["caller end"] <= row["return"]
    assert row["worker start"] < row["worker end"] <= row["return"]
    assert main(["--repeats", "5", "--work-us", "5"]) == 0
    out = capsys.readouterr().out
    assert "empty chunks" in out and "~5 us chunks" in out and "return" in out
