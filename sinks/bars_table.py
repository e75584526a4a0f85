"""The bars tables: bar parts folded into one row per (ticker, date, minute) of a Delta table.

`BarsSink` receives batches of bar rows as the stream makes them (`pipelines.bars`: a minute's bars when its
window closed, and corrections holding later trades of it), per table folder. Each part holds one Kafka
partition: every trade of its ticker's minute in that partition from its `first_offset` to its held offset.
Each batch makes one commit per date it touches (`sinks.delta_commits.DeltaCommitter`), prepared against the
table as it is (`marketstream.bars.split_by_held`, by the rows' `held_through` offsets, whoever folded them
in): a part whose trades the table holds is left out, a part of which it holds none is folded in, and a part
of which it holds some (another writer cut the same minute elsewhere) is folded again from its trades above
what is held, read again from the topic (`reread`). Minutes the table lacks are added as new Parquet files,
one per ticker. A ticker with parts of minutes the table holds has its whole partition of that date (a day of
one ticker: at most 1 440 rows) read, the parts folded in (`combine_parts`, as `Bar.merge` does) and written
again as one file that replaces the partition's files in the same commit; so is a ticker whose partition has
gathered `COMPACT_AT_FILES` files, which keeps a day of one ticker in a few files without any other process
rewriting them.

Delivery guarantee: each trade folds in once, for any number of writers (workers, processes, independent
deployments), across crashes and replays. Every commit of a date carries that date's transaction id
(`marketstream:bars:<date>`, its version counting the date's commits), so delta-rs refuses a commit prepared
on a table another writer has since changed on that date, and the commit is prepared again on the newer
table; a commit whose answer was lost is prepared again too, and finds its parts held. Only these commits
rewrite a bars table's files: lake maintenance compacts bars tables through `BarsWriter.rewrite`, never
with delta-rs's optimize (whose commits a concurrent partition rewrite does not see, which would double rows).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from marketstream import metrics, schemas
from marketstream.bars import (LEGACY_INCARNATION, Reread, combine_parts, fold_trades, held_entries, unheld_parts,
                               with_legacy_held)
from marketstream.lake import MAINTENANCE_COMMIT
from marketstream.runs import key_runs
from sinks.delta_commits import Commit, DeltaCommitter, TableView, evolve, retrying
from sinks.delta_stats import files_stats
from sinks.layout import object_key, partition_path
from sinks.object_store import ObjectStore
from sinks.pending import PendingWrites

log = logging.getLogger(__name__)

MAX_PENDING_BATCHES = 2
"""Batches handed to the writing thread and not written yet: what slows the dataflow down when the store is slow."""
TABLE_SCHEMA = pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS])
DICTIONARY_COLUMNS = schemas.dictionary_paths(schemas.BARS, schemas.BARS_FEW_VALUES)
TopicReread = Callable[[str, str, int, int, int], pa.Table]
"""`reread(folder, incarnation, partition, first, last)`: `marketstream.bars.Reread` for a table folder."""
PARTITION_BY = list(schemas.BARS_PARTITIONING.names)
COMPACT_AT_FILES = 24
"""A ticker's partition of a date holding this many files is written again as one with its next rows."""
FILE_WRITERS = 4
_KEYS = pa.schema([TABLE_SCHEMA.field("ticker").with_nullable(True), TABLE_SCHEMA.field("minute").with_nullable(True)])


def date_app_id(day: date) -> str:
    """The transaction id every commit touching `day`'s partitions carries; its version counts them."""
    return f"marketstream:bars:{day.isoformat()}"


def upgrade(uri: str, storage_options: dict[str, str], incarnation: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """Give a bars table written before 2026-12 its `held_through` column, after naming the topic incarnation
    its earlier rows hold (`LEGACY_INCARNATION`): the one whose trades the writer reads now."""

    def once() -> None:
        try:
            table = DeltaTable(uri, storage_options=storage_options)
        except TableNotFoundError:
            return
        if "held_through" in _names(table):
            return
        if not table.metadata().configuration.get(LEGACY_INCARNATION):
            table.alter.set_table_properties({LEGACY_INCARNATION: incarnation}, raise_if_not_exists=False)
            log.info("%s: rows written before 2026-12 hold the trades of topic incarnation %s", uri, incarnation)
        evolve(DeltaTable(uri, storage_options=storage_options), TABLE_SCHEMA)

    retrying(f"upgrading {uri}", once, sleep)


@dataclass
class _Day:
    """What a bars table holds of one date, as of the date's transaction `version`."""

    version: int
    entries: pa.Table
    """`marketstream.bars.held_entries` of its rows."""
    minutes: pa.Table
    """(ticker, minute) of its rows."""
    files: dict[str, int]
    """Files per ticker."""


def _ticker_of(path: str) -> str:
    segment = next(part for part in path.split("/") if part.startswith("ticker="))
    return unquote(segment.removeprefix("ticker="))


class BarsWriter:
    """One bars table as this process writes it (created if missing): batches of bar parts folded in, one
    commit per date, each prepared against the table as it is."""

    def __init__(self, uri: str, bucket: str, folder: str, storage_options: dict[str, str], store: ObjectStore,
                 incarnation: str | None, compression: str = "zstd", keep_days: int = 8,
                 reread: TopicReread | None = None):
        """`incarnation`: of the topic whose trades `write` folds (None: a writer that only `rewrite`s, as
        maintenance); `reread(folder, incarnation, partition, first, last)`: those trades of a Kafka partition's
        offsets `first`..`last` that this table keeps, read again (`marketstream.bars.Reread`)."""
        self._reread = reread
        self.uri = uri
        self._bucket = bucket
        self._folder = folder
        self._store = store
        self._incarnation = incarnation
        self._compression = compression
        self._keep_days = keep_days
        if incarnation is not None:
            upgrade(uri, storage_options, incarnation)
        # columns are added by `upgrade` only, after the legacy incarnation is named
        self._committer = DeltaCommitter(uri, storage_options, TABLE_SCHEMA, PARTITION_BY, evolve_schema=False)
        self._days: dict[date, _Day] = {}
        self._files = ThreadPoolExecutor(max_workers=FILE_WRITERS, thread_name_prefix="bars-files")

    # --- what the table holds
    def _day(self, view: TableView, day: date) -> _Day:
        """The table's date `day`, read again whenever another commit than this writer's changed it."""
        version = view.version(date_app_id(day))
        known = self._days.get(day)
        if known is not None and known.version == version:
            return known
        rows = view.read([("date", "=", day)], columns=["ticker", "minute", "last_offset", "held_through"])
        files: dict[str, int] = {}
        for path in view.files([("date", "=", day)]):
            files[_ticker_of(path)] = files.get(_ticker_of(path), 0) + 1
        found = _Day(version, held_entries(rows, view.configuration.get(LEGACY_INCARNATION)),
                     rows.select(["ticker", "minute"]).cast(_KEYS), files)
        self._days.pop(day, None)
        if len(self._days) >= self._keep_days:
            del self._days[next(iter(self._days))]
        self._days[day] = found
        return found

    def _wrote(self, day: date, held: _Day, rows: pa.Table, new_minutes: pa.Table, rewritten: set[str]) -> None:
        """This writer's commit of `rows` on `day` landed: what the table holds now."""
        entries = pa.concat_tables([held.entries, held_entries(rows).cast(held.entries.schema)])
        entries = entries.group_by(["ticker", "minute", "incarnation", "kafka_partition"], use_threads=False).aggregate(
            [("offset", "max")]).rename_columns(["ticker", "minute", "incarnation", "kafka_partition", "offset"])
        files = dict(held.files)
        for ticker in pc.unique(rows.column("ticker")).to_pylist():
            files[ticker] = 1 if ticker in rewritten else files.get(ticker, 0) + 1
        self._days[day] = _Day(held.version + 1, entries,
                               pa.concat_tables([held.minutes, new_minutes.cast(_KEYS)]).combine_chunks(), files)

    # --- writing
    def write(self, parts: pa.Table) -> None:
        """Fold `parts` (rows of the bars table as the stream makes them, each holding one Kafka partition)."""
        days = pc.unique(parts.column("date")).to_pylist()
        for day in days:
            of_day = parts if len(days) == 1 else parts.filter(pc.equal(parts.column("date"), pa.scalar(day, pa.date32())))
            written = {}

            def prepare(view: TableView, day=day, of_day=of_day) -> Commit | None:
                return self._fold(view, day, of_day, written)

            with metrics.COMMIT_SECONDS.labels(self.uri).time():
                made = self._committer.commit(prepare)
            if made is not None:
                self._wrote(day, *written["state"])
                metrics.ROWS_COMMITTED.labels(self.uri).inc(written["state"][1].num_rows)
                metrics.FILES_COMMITTED.labels(self.uri).inc(len(made.adds))

    def _fold(self, view: TableView, day: date, parts: pa.Table, written: dict) -> Commit | None:
        held = self._day(view, day)
        fresh = unheld_parts(held.entries, parts, self._reread_for(parts.num_rows))
        if not fresh.num_rows:
            return None  # held already: a replay, or another writer's
        parts = combine_parts(fresh)
        keys = parts.select(["ticker", "minute"]).cast(_KEYS)
        new_minutes = keys.join(held.minutes, ["ticker", "minute"], join_type="left anti")
        held_tickers = set(keys.join(held.minutes, ["ticker", "minute"], join_type="left semi").column("ticker").to_pylist())
        crowded = {t for t in pc.unique(parts.column("ticker")).to_pylist() if held.files.get(t, 0) + 1 >= COMPACT_AT_FILES}
        rewritten = held_tickers | crowded
        rows = parts
        if rewritten:
            mask = pc.is_in(parts.column("ticker"), pa.array(sorted(rewritten), pa.string()))
            stored = view.read([("date", "=", day), ("ticker", "in", sorted(rewritten))])
            stored = with_legacy_held(stored.select(TABLE_SCHEMA.names).cast(TABLE_SCHEMA),
                                      view.configuration.get(LEGACY_INCARNATION))
            rows = pa.concat_tables([parts.filter(pc.invert(mask)),
                                     combine_parts(pa.concat_tables([stored, parts.filter(mask)]))])
        written["state"] = (held, rows, new_minutes, rewritten)
        return self._commit_of(view, day, rows, rewritten)

    def _reread_for(self, parts: int) -> Reread:
        """How this writer reads trades again, for parts another writer cut elsewhere (`unheld_parts`)."""

        def reread(incarnation: str, partition: int, first: int, last: int) -> pa.Table:
            if self._reread is None:
                raise RuntimeError(f"{self.uri}: another writer holds part of a bar part, and no source to read its "
                                   "trades again was given")
            log.warning("%s: another writer holds part of some of %d bar parts: trades of partition %d at offsets "
                        "%d..%d are read again from the topic", self.uri, parts, partition, first, last)
            return self._reread(self._folder, incarnation, partition, first, last)

        return reread

    def _commit_of(self, view: TableView, day: date, rows: pa.Table, rewritten: set[str]) -> Commit:
        adds = self._put(rows.sort_by([("ticker", "ascending"), ("date", "ascending"), ("minute", "ascending")]))
        replacing = [("date", "=", day.isoformat()), ("ticker", "in", sorted(rewritten))] if rewritten else None
        return Commit(adds, {date_app_id(day): view.version(date_app_id(day)) + 1}, replacing)

    def tickers_on(self, day: date) -> set[str]:
        """The tickers whose bars of `day` the table holds."""
        return set(pc.unique(self._committer.read([("date", "=", day)], columns=["ticker"]).column("ticker")).to_pylist())

    def replace_day(self, day: date, trades: pa.Table, tickers: list[str], held: dict[int, int]) -> list[str]:
        """Replace `tickers`' partitions of `day` with the bars of `trades` (every trade of those ticker-days,
        read from the trades table), whose rows hold each Kafka partition `p` of this writer's incarnation
        through `held[p]` (the trades table holds all of its trades through there). A ticker whose rows hold
        more than that (the bars are ahead of the trades table) is left as it is; returns those tickers."""
        ahead: list[str] = []

        def prepare(view: TableView) -> Commit | None:
            entries = self._day(view, day).entries
            mine = entries.filter(pc.and_(pc.equal(entries.column("incarnation"), self._incarnation or ""),
                                          pc.is_in(entries.column("ticker"), pa.array(tickers, pa.string()))))
            limit = pc.fill_null(pc.index_in(mine.column("kafka_partition"), pa.array(list(held), pa.int32())), -1)
            through = pa.array([list(held.values())[i] if i >= 0 else -1 for i in limit.to_pylist()], pa.int64())
            ahead[:] = sorted(set(mine.filter(pc.greater(mine.column("offset"), through)).column("ticker").to_pylist()))
            replaced = sorted(set(tickers) - set(ahead))
            if not replaced:
                return None
            chosen = trades.filter(pc.is_in(trades.column("ticker"), pa.array(replaced, pa.string())))
            rows = fold_trades(chosen, self._incarnation or "") if chosen.num_rows else TABLE_SCHEMA.empty_table()
            rows = rows.set_column(rows.schema.get_field_index("held_through"), "held_through",
                                   _held_everywhere(self._incarnation, held, rows.num_rows))
            return self._commit_of(view, day, rows, set(replaced))

        self._committer.commit(prepare)
        self._days.pop(day, None)
        return ahead

    def rewrite(self, day: date, tickers: list[str]) -> int:
        """Write `tickers`' partitions of `day` again, each as one file with full statistics (compaction, and
        the repair of files written without them), in one commit; the files replaced."""
        replaced = {}

        def prepare(view: TableView) -> Commit | None:
            paths = [path for path in view.files([("date", "=", day), ("ticker", "in", tickers)])]
            if not paths:
                return None
            stored = view.read([("date", "=", day), ("ticker", "in", tickers)])
            rows = with_legacy_held(stored.select(TABLE_SCHEMA.names).cast(TABLE_SCHEMA),
                                    view.configuration.get(LEGACY_INCARNATION))
            replaced["files"] = len(paths)
            commit = self._commit_of(view, day, rows, set(pc.unique(rows.column("ticker")).to_pylist()) | set(tickers))
            return replace(commit, info={MAINTENANCE_COMMIT: "rewrite"})

        made = self._committer.commit(prepare)
        self._days.pop(day, None)
        return replaced.get("files", 0) if made is not None else 0

    def _put(self, rows: pa.Table) -> list[AddAction]:
        """`rows` (sorted by ticker, date and minute) written as one file per ticker and date."""
        files = [(ticker, day, rows.slice(start, count)) for (ticker, day), start, count in key_runs(rows, ["ticker", "date"])]
        # encoded and uploaded by several threads (Parquet encoding releases the GIL)
        shares = [files[i::FILE_WRITERS] for i in range(FILE_WRITERS)]
        return [add for share in self._files.map(self._put_files, shares) for add in share]

    def _put_files(self, files: list[tuple[str, object, pa.Table]]) -> list[AddAction]:
        return put_ticker_day_files(self._store, self._bucket, self._folder, files, self._committer.stats_columns,
                                    self._compression, "bars", DICTIONARY_COLUMNS)


def put_ticker_day_files(store: ObjectStore, bucket: str, folder: str, files: list[tuple[str, object, pa.Table]],
                         stats_columns: list[str], compression: str, name: str,
                         dictionary_columns: list[str] | bool = True) -> list[AddAction]:
    """Each `(ticker, date, rows)` of `files` uploaded as one Parquet file of a table partitioned by ticker and
    date (`folder` of `bucket`), with full statistics; the add actions of a commit that adds them.
    `dictionary_columns`: the column paths to dictionary-encode (True: all)."""
    objects, adds = {}, []
    stats = files_stats([chunk for _, _, chunk in files], stats_columns)
    for (ticker, day, chunk), stats_of_file in zip(files, stats):
        relative = object_key(partition_path([("ticker", ticker), ("date", day)]), f"{name}-{uuid.uuid4().hex}.parquet")
        data = _parquet(chunk.drop_columns(PARTITION_BY), compression, dictionary_columns)
        objects[object_key(folder, relative)] = data
        adds.append(AddAction(relative, len(data), {"ticker": ticker, "date": day.isoformat()},
                              int(time.time() * 1000), True, stats_of_file))
    store.put_many(bucket, objects)
    return adds


def _held_everywhere(incarnation: str | None, held: dict[int, int], rows: int) -> pa.Array:
    """For each of `rows` rows, `held_through` listing every partition of `held` (none without an incarnation)."""
    entries = [] if incarnation is None else [{"incarnation": incarnation, "kafka_partition": p, "offset": offset}
                                              for p, offset in sorted(held.items()) if offset >= 0]
    return pa.array([entries] * rows, schemas.HELD_THROUGH)


def stored_held(uri: str, storage_options: dict[str, str], day: date,
                sleep: Callable[[float], None] = time.sleep) -> pa.Table:
    """What the rows of one date hold (`marketstream.bars.held_entries`; empty without a table). Retried while
    the store is down."""

    def read() -> pa.Table:
        try:
            table = DeltaTable(uri, storage_options=storage_options)
        except TableNotFoundError:
            return held_entries(TABLE_SCHEMA.empty_table())
        if not table.file_uris(file_pruning_predicate=[("date", "=", day.isoformat())]):
            return held_entries(TABLE_SCHEMA.empty_table())  # nothing of that date: no scan to set up
        columns = [name for name in ("ticker", "minute", "last_offset", "held_through") if name in _names(table)]
        rows = table.to_pyarrow_table(filters=[("date", "=", day)], columns=columns)
        return held_entries(rows, table.metadata().configuration.get(LEGACY_INCARNATION))

    return retrying(f"reading what {uri} holds on {day}", read, sleep)


def _names(table: DeltaTable) -> list[str]:
    return [field.name for field in table.schema().fields]


def _parquet(table: pa.Table, compression: str, dictionary_columns: list[str] | bool) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, use_dictionary=dictionary_columns)
    return sink.getvalue().to_pybytes()


class _BarsPartition(StatefulSinkPartition[pa.Table, None]):
    """Writes each batch on a thread of its own, in the order the batches arrived, at most
    `MAX_PENDING_BATCHES` in flight; every snapshot waits for them."""

    def __init__(self, table: Callable[[str], BarsWriter]):
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
    """Writes `(folder, parts)` items (a batch of bar parts for the bars table in that folder of `bucket`; `""`
    is the bucket's root table) of trades of the topic whose incarnation is `topic_incarnation()`, which
    `reread` reads again where another writer holds part of a part. One sink partition per process writes
    every table; other processes and deployments may write the same tables."""

    def __init__(self, bucket: str, storage_options: dict[str, str], store: Callable[[], ObjectStore],
                 topic_incarnation: Callable[[], str], compression: str = "zstd", reread: TopicReread | None = None):
        self._bucket = bucket
        self._storage_options = storage_options
        self._store = store
        self._topic_incarnation = topic_incarnation
        self._compression = compression
        self._reread = reread
        self._incarnation: str | None = None
        self._tables: dict[str, BarsWriter] = {}

    def uri(self, folder: str) -> str:
        return f"s3://{self._bucket}/{folder}".rstrip("/")

    def _table(self, folder: str) -> BarsWriter:
        if folder not in self._tables:
            self._tables[folder] = BarsWriter(self.uri(folder), self._bucket, folder, self._storage_options,
                                              self._store(), self._incarnation, self._compression, reread=self._reread)
        return self._tables[folder]

    def list_parts(self) -> list[str]:
        self._store().ensure_bucket(self._bucket)  # before anything reads the tables
        return ["bars"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BarsPartition:
        if self._incarnation is None:
            self._incarnation = self._topic_incarnation()
        return _BarsPartition(self._table)
