"""stock_consume and bars_consume as a Bytewax cluster of two processes (`bytewax.run -i/-a`, as on two
hosts), on the real stack: the cluster stores exactly what one process stores, and when one of its processes
is killed mid-stream the other stops too, with one line saying why, and the cluster restarted from its
recovery stores leaves every trade once in the table and every bar equal to the SQL aggregate of the trades."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from marketstream import schemas
from marketstream.datasets import STOCK
from marketstream.lake import lake_filesystem, read_table
from pipelines.cli import init_recovery
from pipelines.runtime import PEER_LOST_STATUS
from sinks.delta_commits import app_id_prefix
from tests.conftest import STACK_ENV, make_settings
from tests.integration.kafka_helpers import produce
from tests.integration.private_servers import PrivateKafka, PrivateMinio, free_port
from tests.integration.processes import logged
from tests.dataflows.test_bars import tape
from tests.integration.test_bars_pipeline import assert_bars_equal_the_aggregate_of_the_trades, keyed_tape, version
from tests.integration.test_bars_pipeline import bars_bucket  # noqa: F401 - fixture
from tests.integration.test_fault_tolerance import REPO, consumer, log_of, trade
from tests.integration.test_independent_writers import _produce_steadily

pytestmark = pytest.mark.integration
PROCESSES = 2
TAPE_SYMBOLS = ("AAPL", "MSFT", "NVDA", "KO", "XOM", "JPM", "BRK.B", "T")
"""The tickers of `keyed_tape`."""


def cluster(topic: str, bucket: str, recovery: list[Path] | None = None, factory: str = "stock_consume",
            **settings) -> list[subprocess.Popen]:
    """The processes of one Bytewax cluster, each told every process's address and its own index."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(PROCESSES)]
    return [consumer(topic, bucket, recovery[index] if recovery else None, factory, process_id=index,
                     addresses=addresses, **settings) for index in range(PROCESSES)]


def cluster_recovery(path: Path) -> list[Path]:
    """Recovery partitions for a cluster as on separate hosts, as `marketstream run` makes them: process `i`
    holds partition `i` of as many as there are processes, in a directory of its own."""
    directories = [path / f"host{index}" / "recovery" for index in range(PROCESSES)]
    for index, directory in enumerate(directories):
        directory.parent.mkdir(parents=True)
        init_recovery(directory, (index, PROCESSES))
    return directories


def resume_epochs(directories: list[Path]) -> list[int]:
    """The epoch each execution of a cluster resumed from, in order, as its processes' recovery partitions
    record them (each execution is recorded in one of the partitions)."""
    executions = []
    for directory in directories:
        (part,) = directory.iterdir()
        with sqlite3.connect(part) as db:
            executions += db.execute("SELECT ex_num, resume_epoch FROM exs").fetchall()
    return [epoch for _, epoch in sorted(executions)]


def stored_rows(settings, bucket: str) -> list[tuple]:
    table = read_table(settings, bucket, schemas.STOCK_TRADES_PARTITIONING)
    return sorted(zip(table.column("trade_id").to_pylist(), table.column("ticker").to_pylist(),
                      table.column("kafka_partition").to_pylist(), table.column("kafka_offset").to_pylist()))


def transaction_versions(settings, topic: str, bucket: str) -> dict[int, int | None]:
    """Per Kafka partition, the version the table's log holds for its transaction id (its last offset stored)."""
    cluster_info = settings.kafka_cluster().describe_topic(topic)
    prefix = app_id_prefix("stock", topic, cluster_info.incarnation)
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())
    return {partition: table.transaction_version(f"{prefix}:{partition}") for partition in range(cluster_info.partitions)}


def test_a_cluster_of_two_processes_stores_exactly_the_rows_one_process_stores(stack, unique):
    settings = make_settings(kafka_topic_partitions=4)
    topic, total = f"it_cluster_{unique}", 4_000
    produce(settings, topic, [trade(i) for i in range(total)])
    results = {}
    for label in ("one", "cluster"):
        bucket = f"it-cluster-{label}-{unique}"
        processes = [consumer(topic, bucket)] if label == "one" else cluster(topic, bucket)
        for process in processes:
            assert process.wait(180) == 0, log_of(process)[-3000:]
        results[label] = stored_rows(settings, bucket), transaction_versions(settings, topic, bucket)
        lake_filesystem(settings).rm(bucket, recursive=True)

    rows, versions = results["one"]
    assert len(rows) == total and len({row[0] for row in rows}) == total
    per_partition = {}
    for _, _, partition, offset in rows:
        per_partition[partition] = max(offset, per_partition.get(partition, -1))
    assert versions == per_partition and len(versions) == 4  # each partition's last offset is its version
    assert results["cluster"] == results["one"]


def streamed_tape(count: int) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """The bars tests' tape of `count` trades keyed by ticker (about one a second of event time from the
    open, some out of order, some late, synthetic ones, messages the trades table does not keep), and the
    ids of the trades the trades table keeps."""
    return keyed_tape(count=count), [trade["trade_id"] for trade in tape(seed=11, count=count, symbols=TAPE_SYMBOLS)[1]]


def all_trade_ids(settings, bucket: str) -> list[str]:
    return [trade_id for prefix in ("", "_synthetic")
            for trade_id in read_table(settings, bucket, schemas.STOCK_TRADES_PARTITIONING, prefix=prefix)
            .column("trade_id").to_pylist()]


def wait_for_exit(process: subprocess.Popen, seconds: float) -> float | None:
    """How long `process` took to exit, at most `seconds` (None: still running)."""
    began = time.monotonic()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - began


@pytest.mark.faults  # a minute: `make test-faults`
def test_one_process_of_a_cluster_killed_mid_stream_stops_the_other_and_the_restarted_cluster_loses_and_doubles_nothing(
        lake, bars_bucket, tmp_path):  # noqa: F811 - the fixture imported above
    settings, topic, bucket = lake
    messages, kept = streamed_tape(20_000)  # over 30 s: the kill lands while they stream
    settings.kafka_cluster().ensure_topics([topic])
    producer = _produce_steadily(settings, topic, messages, 600)
    stock_recovery = cluster_recovery(tmp_path / "stock")
    bars_recovery = cluster_recovery(tmp_path / "bars")
    streaming = {"kafka_stop_at_end": False, "batch_max_age_seconds": 1}
    stock = cluster(topic, bucket, stock_recovery, **streaming)
    bars = cluster(topic, bars_bucket, bars_recovery, factory="bars_consume", **streaming)

    options = settings.delta_storage_options()
    deadline = time.monotonic() + 120
    while version(f"s3://{bucket}", options) < 2 or version(f"s3://{bars_bucket}", options) < 2:
        for process in stock + bars:
            assert process.poll() is None and time.monotonic() < deadline, log_of(process)[-3000:]
        time.sleep(0.2)
    assert producer.is_alive(), "the trades were all produced before the kill: produce more of them"
    for victim in (stock[1], bars[1]):
        victim.kill()  # SIGKILL: no handler runs
    stopped = {name: wait_for_exit(survivor, 60) for name, survivor in (("stock", stock[0]), ("bars", bars[0]))}
    for name, survivor in (("stock", stock[0]), ("bars", bars[0])):
        log = log_of(survivor)
        print(f"{name}: the surviving process exited {stopped[name]} s after its peer was killed, status "
              f"{survivor.returncode}; its last lines:\n{log[-1500:]}")
        assert stopped[name] is not None, f"{name}: the surviving process still runs a minute after its peer died"
        assert survivor.returncode == PEER_LOST_STATUS, log[-3000:]
        last = log.strip().splitlines()[-1]
        assert "cluster: process 0 of 2 lost its connection to another process of the cluster" in last, log[-3000:]
        assert "Traceback" not in log, log[-3000:]

    producer.join(60)
    finishing = {"kafka_stop_at_end": True, "batch_max_age_seconds": 1}
    restarted = cluster(topic, bucket, stock_recovery, **finishing) + cluster(
        topic, bars_bucket, bars_recovery, factory="bars_consume", **finishing)
    for process in restarted:
        assert process.wait(180) == 0, log_of(process)[-3000:]
    resumed = {"stock": resume_epochs(stock_recovery), "bars": resume_epochs(bars_recovery)}
    print("epochs the two executions of each cluster started from:", resumed)
    assert all(len(epochs) == 2 and epochs[1] > epochs[0] for epochs in resumed.values()), resumed  # resumed
    ids = all_trade_ids(settings, bucket)
    assert len(ids) == len(kept) and sorted(ids) == sorted(kept)
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)


def scaling_out_commands() -> list[str]:
    """The commands of the README's *Scaling out* example, one per host, as shown."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Scaling out"):]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_the_readmes_scaling_out_commands_run_as_shown(stack, tmp_path):
    """Each host's command, run in a folder of its own (its `.recovery`), with the README's addresses
    replaced by two free ports here, against a Kafka and a MinIO of this test's own (the commands name the
    product's topic and bucket)."""
    commands = scaling_out_commands()
    assert len(commands) == PROCESSES
    shown = sorted(set(re.findall(r"\d+\.\d+\.\d+\.\d+:\d+", " ".join(commands))))
    here = {address: f"127.0.0.1:{free_port()}" for address in shown}
    with PrivateKafka(tmp_path / "kafka") as kafka, PrivateMinio(tmp_path / "minio") as minio:
        servers = {"kafka_bootstrap_servers": kafka.bootstrap, **minio.settings}
        settings = make_settings(**servers)
        produce(settings, STOCK.topic, [trade(i) for i in range(3_000)])
        env = {**os.environ, **STACK_ENV, **{name.upper(): value for name, value in servers.items()},
               "KAFKA_STOP_AT_END": "true", "PYTHONPATH": str(REPO),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        hosts = []
        for index, command in enumerate(commands):
            for address, local in here.items():
                command = command.replace(address, local)
            folder = tmp_path / f"host{index}"
            folder.mkdir()
            hosts.append(logged(["bash", "-c", command], cwd=folder, env=env))
        for host in hosts:
            assert host.wait(180) == 0, log_of(host)[-3000:]
        ids = read_table(settings, STOCK.bucket, schemas.STOCK_TRADES_PARTITIONING).column("trade_id")
        assert len(ids) == 3_000 and pc.count_distinct(ids).as_py() == 3_000
        for index in range(PROCESSES):  # each host holds its own partition of the cluster's set
            assert sorted(p.name for p in (tmp_path / f"host{index}" / ".recovery" / "stock_consume").iterdir()) \
                == [f"part-{index}.sqlite3"]
