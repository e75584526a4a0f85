"""The bars table: parts of one-minute bars merged into a Delta table, one row per (ticker, date, minute).

A part is a whole minute emitted when it closed, or a correction holding later trades of a closed minute
(`pipelines.bars`). `merge_parts` folds each part into the stored row with a Delta MERGE whose update
mirrors `marketstream.bars.Bar.merge` (open and close by event time then offset, high, low, sums) and
inserts a minute not stored yet. Parts sharing a minute within one call are merged in turns, one MERGE per
turn, so that each keeps its own first offset.

Delivery guarantee: each part folds in once. The trades of a ticker arrive in offset order, and every part
of a minute holds trades that arrived after those of the parts before it, so a part whose first offset is
at or below the stored row's last offset is already in it: the MERGE skips it. Replaying parts (after a
crash, a restart, another worker count) therefore changes nothing; concurrent commits of other writers
make a MERGE lose a race at worst, and it is tried again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from marketstream import metrics, schemas
from sinks.pending import PendingWrites

log = logging.getLogger(__name__)

MAX_LOST_RACES = 20
MAX_PENDING_MERGES = 2
"""Batches handed to the merging thread and not merged yet: what slows the dataflow down when the store is slow."""
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


def _open(uri: str, storage_options: dict[str, str]) -> DeltaTable:
    try:
        return DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return DeltaTable.create(uri, TABLE_SCHEMA, mode="ignore", partition_by=list(schemas.BARS_PARTITIONING.names),
                                 storage_options=storage_options)


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
    return _open(uri, storage_options)


def merge_parts(table: DeltaTable, parts: pa.Table, sleep: Callable[[float], None] = time.sleep) -> int:
    """Fold `parts` (rows of the bars table, in the order they were made) into the bars `table` (kept open
    by the caller: loading its log again for each merge costs more than the merge); returns the parts
    folded in (the others were in already)."""
    folded = 0
    for rows in turns(parts):
        predicate = f"t.ticker = s.ticker AND t.date = s.date AND t.minute = s.minute AND {_target_bounds(rows)}"
        for attempt in range(MAX_LOST_RACES):
            try:
                outcome = (table.merge(rows, predicate=predicate, source_alias="s", target_alias="t")
                           .when_matched_update(updates=FOLD, predicate="s.first_offset > t.last_offset")
                           .when_not_matched_insert_all().execute())
            except CommitFailedError as exc:
                log.info("%s: a bars merge lost a race (%s); trying again", table.table_uri,
                         str(exc).splitlines()[0][:120])
                metrics.RETRIES.labels("delta").inc()
                sleep(min(0.1 * 2 ** attempt, 5.0))
                table.update_incremental()
                continue
            folded += int(outcome.get("num_target_rows_inserted", 0)) + int(outcome.get("num_target_rows_updated", 0))
            break
        else:
            raise RuntimeError(f"{table.table_uri}: a bars merge lost {MAX_LOST_RACES} races in a row")
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


class _BarsPartition(StatefulSinkPartition[pa.Table, None]):
    """Merges each batch on a thread of its own, in the order the batches arrived, at most
    `MAX_PENDING_MERGES` in flight; every snapshot waits for them."""

    def __init__(self, uri: Callable[[str], str], storage_options: dict[str, str]):
        self._uri = uri
        self._storage_options = storage_options
        self._merger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bars-merge")
        self._pending = PendingWrites(MAX_PENDING_MERGES)
        self._tables: dict[str, DeltaTable] = {}

    def write_batch(self, items: list[tuple[str, pa.Table]]) -> None:
        by_folder: dict[str, list[pa.Table]] = {}
        for folder, parts in items:
            by_folder.setdefault(folder, []).append(parts)
        for folder, parts in by_folder.items():
            self._pending.make_room()
            self._pending.add(self._merger.submit(self._merge, self._uri(folder), pa.concat_tables(parts)))

    def _merge(self, uri: str, parts: pa.Table) -> None:
        if uri not in self._tables:
            self._tables[uri] = open_table(uri, self._storage_options)
        table = self._tables[uri]
        # a few tickers per MERGE: delta-rs holds a Parquet writer per partition it writes (~1 MB each)
        tickers = pc.unique(parts.column("ticker"))
        for start in range(0, len(tickers), MAX_TICKERS_PER_MERGE):
            chunk = parts.filter(pc.is_in(parts.column("ticker"), tickers.slice(start, MAX_TICKERS_PER_MERGE)))
            with metrics.COMMIT_SECONDS.labels(uri).time():
                merge_parts(table, chunk)
            metrics.ROWS_COMMITTED.labels(uri).inc(chunk.num_rows)

    def snapshot(self) -> None:
        """Called at the end of every epoch, before its state is committed: every merge must be done."""
        self._pending.wait_all()

    def close(self) -> None:
        self._pending.wait_all()
        self._merger.shutdown()


class BarsSink(FixedPartitionedSink[pa.Table, None]):
    """Writes `(folder, parts)` items (a batch of rows of the table in that folder of `bucket`; `""` is the
    bucket's root table). One sink partition writes every table, so a table has one writer."""

    def __init__(self, bucket: str, storage_options: dict[str, str], ensure_bucket: Callable[[str], None]):
        self._bucket = bucket
        self._storage_options = storage_options
        self._ensure_bucket = ensure_bucket

    def uri(self, folder: str) -> str:
        return f"s3://{self._bucket}/{folder}".rstrip("/")

    def list_parts(self) -> list[str]:
        self._ensure_bucket(self._bucket)  # before anything reads the tables
        return ["bars"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BarsPartition:
        return _BarsPartition(self.uri, self._storage_options)
