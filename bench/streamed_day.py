"""The streamed-day scenario of `make bench`: what a day of small commits does to readers, and what
compaction gives back.

A trading day (6.5 h) of 10-second flushes for `tickers` tickers at one trade per second each is written
through the Delta sink's own write path (`sinks.delta`: encode, upload, one commit per flush carrying its
transaction id), which is what `stock_consume` does while it streams: one small file per ticker and
flush. Then, on that table:

1. a **restart**: the real `stock_consume` process starts over the table (all its small files) with a
   topic of new trades to store; measured from its launch (and from the end of its imports) to its first
   commit landing in the log;
2. one ticker-day **queried with DuckDB** the way `marketstream sql` does (table load included), and one
   hour of it: how many of the ticker-day's files its statistics let a reader skip (**data skipping**);
3. a **compaction** of the day (`sinks.delta_maintenance`), its rows/s;
4. the same query again, right after the compaction, while the checkpoint still lists every replaced
   file as a tombstone, and once those have expired (`LAKE_VACUUM_RETENTION_HOURS` after the compaction
   the next maintenance run's checkpoint no longer lists them; here the table's retention is set to a
   second to stand for those hours), against DuckDB reading the same rows as **one Parquet file** from
   MinIO.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from deltalake import DeltaTable

from marketstream import schemas
from marketstream.calendar import NEW_YORK
from marketstream.lake import arrow_filesystem, dataset_of, lake_filesystem
from marketstream.settings import Settings
from sinks.delta import DeltaLakeSink, Flush
from sinks.delta_maintenance import TOMBSTONE_RETENTION, maintain_table
from sinks.object_store import ObjectStore
from sinks.files import FileLayout

REPO = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 24)  # a full NYSE session: 09:30-16:00 New York
SESSION_SECONDS = 6 * 3600 + 1800
QUERY = ("SELECT count(*) AS trades, sum(size) AS volume, min(price) AS low, max(price) AS high "
         "FROM trades WHERE ticker = 'T000' AND date = DATE '2026-11-24'")


def _tickers(count: int) -> list[str]:
    return [f"T{i:03d}" for i in range(count)]


def _flush_rows(ticker_index: int, tickers: int, flush: int, seconds: int, opening: datetime) -> pa.Table:
    """The trades of one ticker in one flush: one per second, offsets interleaved as in a Kafka partition."""
    first_second = flush * seconds
    offsets = np.arange(seconds, dtype=np.int64) * tickers + first_second * tickers + ticker_index
    stamps = [opening + timedelta(seconds=first_second + s) for s in range(seconds)]
    rng = np.random.default_rng(offsets[0])
    return pa.table({
        "trade_id": [f"d{o}" for o in offsets],
        "timestamp": pa.array(stamps, schemas.TIMESTAMP),
        "price": 100 + rng.random(seconds) * 50,
        "size": rng.integers(1, 500, seconds).astype(np.float64),
        "exchange": ["V"] * seconds,
        "conditions": [["@"]] * seconds,
        "tape": ["C"] * seconds,
        "source": ["alpaca"] * seconds,
        "kafka_partition": pa.array([0] * seconds, pa.int32()),
        "kafka_offset": offsets,
    }, schema=schemas.STOCK_TRADES)


def write_streamed_day(settings: Settings, bucket: str, tickers: int, flushes: int | None = None,
                       flush_seconds: int = 10) -> dict:
    """The day (its first `flushes` flushes) through the Delta sink, one `write_batch` (one commit) per
    flush; returns its figures."""
    names = _tickers(tickers)
    opening = datetime.combine(DAY, datetime.min.time().replace(hour=9, minute=30), ZoneInfo(NEW_YORK)).astimezone(timezone.utc)
    store = ObjectStore(settings.s3_storage_options())
    sink = DeltaLakeSink(bucket=bucket, topic="bench_streamed_day", dataset="stock", schema=schemas.STOCK_TRADES,
                         partitioning=schemas.STOCK_TRADES_PARTITIONING, topic_incarnation=lambda: "bench",
                         store=lambda: store, storage_options=settings.delta_storage_options(),
                         compression=settings.parquet_compression,
                         dictionary_columns=schemas.dictionary_paths(schemas.STOCK_TRADES, schemas.STOCK_TRADES_FEW_VALUES))
    sink.list_parts()
    partition = sink.build_part("bench", "0", None)
    flushes = min(flushes or SESSION_SECONDS, SESSION_SECONDS // flush_seconds)
    layout = FileLayout(tuple(schemas.STOCK_TRADES_PARTITIONING.names), schemas.STOCK_TRADES, flush_seconds)
    started = time.perf_counter()
    for flush in range(flushes):
        rows = pa.concat_tables([_flush_rows(index, tickers, flush, flush_seconds, opening)
                                 .append_column("ticker", pa.array([name] * flush_seconds))
                                 .append_column("date", pa.array([DAY] * flush_seconds))
                                 for index, name in enumerate(names)])
        partition.write_batch([Flush(0, rows, layout)])
        if flush % 200 == 0:
            print(f"    {flush:>5,} / {flushes:,} flushes ({flush * tickers:,} files) at "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    partition.close()
    seconds = time.perf_counter() - started
    return {"tickers": tickers, "flushes": flushes, "files": flushes * tickers,
            "rows": flushes * tickers * flush_seconds, "seconds": seconds, "commits_per_s": flushes / seconds}


def query_table(settings: Settings, uri: str) -> tuple[float, list]:
    """`QUERY` over the Delta table as `marketstream sql` answers it; seconds include loading the table."""
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect()
    table = DeltaTable(uri, storage_options=settings.delta_storage_options())
    connection.register("trades", dataset_of(table, uri, arrow_filesystem(settings)))
    answer = connection.sql(QUERY).fetchall()
    return time.perf_counter() - started, answer


def query_one_file(settings: Settings, path: str) -> tuple[float, list]:
    """`QUERY` with DuckDB over one Parquet file in MinIO holding exactly the ticker-day's rows."""
    import duckdb

    from pyarrow.fs import S3FileSystem

    started = time.perf_counter()
    connection = duckdb.connect()
    # Arrow's own S3 client (C++), the fastest reader of one file there is here: the bar to compare with
    filesystem = S3FileSystem(**settings.arrow_s3_options())
    dataset = ds.dataset(path, filesystem=filesystem, format="parquet")
    connection.register("one_file", dataset)
    answer = connection.sql(QUERY.replace("FROM trades WHERE ticker = 'T000' AND date = DATE '2026-11-24'",
                                          "FROM one_file")).fetchall()
    return time.perf_counter() - started, answer


HOUR = (datetime(2026, 11, 24, 15, tzinfo=timezone.utc), datetime(2026, 11, 24, 16, tzinfo=timezone.utc))


def data_skipping(settings: Settings, uri: str) -> dict:
    """How many of a ticker-day's files a one-hour query of it reads: the files whose statistics (written by
    the sink with every file) can hold a row of that hour, against all of the ticker-day's; and the hour's
    query time against the whole day's, both with DuckDB as `marketstream sql` runs it."""
    import duckdb

    dataset = dataset_of(DeltaTable(uri, storage_options=settings.delta_storage_options()), uri,
                         arrow_filesystem(settings))
    day = (ds.field("ticker") == "T000") & (ds.field("date") == DAY)
    hour = day & (ds.field("timestamp") >= pa.scalar(HOUR[0], schemas.TIMESTAMP)) & \
        (ds.field("timestamp") < pa.scalar(HOUR[1], schemas.TIMESTAMP))
    day_files, hour_files = len(list(dataset.get_fragments(filter=day))), len(list(dataset.get_fragments(filter=hour)))
    connection = duckdb.connect()
    connection.register("trades", dataset)
    timings = {}
    for name, where in (("day", ""), ("hour", " AND timestamp >= TIMESTAMPTZ '2026-11-24 15:00:00+00' "
                                              "AND timestamp < TIMESTAMPTZ '2026-11-24 16:00:00+00'")):
        started = time.perf_counter()
        rows = connection.sql(f"SELECT count(*) FROM trades WHERE ticker = 'T000' AND date = DATE '2026-11-24'{where}"
                              ).fetchall()[0][0]
        timings[name] = (time.perf_counter() - started, rows)
    expected = dataset.to_table(filter=day, columns=["timestamp"]).column("timestamp").to_pylist()
    if timings["hour"][1] != sum(HOUR[0] <= moment < HOUR[1] for moment in expected) or not timings["hour"][1]:
        raise SystemExit(f"the hour's query answered {timings['hour'][1]} rows, a full read filtered says otherwise")
    return {"ticker_day_files": day_files, "hour_files": hour_files, "fraction_read": hour_files / day_files,
            "day_query_s": timings["day"][0], "hour_query_s": timings["hour"][0], "hour_rows": timings["hour"][1]}


def tombstones_in_checkpoint(settings: Settings, uri: str) -> int:
    """The remove actions the table's last checkpoint lists: what every reader loading the table reads."""
    fs = lake_filesystem(settings)
    log_folder = f"{uri.removeprefix('s3://')}/_delta_log"
    version = json.loads(fs.cat(f"{log_folder}/_last_checkpoint"))["version"]
    with fs.open(f"{log_folder}/{version:020d}.checkpoint.parquet", "rb") as handle:
        removes = pq.read_table(handle, columns=["remove"]).column("remove")
    return len(removes) - removes.null_count


def _median_of(runs: int, measure) -> tuple[float, list]:
    results = [measure() for _ in range(runs)]
    answers = {tuple(answer[0]) for _, answer in results}
    if len(answers) != 1:
        raise SystemExit(f"the same query answered differently: {answers}")
    return statistics.median(seconds for seconds, _ in results), results[0][1]


def measure_restart(settings: Settings, bucket: str, topic: str, command: list[str]) -> dict:
    """Launch the real consumer over the table; seconds until its first commit is in the log."""
    uri = f"s3://{bucket}"
    next_version = DeltaTable(uri, storage_options=settings.delta_storage_options()).version() + 1
    fs = lake_filesystem(settings)
    commit = f"{bucket}/_delta_log/{next_version:020d}.json"
    launched = time.time()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    committed = None
    while committed is None and time.time() - launched < 300:
        if fs.exists(commit):
            committed = time.time()
        else:
            time.sleep(0.05)
            fs.invalidate_cache()
    output, _ = process.communicate(timeout=300)
    if committed is None or process.returncode != 0:
        raise SystemExit(f"the restarted consumer made no commit (exit code {process.returncode})")
    ready = [float(line.split()[1]) for line in output.splitlines() if line.startswith("READY ")]
    return {"to_first_commit_s": committed - launched,
            "imports_s": ready[0] - launched if ready else None,
            "after_imports_s": committed - ready[0] if ready else None}


def run(settings: Settings, run_id: str, tickers: int, restart_command, prefill_restart_topic,
        flushes: int | None = None) -> dict:
    bucket = f"bench-day-{run_id}"
    uri = f"s3://{bucket}"
    fs = lake_filesystem(settings)
    try:
        print(f"==> streamed day: {tickers} tickers, 10-second flushes, through the Delta sink", flush=True)
        written = write_streamed_day(settings, bucket, tickers, flushes)
        print(f"    {written['files']:,} files, {written['rows']:,} rows in {written['seconds']:.0f} s "
              f"({written['commits_per_s']:.1f} commits/s)", flush=True)

        topic = f"bench_restart_{run_id}"
        prefill_restart_topic(topic)
        print(f"==> restart of stock_consume over {written['files']:,} files", flush=True)
        restart = measure_restart(settings, bucket, topic, restart_command(topic, bucket))
        print(f"    first commit {restart['to_first_commit_s']:.2f} s after launch", flush=True)

        print("==> one ticker-day with DuckDB, before compaction", flush=True)
        before_s, before = _median_of(1, lambda: query_table(settings, uri))
        print(f"    {before_s:.2f} s", flush=True)

        print("==> data skipping: one hour of one ticker-day", flush=True)
        skipping = data_skipping(settings, uri)
        print(f"    {skipping['hour_files']:,} of its {skipping['ticker_day_files']:,} files read "
              f"({skipping['fraction_read']:.1%}); {skipping['hour_query_s']:.2f} s against {skipping['day_query_s']:.2f} s "
              "for the whole day", flush=True)

        print("==> compaction", flush=True)
        # from the log's per-file statistics: counting rows by reading 117 000 footers took longer than compacting
        rows_in_table = pa.table(DeltaTable(uri, storage_options=settings.delta_storage_options())
                                 .get_add_actions(flatten=True)).column("num_records").to_numpy().sum()
        report = maintain_table(uri, settings.delta_storage_options(), today=DAY + timedelta(days=1),
                                closed_after_days=1, vacuum=False)
        compaction = {"files_compacted": report.files_compacted, "files_written": report.files_written,
                      "seconds": report.seconds, "rows": int(rows_in_table), "rows_per_s": rows_in_table / report.seconds}
        print(f"    {report.files_compacted:,} files into {report.files_written} in {report.seconds:.1f} s: "
              f"{compaction['rows_per_s']:,.0f} rows/s", flush=True)

        after_s, after = _median_of(5, lambda: query_table(settings, uri))
        tombstones = tombstones_in_checkpoint(settings, uri)
        print(f"    right after compaction {after_s:.3f} s ({tombstones:,} tombstones in the checkpoint)", flush=True)
        table = DeltaTable(uri, storage_options=settings.delta_storage_options())
        table.alter.set_table_properties({TOMBSTONE_RETENTION: "interval 1 seconds"})
        time.sleep(1.5)
        DeltaTable(uri, storage_options=settings.delta_storage_options()).create_checkpoint()
        expired_s, expired = _median_of(5, lambda: query_table(settings, uri))
        tombstones_left = tombstones_in_checkpoint(settings, uri)
        one_file = f"{bucket}-one/ticker-day.parquet"
        if not fs.exists(f"{bucket}-one"):
            fs.mkdir(f"{bucket}-one")
        table = DeltaTable(uri, storage_options=settings.delta_storage_options())
        rows = dataset_of(table, uri, arrow_filesystem(settings)).to_table(
            filter=(ds.field("ticker") == "T000") & (ds.field("date") == DAY)).drop(["ticker", "date"])
        with fs.open(one_file, "wb") as handle:
            pq.write_table(rows, handle, compression=settings.parquet_compression)
        single_s, single = _median_of(5, lambda: query_one_file(settings, one_file))
        if not (before == after == expired == single):
            raise SystemExit(f"the ticker-day differs: before {before}, after {after}, tombstones expired "
                             f"{expired}, one file {single}")
        print(f"    compacted: right after {after_s:.3f} s ({after_s / single_s:.1f}x), tombstones expired "
              f"{expired_s:.3f} s ({expired_s / single_s:.1f}x, {tombstones_left} left); one Parquet file "
              f"{single_s:.3f} s", flush=True)
        return {"written": written, "restart": restart, "query_before_s": before_s, "data_skipping": skipping,
                "compaction": compaction,
                "query_after_s": after_s, "tombstones_after": tombstones,
                "query_tombstones_expired_s": expired_s, "tombstones_expired_left": tombstones_left,
                "query_one_file_s": single_s, "after_vs_one_file": after_s / single_s,
                "expired_vs_one_file": expired_s / single_s, "before_vs_after": before_s / after_s,
                "answer": list(before[0])}
    finally:
        for name in (bucket, f"{bucket}-one"):
            if fs.exists(name):
                fs.rm(name, recursive=True)


if __name__ == "__main__":
    sys.exit("run it through `python -m bench.run --only streamed_day`")
