"""One-minute bars from the trades topic into the bars tables (`sinks.bars_table`): `dataflows.bars_consume`.

Trades go through the trades consumer's own decoder (`pipelines.consumer.decode`: the same validation and
NYSE-session rule; what it would dead-letter is dropped here, the trades consumer dead-letters it). Each
poll's trades are folded with Arrow into bar rows, one per table, ticker and minute (`minute_parts`;
synthetic trades to bars of their own): no Python object per trade or per bar.

Windows: Bytewax's `window` operator with a `TumblingWindower` of one UTC minute. It is keyed by table and
Kafka partition (a ticker's trades all come through one partition, in order), and each window holds the
bars of that minute of the partition's tickers, so the operator handles a few items per poll, not one per
ticker. `TradeTimeClock`: the watermark is the newest trade time seen minus `lateness`, and it moves on
with the wall clock while the partition is quiet, so the last minute before a pause closes `lateness`
after its end instead of waiting for the next trade. A window's bars are emitted when it closes.

Late trades: bar rows older than the watermark are Bytewax's "late" items; they are emitted at once as
**corrections** of their minute, which the bars table folds into the stored bar (`Bar.merge` gives the
same bar in any order and split). So every trade the trades table keeps ends in its bar, however late; the
trades that came late are counted (`marketstream_bars_late_trades`). At the end of input every open
minute is emitted.

Restarts: a flow that reads trades again (from the topic's start without recovery, from its snapshot with
it) folds only the trades its bars table lacks (`StoredBars`: a trade whose offset is at or below its
minute's stored last offset is in), and bars of a minute restored open from a snapshot older than the
part that stored them are dropped. Bar rows are gathered per table for `BATCH_MAX_AGE_SECONDS` or until
the process holds `BARS_BATCH_MAX_PARTS` of them, then written (`sinks.bars_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from functools import partial
from typing import Any

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators.windowing import Clock, ClockLogic, TumblingWindower, WindowLogic, window
from bytewax.outputs import Sink

from marketstream import metrics
from marketstream.batching import BufferBudget, TableBatcher
from marketstream.bars import combine_parts, to_datetime, trade_parts, unheld_parts
from marketstream.datasets import STOCK
from marketstream.runs import key_runs
from marketstream.settings import Settings
from pipelines.connectors import shared_object_store, topic_source
from pipelines.consumer import PREFIX, Decoded, SkipCounter, decode
from pipelines.runtime import build_or_exit
from sinks.bars_table import BarsSink, stored_minutes
from sources.kafka_topic import InFlight

MinuteParts = tuple[str, int, pa.Table]
"""(`<table folder>|<Kafka partition>`, the newest trade time in µs, bar rows of one minute: a part per ticker)."""
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StoredBars:
    """What the bars tables held when this process first looked at a table and date: per ticker and
    minute, the last Kafka offset folded in (`held`). Read once per table folder and date (`load(folder,
    day)` -> ticker, minute in µs, held). Looking late is harmless: a ticker's trades arrive in offset order,
    so trades read after this process stored some of them are newer than all it stored, and a table and date
    read again after `keep` others is simply read again."""

    def __init__(self, load: Callable[[str, date], pa.Table], keep: int = 8):
        self._load = load
        self._keep = keep
        self._tables: dict[tuple[str, date], tuple[pa.Table, pa.Table]] = {}

    def _table(self, folder: str, day: date) -> tuple[pa.Table, pa.Table]:
        """(held per ticker and minute, newest held per ticker)."""
        if (folder, day) not in self._tables:
            if len(self._tables) >= self._keep:  # a long-running process moves on to new days
                del self._tables[next(iter(self._tables))]
            table = self._load(folder, day).select(["ticker", "minute", "held"])
            newest = table.group_by("ticker").aggregate([("held", "max")]).rename_columns(["ticker", "newest_held"])
            self._tables[(folder, day)] = (table, newest)
        return self._tables[(folder, day)]

    def _days(self, rows: pa.Table) -> list[date]:
        return pc.unique(rows.column("date")).to_pylist()

    def unstored(self, folder: str, trades: pa.Table) -> pa.Table:
        """`trades` of one folder (`ticker`, `date`, `timestamp`, `kafka_offset`) without those stored."""
        kept = []
        for day in self._days(trades):
            held, newest = self._table(folder, day)
            rows = trades.filter(pc.equal(trades.column("date"), pa.scalar(day, pa.date32())))
            if held.num_rows:
                # most trades are newer than all their ticker holds: only the others are looked up by minute
                rows = rows.join(newest, "ticker", join_type="left outer")
                older = pc.fill_null(pc.less_equal(rows.column("kafka_offset"), rows.column("newest_held")), False)
                doubtful = rows.filter(older).drop_columns(["newest_held"])
                rows = rows.filter(pc.invert(older)).drop_columns(["newest_held"])
                if doubtful.num_rows:
                    minute = pc.cast(pc.floor_temporal(doubtful.column("timestamp"), unit="minute"), pa.int64())
                    doubtful = doubtful.append_column("minute", minute).join(held, ["ticker", "minute"],
                                                                             join_type="left outer")
                    lacking = pc.fill_null(pc.greater(doubtful.column("kafka_offset"), doubtful.column("held")), True)
                    rows = pa.concat_tables([rows, doubtful.filter(lacking).select(rows.column_names).cast(rows.schema)])
            kept.append(rows.cast(trades.schema))
        return pa.concat_tables(kept) if kept else trades

    def not_held(self, folder: str, bars: pa.Table) -> pa.Table:
        """Rows of the bars table whose trades the table does not hold (all held: `held >= first_offset`)."""
        kept = []
        for day in self._days(bars):
            held, _ = self._table(folder, day)
            stored = pa.table({"ticker": held.column("ticker"), "date": pa.repeat(pa.scalar(day, pa.date32()), held.num_rows),
                               "minute": pc.cast(held.column("minute"), bars.schema.field("minute").type),
                               "last_offset": held.column("held")})
            kept.append(unheld_parts(stored, bars.filter(pc.equal(bars.column("date"), pa.scalar(day, pa.date32())))))
        return pa.concat_tables(kept) if kept else bars


def minute_parts(decoded: Decoded, stored: StoredBars | None = None) -> list[tuple[str, MinuteParts]]:
    """One poll's decoded trades -> per table folder and minute, the bar rows of its tickers, keyed
    `<folder>|<Kafka partition>`; trades `stored` holds are left out."""
    trades = decoded.rows
    if PREFIX not in trades.column_names:
        trades = trades.append_column(PREFIX, pa.repeat(pa.scalar("", pa.string()), trades.num_rows))
    trades = trades.select([PREFIX, "ticker", "date", "timestamp", "kafka_offset", "price", "size"])
    if stored is not None:
        folders = pc.unique(trades.column(PREFIX)).to_pylist()
        trades = pa.concat_tables([stored.unstored(folder, trades.filter(pc.equal(trades.column(PREFIX), folder)))
                                   for folder in folders])
        if not trades.num_rows:
            return []
    parts = trade_parts(trades, [PREFIX])
    # one item per run of one folder and minute
    parts = parts.sort_by([(PREFIX, "ascending"), ("minute", "ascending")])
    items = []
    for (folder, _), start, count in key_runs(parts, [PREFIX, "minute"]):
        run = parts.slice(start, count)
        key = f"{folder}|{decoded.kafka_partition}"
        latest = pc.max(pc.cast(run.column("close_ts"), pa.int64())).as_py()
        items.append((key, (key, latest, run.drop_columns([PREFIX]))))
    return items


@dataclass
class TradeTimeState:
    newest: datetime
    """The newest trade time seen, minus the lateness: the watermark when it was seen."""
    seen_at: datetime
    """The wall time it was seen at."""


class _TradeTimeClockLogic(ClockLogic[MinuteParts, TradeTimeState | None]):
    def __init__(self, lateness: timedelta, now: Callable[[], datetime], state: TradeTimeState | None):
        self._lateness = lateness
        self._now_getter = now
        self._state = state
        self._now = now()

    def before_batch(self) -> None:
        self._now = max(self._now, self._now_getter())

    def _watermark(self) -> datetime:
        if self._state is None:
            return datetime.min.replace(tzinfo=timezone.utc)
        return self._state.newest + max(self._now - self._state.seen_at, timedelta(0))

    def on_item(self, value: MinuteParts) -> tuple[datetime, datetime]:
        timestamp = to_datetime(value[1])
        base = timestamp - self._lateness
        if base > self._watermark():
            self._state = TradeTimeState(base, self._now)
        return timestamp, self._watermark()

    def on_notify(self) -> datetime:
        self.before_batch()
        return self._watermark()

    def on_eof(self) -> datetime:
        return datetime.max.replace(tzinfo=timezone.utc)

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        if self._state is None:
            return None
        return self._state.seen_at + (timestamp - self._state.newest)

    def snapshot(self) -> TradeTimeState | None:
        return self._state


@dataclass
class TradeTimeClock(Clock[MinuteParts, TradeTimeState | None]):
    """Bytewax's event clock, waking up when a quiet partition's watermark reaches a window's end: the
    watermark is the newest trade time minus `lateness`, plus the wall time since that trade was seen."""

    lateness: timedelta
    now: Callable[[], datetime] = _utc_now

    def build(self, resume_state: TradeTimeState | None) -> _TradeTimeClockLogic:
        return _TradeTimeClockLogic(self.lateness, self.now, resume_state)


class MinuteBars(WindowLogic[MinuteParts, MinuteParts, tuple[str, list[pa.Table]] | None]):
    """The bars of one key's minute: the parts received, merged (`combine_parts`) when the window closes."""

    def __init__(self, state: tuple[str, list[pa.Table]] | None):
        self._key, self._parts = state if state is not None else ("", [])

    def on_value(self, value: MinuteParts) -> tuple:
        self._key = value[0]
        self._parts.append(value[2])
        return ()

    def on_merge(self, original: Any) -> tuple:
        raise NotImplementedError("tumbling windows never merge")

    def on_close(self) -> tuple:
        if not self._parts:
            return ()
        parts = self._parts[0] if len(self._parts) == 1 else combine_parts(pa.concat_tables(self._parts))
        return ((self._key, 0, parts),) if parts.num_rows else ()

    def snapshot(self) -> tuple[str, list[pa.Table]]:
        return self._key, list(self._parts)


def restored_minute(stored: StoredBars | None, state: tuple[str, list[pa.Table]] | None) -> MinuteBars:
    """A window's logic; restored from a snapshot, the bars its minute holds that the table holds already
    (stored after the snapshot) are dropped: folding newer trades into them would make the table skip them."""
    if state is not None and stored is not None and state[1]:
        folder = state[0].rsplit("|", 1)[0]
        state = (state[0], [stored.not_held(folder, combine_parts(pa.concat_tables(state[1])))])
    return MinuteBars(state)


def _count_late(item: tuple[str, tuple[int, MinuteParts]]) -> tuple[str, tuple[int, MinuteParts]]:
    _, (_, (key, _, parts)) = item
    metrics.BARS_LATE_TRADES.labels(key.rsplit("|", 1)[0] or "/").inc(pc.sum(parts.column("trades")).as_py() or 0)
    return item


def _by_table(item: tuple[str, tuple[int, MinuteParts]]) -> tuple[str, pa.Table]:
    _, (_, (key, _, parts)) = item
    return key.rsplit("|", 1)[0], parts


MINUTE = timedelta(minutes=1)


def build_bars_flow(settings: Settings, *, sink: Sink | None = None, source: Source | None = None,
                    stored: StoredBars | None = None, topic: str = STOCK.topic,
                    now: Callable[[], datetime] = _utc_now) -> Dataflow:
    """Trades topic -> the trades consumer's decoder -> bar rows per poll, table and minute -> one-minute
    windows per table and Kafka partition (closed windows and late rows alike) -> gathered per table folder:
    `(folder, (folder, bar rows))` -> `sink` (default: the bars tables of `BARS_BUCKET`)."""
    if sink is None:
        settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
        options = settings.delta_storage_options()
        store = shared_object_store(settings)
        sink = BarsSink(settings.bars_bucket, options, store, settings.parquet_compression)
        stored = stored or StoredBars(lambda folder, day: stored_minutes(sink.uri(folder), options, day))
    flow = Dataflow("bars_consume")
    in_flight = InFlight(settings.kafka_max_in_flight_messages)
    polls = op.input("kafka_in", flow, source or topic_source(settings, topic, in_flight))
    decoded = op.map("decode", polls, partial(decode, replace(STOCK, topic=topic), settings, SkipCounter("bars"),
                                              in_flight))
    parts = op.flat_map("minute_parts", decoded, lambda d: minute_parts(d, stored) if d.rows is not None else [])
    windows = window("minutes", parts, TradeTimeClock(timedelta(seconds=settings.bars_allowed_lateness_seconds), now),
                     TumblingWindower(length=MINUTE, align_to=EPOCH), partial(restored_minute, stored),
                     ordered=False)
    closed = op.map("closed", windows.down, _by_table)
    late = op.map("late", op.map("count_late", windows.late, _count_late), _by_table)
    batcher = partial(TableBatcher, timedelta(seconds=settings.batch_max_age_seconds), BufferBudget(settings.bars_batch_max_parts),
                      now=now)
    batches = op.stateful_batch("batches", op.merge("parts", closed, late), batcher)
    # the sink partition is given values only: each carries its folder
    op.output("bars_out", op.map("with_folder", batches, lambda batch: (batch[0], batch)), sink)
    return flow


def bars_dataflow() -> Dataflow:
    """What `dataflows.bars_consume.flow()` returns: the bars flow from the environment's settings, once
    the servers it needs answer."""
    return build_or_exit(build_bars_flow, ("kafka", "s3"))
