"""The benchmark's measure of a contender's memory is the contender's own, not the benchmark's."""

import os
import sys

import pytest

from bench.cluster import combined
from bench.run import REPO, run_contender


def test_a_contenders_peak_rss_leaves_out_what_the_benchmark_held_when_it_forked():
    held = bytearray(400 * 1024 * 1024)  # the benchmark's own memory, touched: resident
    held[::4096] = b"x" * len(held[::4096])
    result = run_contender([sys.executable, "-c", "import bench.flows"])  # a contender that does nothing
    assert result["peak_rss_mb"] < 200, result  # wait4's figure for it was the 400 MB above and more
    assert 0 < result["peak_anonymous_mb"] < result["peak_rss_mb"], result
    assert result["seconds"] >= 0
    del held


def test_a_cluster_is_measured_from_its_first_start_to_its_last_end_with_its_processes_peaks_summed():
    outputs = ["READY 100.0\nBENCH 5.0\nPEAK_RSS_MB 200.0\n", "noise\nREADY 101.5\nBENCH 4.0\nPEAK_RSS_MB 150.5\n"]
    assert combined(outputs) == {"BENCH": 5.5, "PEAK_RSS_MB": 350.5}


def test_a_cluster_process_that_printed_no_figures_fails_the_measure():
    with pytest.raises(SystemExit, match="process 1 printed no READY"):
        combined(["READY 1\nBENCH 1\nPEAK_RSS_MB 1\n", "BENCH 1\n"])


def test_a_two_process_cluster_runs_as_one_contender(tmp_path):
    (tmp_path / "tiny_cluster_flow.py").write_text(
        "import time\n"
        "import bench.flows\n"  # its exit report: BENCH and PEAK_RSS_MB
        "import bytewax.operators as op\n"
        "from bytewax.dataflow import Dataflow\n"
        "from bytewax.testing import TestingSink, TestingSource\n"
        "print(f'READY {time.time()}', flush=True)\n"
        "flow = Dataflow('tiny')\n"
        "op.output('out', op.input('in', flow, TestingSource(range(1000))), TestingSink([]))\n")
    result = run_contender([sys.executable, "-m", "bench.cluster", "2", "tiny_cluster_flow"],
                           env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    single = run_contender([sys.executable, "-m", "bytewax.run", "tiny_cluster_flow"],
                           env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    assert result["peak_rss_mb"] > 1.5 * single["peak_rss_mb"], (result, single)  # two interpreters' peaks
    assert 0 <= result["seconds"] < 60
    assert result["cpu_s"] > single["cpu_s"]  # both processes' CPU, counted through the launcher


def test_a_contender_that_prints_no_peak_is_measured_by_its_process_trees_high_water_marks():
    held = bytearray(400 * 1024 * 1024)  # the benchmark's own memory: not the contender's
    held[::4096] = b"x" * len(held[::4096])
    grandchild = ("b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(0.5)")
    launcher = (f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True); "
                "print('BENCH 1.0')")
    result = run_contender([sys.executable, "-c", launcher])
    # the grandchild's 300 MB and two interpreters, without the 400 MB the benchmark held at the fork
    assert 300 < result["peak_rss_mb"] < 400, result
    assert 300 < result["peak_anonymous_mb"] < result["peak_rss_mb"], result  # the 300 MB are anonymous; the libraries' pages are not
    del held
