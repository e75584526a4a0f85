"""The bars table: parts of one-minute bars folded into a Delta table, one row per (ticker, date, minute).

A part is a minute's bars emitted when its window closed, or a correction holding later trades of it
(`pipelines.bars`). `BarsSink` has one writer per table (one sink partition), which knows the minutes its
table holds (read once per date, then kept up to date by its own commits). Each batch makes one commit per
date it touches (the trades table's protocol: `sinks.delta_commits.DeltaCommitter`, with a transaction id,
so a commit whose answer was lost is not made again). Minutes the table lacks are added as new Parquet
files, one per ticker. A ticker with parts for minutes the table holds has its whole partition of that date
(a day of one ticker: at most 1 440 rows) read, the parts it does not hold folded in as `Bar.merge` does
(`marketstream.bars.unheld_parts`, `combine_parts`), and written again as one file that replaces the
partition's files in the same commit, which also compacts it.

Delivery guarantee: each part folds in once. A minute is added only when the table lacks it, and a part of a
minute the table holds only when its row does not hold it yet (its first offset is above the row's last
offset: the trades of a ticker arrive in offset order). Replaying parts (after a crash, a restart, another
worker count) therefore changes nothing. One bars_consume deployment writes a bars bucket (as one Bytewax
cluster; its workers and processes share the one writer): two separate deployments could both add a
minute, or replace each other's partitions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from marketstream import metrics, schemas
from marketstream.bars import combine_parts, unheld_parts
from marketstream.runs import key_runs
from sinks.delta_commits import DeltaCommitter, retrying
from sinks.delta_stats import file_stats
from sinks.layout import object_key, partition_path
from sinks.object_store import ObjectStore
from sinks.pending import PendingWrites

log = logging.getLogger(__name__)

MAX_PENDING_BATCHES = 2
"""Batches handed to the writing thread and not written yet: what slows the dataflow down when the store is slow."""
TABLE_SCHEMA = pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS])


def stored_minutes(uri: str, storage_options: dict[str, str], day, sleep: Callable[[float], None] = time.sleep) -> pa.Table:
    """For one date, each stored minute's ticker, minute (µs since the epoch) and `held`: the last Kafka
    offset folded into it. Retried while the store is down."""

    def read() -> pa.Table:
        try:
            table = DeltaTable(uri, storage_options=storage_options)
        except TableNotFoundError:
            return pa.table({"ticker": [], "minute": [], "last_offset": []})
        return table.to_pyarrow_table(filters=[("date", "=", day)], columns=["ticker", "minute", "last_offset"])

    rows = retrying(f"reading the minutes {uri} holds on {day}", read, sleep)
    return pa.table({"ticker": rows.column("ticker").cast(pa.string()), "minute": rows.column("minute").cast(pa.int64()),
                     "held": rows.column("last_offset").cast(pa.int64())})


_KEYS = pa.schema([TABLE_SCHEMA.field("ticker").with_nullable(True), TABLE_SCHEMA.field("minute").with_nullable(True)])


class _Present:
    """Which (ticker, minute) rows one bars table holds, per date: read from the table once, then kept up
    to date by its one writer. The last `keep` dates are kept; an older one is read again if needed."""

    def __init__(self, read: Callable[[object], pa.Table], keep: int = 8):
        self._read = read
        self._keep = keep
        self._days: dict[object, pa.Table] = {}

    def _day(self, day) -> pa.Table:
        if day not in self._days:
            if len(self._days) >= self._keep:
                del self._days[next(iter(self._days))]
            self._days[day] = self._read(day).select(["ticker", "minute"]).cast(_KEYS)
        return self._days[day]

    def split(self, day, rows: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(`rows` of date `day` whose minute the table lacks, those it holds)."""
        present = self._day(day)
        if not present.num_rows:
            return rows, rows.slice(0, 0)
        return tuple(rows.join(present, ["ticker", "minute"], join_type=kind).cast(rows.schema)
                     for kind in ("left anti", "left semi"))

    def add(self, day, rows: pa.Table) -> None:
        """`rows` of date `day` are in the table now."""
        self._days[day] = pa.concat_tables([self._day(day), rows.select(["ticker", "minute"]).cast(_KEYS)]).combine_chunks()


class _BarsTable:
    """One bars table as its one writer sees it: a batch of parts becomes one commit per date, committed
    with a transaction id so that a commit whose answer was lost is not made twice."""

    def __init__(self, uri: str, bucket: str, folder: str, storage_options: dict[str, str], store: ObjectStore,
                 compression: str):
        self.uri = uri
        self._bucket = bucket
        self._folder = folder
        self._store = store
        self._compression = compression
        self._committer = DeltaCommitter(uri, storage_options, TABLE_SCHEMA, list(schemas.BARS_PARTITIONING.names))
        self._present = _Present(lambda day: stored_minutes(uri, storage_options, day))
        self._files = ThreadPoolExecutor(max_workers=FILE_WRITERS, thread_name_prefix="bars-files")

    def write(self, parts: pa.Table) -> None:
        parts = parts.combine_chunks()  # a batch gathers thousands of small tables: sorted and filtered faster as one
        for day in pc.unique(parts.column("date")).to_pylist():
            self._write_day(day, *self._present.split(day, parts.filter(pc.equal(parts.column("date"),
                                                                                  pa.scalar(day, pa.date32())))))

    def _write_day(self, day, new: pa.Table, held: pa.Table) -> None:
        """`new`: parts of minutes the table lacks; `held`: parts of minutes it holds; all of date `day`."""
        rows, replaced = combine_parts(new), pa.array([], pa.string())
        if held.num_rows:
            tickers = pc.unique(held.column("ticker"))
            stored = self._committer.read([("date", "=", day), ("ticker", "in", tickers.to_pylist())])
            stored = stored.select(TABLE_SCHEMA.names).cast(TABLE_SCHEMA)
            fresh = unheld_parts(stored, held)
            replaced = pc.unique(fresh.column("ticker"))
            if len(replaced):  # these tickers' partitions are written again whole, with the new minutes
                rows = combine_parts(pa.concat_tables([new, fresh, stored.filter(pc.is_in(stored.column("ticker"), replaced))]))
        if not rows.num_rows:
            return  # parts the table holds already: a replay
        adds = self._put(rows)
        version = self._committer.committed_version(WRITER_APP_ID) + 1
        replacing = [("date", "=", day.isoformat()), ("ticker", "in", replaced.to_pylist())] if len(replaced) else None
        with metrics.COMMIT_SECONDS.labels(self.uri).time():
            self._committer.commit_files(adds, {WRITER_APP_ID: version}, replacing)
        self._present.add(day, new)
        metrics.ROWS_COMMITTED.labels(self.uri).inc(new.num_rows + held.num_rows)
        metrics.FILES_COMMITTED.labels(self.uri).inc(len(adds))

    def _put(self, rows: pa.Table) -> list[AddAction]:
        """`rows` (sorted by ticker, date and minute) written as one file per ticker and date."""
        files = [(ticker, day, rows.slice(start, count)) for (ticker, day), start, count in key_runs(rows, ["ticker", "date"])]
        # encoded and uploaded by several threads (Parquet encoding releases the GIL)
        shares = [files[i::FILE_WRITERS] for i in range(FILE_WRITERS)]
        return [add for share in self._files.map(self._put_files, shares) for add in share]

    def _put_files(self, files: list[tuple[str, object, pa.Table]]) -> list[AddAction]:
        objects, adds = {}, []
        for ticker, day, chunk in files:
            relative = object_key(partition_path([("ticker", ticker), ("date", day)]), f"bars-{uuid.uuid4().hex}.parquet")
            data = _parquet(chunk.drop_columns(list(schemas.BARS_PARTITIONING.names)), self._compression)
            objects[object_key(self._folder, relative)] = data
            adds.append(AddAction(relative, len(data), {"ticker": ticker, "date": day.isoformat()},
                                  int(time.time() * 1000), True, file_stats(chunk, self._committer.stats_columns)))
        self._store.put_many(self._bucket, objects)
        return adds


FILE_WRITERS = 4
WRITER_APP_ID = "marketstream-bars"
"""The transaction id of the bars table's writer; its version counts its commits."""


def _parquet(table: pa.Table, compression: str) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue().to_pybytes()


class _BarsPartition(StatefulSinkPartition[pa.Table, None]):
    """Writes each batch on a thread of its own, in the order the batches arrived, at most
    `MAX_PENDING_BATCHES` in flight; every snapshot waits for them."""

    def __init__(self, table: Callable[[str], _BarsTable]):
        self._table = table
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bars-write")
        self._pending = PendingWrites(MAX_PENDING_BATCHES)

    def write_batch(self, items: list[tuple[str, pa.Table]]) -> None:
        by_folder: dict[str, list[pa.Table]] = {}
        for folder, parts in items:
            by_folder.setdefault(folder, []).append(parts)
        for folder, parts in by_folder.items():
            self._pending.make_room()
            self._pending.add(self._writer.submit(self._write, folder, pa.concat_tables(parts)))

    def _write(self, folder: str, parts: pa.Table) -> None:
        self._table(folder).write(parts)

    def snapshot(self) -> None:
        """Called at the end of every epoch, before its state is committed: every write must be done."""
        self._pending.wait_all()

    def close(self) -> None:
        self._pending.wait_all()
        self._writer.shutdown()


class BarsSink(FixedPartitionedSink[pa.Table, None]):
    """Writes `(folder, parts)` items (a batch of rows of the table in that folder of `bucket`; `""` is the
    bucket's root table). One sink partition writes every table: each table has one writer, which is what
    lets it add a minute it lacks as a plain new file."""

    def __init__(self, bucket: str, storage_options: dict[str, str], store: Callable[[], ObjectStore],
                 compression: str = "zstd"):
        self._bucket = bucket
        self._storage_options = storage_options
        self._store = store
        self._compression = compression
        self._tables: dict[str, _BarsTable] = {}

    def uri(self, folder: str) -> str:
        return f"s3://{self._bucket}/{folder}".rstrip("/")

    def _table(self, folder: str) -> _BarsTable:
        if folder not in self._tables:
            self._tables[folder] = _BarsTable(self.uri(folder), self._bucket, folder, self._storage_options,
                                              self._store(), self._compression)
        return self._tables[folder]

    def list_parts(self) -> list[str]:
        self._store().ensure_bucket(self._bucket)  # before anything reads the tables
        return ["bars"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BarsPartition:
        return _BarsPartition(self._table)
