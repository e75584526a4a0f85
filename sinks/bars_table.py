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

import pyarrow as pa
from deltalake import DeltaTable
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from marketstream import metrics, schemas
from marketstream.bars import Bar, bar_rows

log = logging.getLogger(__name__)

MAX_LOST_RACES = 20
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


def turns(parts: list[tuple[str, Bar]]) -> list[list[tuple[str, Bar]]]:
    """`parts` split so that no turn holds two parts of one (ticker, minute), each minute's parts in order."""
    rounds: list[list[tuple[str, Bar]]] = []
    seen: dict[tuple[str, int], int] = {}
    for ticker, bar in parts:
        turn = seen.get((ticker, bar.minute_us), -1) + 1
        seen[(ticker, bar.minute_us)] = turn
        if turn == len(rounds):
            rounds.append([])
        rounds[turn].append((ticker, bar))
    return rounds


def merge_parts(uri: str, storage_options: dict[str, str], parts: list[tuple[str, Bar]],
                sleep: Callable[[float], None] = time.sleep) -> int:
    """Fold `parts` ((ticker, Bar)) into the bars table at `uri` (created if missing); returns the parts
    folded in (the others were in already)."""
    folded = 0
    for turn in turns(parts):
        rows = bar_rows(turn)
        for attempt in range(MAX_LOST_RACES):
            table = _open(uri, storage_options)
            try:
                outcome = (table.merge(rows, predicate="t.ticker = s.ticker AND t.date = s.date AND t.minute = s.minute",
                                       source_alias="s", target_alias="t")
                           .when_matched_update(updates=FOLD, predicate="s.first_offset > t.last_offset")
                           .when_not_matched_insert_all().execute())
            except CommitFailedError as exc:
                log.info("%s: a bars merge lost a race (%s); trying again", uri, str(exc).splitlines()[0][:120])
                metrics.RETRIES.labels("delta").inc()
                sleep(min(0.1 * 2 ** attempt, 5.0))
                continue
            folded += int(outcome.get("num_target_rows_inserted", 0)) + int(outcome.get("num_target_rows_updated", 0))
            break
        else:
            raise RuntimeError(f"{uri}: a bars merge lost {MAX_LOST_RACES} races in a row")
    return folded


def stored_last_offsets(uri: str, storage_options: dict[str, str], ticker: str, day) -> dict[int, int]:
    """For one ticker and day, the last offset each stored minute holds (µs since the epoch -> offset)."""
    try:
        table = DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return {}
    rows = table.to_pyarrow_table(filters=[("ticker", "=", ticker), ("date", "=", day)],
                                  columns=["minute", "last_offset"])
    minutes = rows.column("minute").cast(pa.int64()).to_pylist()
    return dict(zip(minutes, rows.column("last_offset").to_pylist()))


class BarsSink(DynamicSink):
    """Writes `(key, (kind, Bar))` items, key `<table folder>|<ticker>`, into the bars tables of `bucket`
    (the folder `""` is the bucket's root table); each batch is merged before `write_batch` returns, so a
    recovery snapshot never runs ahead of what is stored."""

    def __init__(self, bucket: str, storage_options: dict[str, str], ensure_bucket: Callable[[str], None]):
        self._bucket = bucket
        self._storage_options = storage_options
        self._ensure_bucket = ensure_bucket

    def uri(self, folder: str) -> str:
        return f"s3://{self._bucket}/{folder}".rstrip("/")

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        self._ensure_bucket(self._bucket)
        sink = self

        class _Partition(StatelessSinkPartition):
            def write_batch(self, items) -> None:
                by_folder: dict[str, list[tuple[str, Bar]]] = {}
                for key, (_, bar) in items:
                    folder, ticker = key.split("|", 1)
                    by_folder.setdefault(folder, []).append((ticker, bar))
                for folder, parts in by_folder.items():
                    merge_parts(sink.uri(folder), sink._storage_options, parts)

        return _Partition()
