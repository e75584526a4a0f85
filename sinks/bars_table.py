"""The bars table: parts of one-minute bars folded into a Delta table, one row per (ticker, date, minute).

A part is a minute's bars emitted when its window closed, or a correction holding later trades of it
(`pipelines.bars`). `BarsSink` has one writer per table (one sink partition), which knows the minutes its
table holds (read once per date, then kept up to date by its own commits). A batch's parts for minutes the
table lacks are written as new Parquet files, one per ticker and date, added in one commit (the trades
table's protocol: `sinks.delta_commits.DeltaCommitter`, with a transaction id, so a commit whose answer was
lost is not made again). Parts for minutes it holds are folded into the stored row by `merge_parts`: a
Delta MERGE whose update mirrors `marketstream.bars.Bar.merge` (open and close by event time then offset,
high, low, sums). Parts sharing a minute within one batch are written in turns, so that each keeps its own
first offset.

Delivery guarantee: each part folds in once. A minute is added only when the table lacks it. The trades of
a ticker arrive in offset order, and every part of a minute holds trades that arrived after those of the
parts before it, so a part whose first offset is at or below the stored row's last offset is already in
it: the MERGE skips it. Replaying parts (after a crash, a restart, another worker count) therefore changes
nothing. One bars_consume deployment writes a bars bucket (as one Bytewax cluster; its workers and
processes share the one writer): two separate deployments could both add a minute.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from marketstream import metrics, schemas
from sinks.delta_commits import DeltaCommitter, open_or_create, racing
from sinks.layout import object_key, partition_path
from sinks.object_store import ObjectStore
from sinks.pending import PendingWrites

log = logging.getLogger(__name__)

MAX_PENDING_BATCHES = 2
"""Batches handed to the writing thread and not written yet: what slows the dataflow down when the store is slow."""
MAX_TICKERS_PER_MERGE = 25
TABLE_SCHEMA = pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS])

_EARLIER_OPEN = "s.open_ts < t.open_ts OR (s.open_ts = t.open_ts AND s.open_offset < t.open_offset)"
_LATER_CLOSE = "s.close_ts > t.close_ts OR (s.close_ts = t.close_ts AND s.close_offset > t.close_offset)"
FOLD = {
    **{name: f"CASE WHEN {_EARLIER_OPEN} THEN s.{name} ELSE t.{name} END" for name in ("open", "open_ts", "open_offset")},
    **{name: f"CASE WHEN {_LATER_CLOSE} THEN s.{name} ELSE t.{name} END"
       for name in ("close", "close_ts", "close_offset")},
    "high": "CASE WHEN s.high > t.high THEN s.high ELSE t.high END",
    "low": "CASE WHEN s.low < t.low THEN s.low ELSE t.low END",
    "volume": "t.volume + s.volume",
    "trades": "t.trades + s.trades",
    "notional": "t.notional + s.notional",
    "vwap": "(t.notional + s.notional) / (t.volume + s.volume)",
    "first_offset": "CASE WHEN s.first_offset < t.first_offset THEN s.first_offset ELSE t.first_offset END",
    "last_offset": "CASE WHEN s.last_offset > t.last_offset THEN s.last_offset ELSE t.last_offset END",
}
"""`Bar.merge` as the MERGE's update of a stored row `t` by a part `s`."""


def turns(parts: pa.Table) -> list[pa.Table]:
    """`parts` split so that no turn holds two parts of one (ticker, minute), each minute's parts in order."""
    seen: dict[tuple[str, int], int] = {}
    rank = []
    for slot in zip(parts.column("ticker").to_pylist(), pc.cast(parts.column("minute"), pa.int64()).to_pylist()):
        seen[slot] = seen.get(slot, -1) + 1
        rank.append(seen[slot])
    if not rank or max(rank) == 0:
        return [parts] if parts.num_rows else []
    ranks = pa.array(rank)
    return [parts.filter(pc.equal(ranks, turn)) for turn in range(max(rank) + 1)]


def _target_bounds(rows: pa.Table) -> str:
    """The stored rows a MERGE of `rows` can match, as literals delta-rs prunes files with: without them it
    reads every file of the table (a day of small files makes each MERGE slower than the last)."""
    low, high = pc.min_max(rows.column("minute").cast(pa.int64())).values()
    tickers = ", ".join(_quoted(ticker) for ticker in pc.unique(rows.column("ticker")).to_pylist())
    days = ", ".join(f"'{day}'" for day in pc.unique(rows.column("date")).to_pylist())
    return (f"t.ticker IN ({tickers}) AND t.date IN ({days}) AND t.minute >= arrow_cast({low.as_py()}, '{_MINUTE_TYPE}')"
            f" AND t.minute <= arrow_cast({high.as_py()}, '{_MINUTE_TYPE}')")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_MINUTE_TYPE = 'Timestamp(Microsecond, Some("UTC"))'


def open_table(uri: str, storage_options: dict[str, str]) -> DeltaTable:
    """The bars table at `uri`, created if missing."""
    return open_or_create(uri, storage_options, TABLE_SCHEMA, list(schemas.BARS_PARTITIONING.names))


def merge_parts(table: DeltaTable, parts: pa.Table, sleep: Callable[[float], None] = time.sleep) -> int:
    """Fold `parts` (rows of the bars table, in the order they were made) into the bars `table` (kept open
    by the caller: loading its log again for each merge costs more than the merge); returns the parts
    folded in (the others were in already)."""
    folded = 0
    for rows in turns(parts):
        predicate = f"t.ticker = s.ticker AND t.date = s.date AND t.minute = s.minute AND {_target_bounds(rows)}"

        def merge() -> dict:
            return (table.merge(rows, predicate=predicate, source_alias="s", target_alias="t")
                    .when_matched_update(updates=FOLD, predicate="s.first_offset > t.last_offset")
                    .when_not_matched_insert_all().execute())

        outcome = racing(f"{table.table_uri}: a bars merge", merge, again=table.update_incremental, sleep=sleep)
        folded += int(outcome.get("num_target_rows_inserted", 0)) + int(outcome.get("num_target_rows_updated", 0))
    return folded


def stored_minutes(uri: str, storage_options: dict[str, str], day) -> pa.Table:
    """For one date, each stored minute's ticker, minute (µs since the epoch) and `held`: the last Kafka
    offset folded into it."""
    try:
        table = DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        rows = pa.table({"ticker": [], "minute": [], "last_offset": []})
    else:
        rows = table.to_pyarrow_table(filters=[("date", "=", day)], columns=["ticker", "minute", "last_offset"])
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

    def split(self, rows: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(`rows` whose minute the table lacks, those it holds)."""
        keys = rows.append_column("_row", pa.array(range(rows.num_rows), pa.int64()))
        held = []
        for day in pc.unique(rows.column("date")).to_pylist():
            present = self._day(day)
            if present.num_rows:
                held.append(keys.select(["ticker", "minute", "_row"]).join(present, ["ticker", "minute"],
                                                                           join_type="left semi").column("_row"))
        if not held:
            return rows, rows.slice(0, 0)
        held_mask = pc.is_in(keys.column("_row"), pa.chunked_array([c for h in held for c in h.chunks], pa.int64()))
        return rows.filter(pc.invert(held_mask)), rows.filter(held_mask)

    def add(self, rows: pa.Table) -> None:
        for day in pc.unique(rows.column("date")).to_pylist():
            added = rows.filter(pc.equal(rows.column("date"), pa.scalar(day, pa.date32()))).select(["ticker", "minute"]).cast(_KEYS)
            self._days[day] = pa.concat_tables([self._day(day), added]).combine_chunks()


class _BarsTable:
    """One bars table as its one writer sees it: minutes it lacks are added as new files in one commit
    (files written here, committed with a transaction id so that a commit whose answer was lost is not made
    twice); parts of minutes it holds are merged (`merge_parts`)."""

    def __init__(self, uri: str, bucket: str, folder: str, storage_options: dict[str, str], store: ObjectStore,
                 compression: str):
        self.uri = uri
        self._bucket = bucket
        self._folder = folder
        self._store = store
        self._compression = compression
        self._committer = DeltaCommitter(uri, storage_options, TABLE_SCHEMA, list(schemas.BARS_PARTITIONING.names))
        self._merging = open_table(uri, storage_options)
        self._present = _Present(lambda day: stored_minutes(uri, storage_options, day))
        self._files = ThreadPoolExecutor(max_workers=FILE_WRITERS, thread_name_prefix="bars-files")

    def write(self, parts: pa.Table) -> None:
        for turn in turns(parts):
            new, held = self._present.split(turn)
            if new.num_rows:
                self._insert(new)
                self._merging.update_incremental()
            if held.num_rows:
                # a few tickers per MERGE: delta-rs holds a Parquet writer per partition it writes (~1 MB each)
                tickers = pc.unique(held.column("ticker"))
                for start in range(0, len(tickers), MAX_TICKERS_PER_MERGE):
                    chunk = held.filter(pc.is_in(held.column("ticker"), tickers.slice(start, MAX_TICKERS_PER_MERGE)))
                    with metrics.COMMIT_SECONDS.labels(self.uri).time():
                        merge_parts(self._merging, chunk)
                    metrics.ROWS_COMMITTED.labels(self.uri).inc(chunk.num_rows)
                self._committer.refresh()

    def _insert(self, rows: pa.Table) -> None:
        rows = rows.sort_by([("ticker", "ascending"), ("date", "ascending"), ("minute", "ascending")])
        runs = rows.select(["ticker", "date"]).group_by(["ticker", "date"], use_threads=False).aggregate([([], "count_all")])
        files, start = [], 0
        for ticker, day, count in zip(*(runs.column(n).to_pylist() for n in ("ticker", "date", "count_all"))):
            files.append((ticker, day, rows.slice(start, count)))
            start += count
        # a file per ticker: encoded and uploaded by several threads (Parquet encoding releases the GIL)
        shares = [files[i::FILE_WRITERS] for i in range(FILE_WRITERS)]
        adds = [add for share in self._files.map(self._put_files, shares) for add in share]
        version = self._committer.committed_version(WRITER_APP_ID) + 1
        with metrics.COMMIT_SECONDS.labels(self.uri).time():
            self._committer.commit(adds, {WRITER_APP_ID: version})
        self._present.add(rows)
        metrics.ROWS_COMMITTED.labels(self.uri).inc(rows.num_rows)
        metrics.FILES_COMMITTED.labels(self.uri).inc(len(adds))

    def _put_files(self, files: list[tuple[str, object, pa.Table]]) -> list[AddAction]:
        objects, adds = {}, []
        for ticker, day, chunk in files:
            relative = object_key(partition_path([("ticker", ticker), ("date", day)]), f"bars-{uuid.uuid4().hex}.parquet")
            data = _parquet(chunk.drop_columns(list(schemas.BARS_PARTITIONING.names)), self._compression)
            objects[object_key(self._folder, relative)] = data
            low, high = pc.min_max(chunk.column("minute")).values()
            stats = {"numRecords": chunk.num_rows, "minValues": {"minute": _stat(low.as_py())},
                     "maxValues": {"minute": _stat(high.as_py())}}
            adds.append(AddAction(relative, len(data), {"ticker": ticker, "date": day.isoformat()},
                                  int(time.time() * 1000), True, json.dumps(stats)))
        self._store.put_many(self._bucket, objects)
        return adds


FILE_WRITERS = 4
WRITER_APP_ID = "marketstream-bars"
"""The transaction id of the bars table's writer; its version counts the commits that added minutes."""


def _stat(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


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
