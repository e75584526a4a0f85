"""`marketstream sql "SELECT * FROM stock"` over 220 000 rows streams its result: in every format its peak
memory stays near that of a query that reads the same files and answers one number (before: 934 MB for
the table format, which printed every row)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from marketstream import schemas
from tests.integration.private_lake import started_minio

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROWS, COMMITS = 220_000, 10
MOST_ABOVE_COUNTING_MB = 100


def trades(first: int, count: int) -> pa.Table:
    n = np.arange(first, first + count)
    start = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
    schema = pa.unify_schemas([schemas.STOCK_TRADES_PARTITIONING, schemas.STOCK_TRADES])
    return pa.table({
        "ticker": [f"T{i % 35:02d}" for i in n], "date": [date(2026, 11, 24 + int(i >= ROWS // 2)) for i in n],
        "trade_id": [str(10**13 + i) for i in n],
        "timestamp": pa.array([start + timedelta(microseconds=int(i) * 123_457) for i in n], schemas.TIMESTAMP),
        "price": 100 + (n % 5000) / 100, "size": (n % 500 + 1).astype(float), "exchange": ["V"] * count,
        "conditions": [["@", "I"] if i % 3 else None for i in n], "tape": ["C"] * count, "source": ["alpaca"] * count,
        "kafka_partition": pa.array(n % 6, pa.int32()), "kafka_offset": n}, schema=schema)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    server, settings = started_minio(tmp_path_factory.mktemp("minio"), ["stock-data"])
    for commit in range(COMMITS):
        write_deltalake("s3://stock-data", trades(commit * ROWS // COMMITS, ROWS // COMMITS), mode="append",
                        partition_by=["ticker", "date"], storage_options=settings.delta_storage_options())
    yield {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **{k.upper(): v for k, v in server.settings.items()}}
    server.stop()


LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""
"""Runs a command and says its peak RSS (kB) and exit code. The peak of a process forked straight from the
test would start at the test process's own, which `exec` keeps: this small launcher forks it instead."""


def peak_mb(env: dict, folder: Path, *args: str) -> float:
    """Peak RSS of one `marketstream sql` process, its output to a file."""
    with open(folder / "stdout", "wb") as stdout:
        done = subprocess.run([sys.executable, "-c", LAUNCHER, "-m", "pipelines.cli", "sql", *args], cwd=folder,
                              env=env, stdout=stdout, stderr=subprocess.PIPE, timeout=300)
    *said, last = done.stderr.decode().strip().splitlines()
    peak_kb, code = map(int, last.split())
    assert code == 0, said
    return peak_kb / 1024


@pytest.mark.parametrize("output", [[], ["--format", "csv"], ["--format", "json"],
                                    ["--format", "parquet", "--output", "stock.parquet"], ["--limit", "0"]],
                         ids=["table", "csv", "json", "parquet", "table-without-limit"])
def test_every_row_out_costs_little_more_memory_than_counting_them(env, tmp_path, output):
    counting = peak_mb(env, tmp_path, "SELECT count(*), sum(price), max(trade_id), max(conditions) FROM stock")
    streaming = peak_mb(env, tmp_path, "SELECT * FROM stock", *output)
    print(f"peak RSS: counting {counting:.0f} MB, every row {streaming:.0f} MB")
    assert streaming < counting + MOST_ABOVE_COUNTING_MB


def test_a_result_cut_short_leaves_the_process_to_exit_cleanly(env, tmp_path):
    """A scan DuckDB abandons (a LIMIT, the table format's cut) must not crash the process as it exits: it
    did, with deltalake's own filesystem handler reading the files."""
    for query in ("SELECT * FROM stock LIMIT 3", "SELECT * FROM stock"):
        for _ in range(3):
            done = subprocess.run([sys.executable, "-m", "pipelines.cli", "sql", query, "--format", "json", "--limit",
                                   "5"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
            assert done.returncode == 0, (done.returncode, done.stderr[-500:])
