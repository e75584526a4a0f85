"""The benchmark's measure of a contender's memory is the contender's own, not the benchmark's."""

import sys

from bench.run import run_contender


def test_a_contenders_peak_rss_leaves_out_what_the_benchmark_held_when_it_forked():
    held = bytearray(400 * 1024 * 1024)  # the benchmark's own memory, touched: resident
    held[::4096] = b"x" * len(held[::4096])
    result = run_contender([sys.executable, "-c", "import bench.flows"])  # a contender that does nothing
    assert result["peak_rss_mb"] < 200, result  # wait4's figure for it was the 400 MB above and more
    assert result["seconds"] >= 0
    del held
