"""`marketstream run` places a process in its cluster and gives it its own recovery partition."""

import sqlite3
import subprocess
import sys

import pytest

from marketstream.settings import load_settings
from pipelines.cli import bytewax_command, cluster_place, init_recovery


def test_a_process_of_a_cluster_is_found_from_bytewax_flags_or_its_environment():
    assert cluster_place(["-i", "1", "-a", "hostA:2101;hostB:2101"]) == (1, 2)
    assert cluster_place(["--process-id", "0", "--addresses", "a:1;b:1;c:1", "-w", "2"]) == (0, 3)
    assert cluster_place([], {"BYTEWAX_PROCESS_ID": "2", "BYTEWAX_ADDRESSES": "a:1;b:1;c:1"}) == (2, 3)
    assert cluster_place(["-w", "4"], {}) is None


def partitions(directory) -> dict[str, tuple]:
    found = {}
    for part in sorted(directory.iterdir()):
        with sqlite3.connect(part) as db:
            found[part.name] = db.execute("SELECT part_index, part_count FROM parts").fetchone()
    return found


def test_each_process_of_a_cluster_holds_its_own_partition_of_the_clusters_set(tmp_path):
    init_recovery(tmp_path / "hostA" / "stock_consume", (0, 2))
    init_recovery(tmp_path / "hostB" / "stock_consume", (1, 2))
    init_recovery(tmp_path / "alone" / "stock_consume", None)
    assert partitions(tmp_path / "hostA" / "stock_consume") == {"part-0.sqlite3": (0, 2)}
    assert partitions(tmp_path / "hostB" / "stock_consume") == {"part-1.sqlite3": (1, 2)}
    assert partitions(tmp_path / "alone" / "stock_consume") == {"part-0.sqlite3": (0, 1)}
    assert sorted(p.name for p in tmp_path.joinpath("hostA").iterdir()) == ["stock_consume"]  # no staging left


def test_a_lost_peer_is_told_in_one_line_naming_the_process_and_other_errors_are_left_alone():
    from pipelines.runtime import PEER_LOST_STATUS, lost_peer_line

    class PanicException(BaseException):  # what pyo3 raises out of Bytewax's cluster_main
        pass

    line = lost_peer_line(PanicException("Send thread panic: Any { .. }"), (0, 2))
    assert line.startswith("cluster: process 0 of 2 lost its connection to another process of the cluster")
    assert f"exiting with status {PEER_LOST_STATUS}" in line and "\n" not in line
    assert lost_peer_line(ValueError("a bug of ours"), (0, 2)) is None


STATELESS_FLOW = '''
import time
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

class Ticks(StatelessSourcePartition):
    def next_batch(self):
        # paced by sleeping, not by `next_awake`: under libfaketime Python's clock and Bytewax's disagree
        time.sleep(0.2)
        return [1]

class Source(DynamicSource):
    def build(self, step_id, worker_index, worker_count):
        return Ticks()

class Printed(StatelessSinkPartition):
    def write_batch(self, items):
        print("tick", flush=True)

class Sink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return Printed()

flow = Dataflow("stateless")
op.output("out", op.input("in", flow, Source()), Sink())
'''


def test_bytewax_ends_a_dataflow_without_state_at_once_when_it_runs_with_recovery(tmp_path):
    """Why `STATELESS_DATAFLOWS` run without a recovery store: an endless source, and the run is over."""
    (tmp_path / "stateless_flow.py").write_text(STATELESS_FLOW)
    init_recovery(tmp_path / "recovery", None)
    run = [sys.executable, "-m", "bytewax.run", "stateless_flow:flow"]
    with_recovery = subprocess.run(run + ["-r", str(tmp_path / "recovery"), "-s", "10", "-b", "0"], cwd=tmp_path,
                                   capture_output=True, text=True, timeout=60)
    assert with_recovery.returncode == 0  # an endless source, and the run ended by itself (within the timeout)
    # without one it goes on ticking: its first ticks are read (however slowly it starts), and it still runs
    without = subprocess.Popen(run, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert [without.stdout.readline() for _ in range(3)] == ["tick\n"] * 3
        assert without.poll() is None
    finally:
        without.kill()
        without.wait()


def test_marketstream_run_gives_a_recovery_store_only_to_dataflows_with_state(tmp_path):
    settings = load_settings(_env_file=None, recovery_directory=str(tmp_path), snapshot_interval_seconds=5)
    assert "-r" not in bytewax_command(settings, "stock_produce", [])
    assert bytewax_command(settings, "macro_produce", ["-w", "2"])[-8:] == [
        "-r", str(tmp_path / "macro_produce"), "-s", "5", "-b", "0", "-w", "2"]
    assert (tmp_path / "macro_produce" / "part-0.sqlite3").exists()
    assert not (tmp_path / "stock_produce").exists()
