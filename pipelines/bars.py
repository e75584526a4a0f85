"""One-minute bars from the trades topic into the bars tables (`sinks.bars_table`): `dataflows.bars_consume`.

Trades go through the trades consumer's own decoder (`pipelines.consumer.decode`: the same validation and
NYSE-session rule; what it would dead-letter is dropped here, the trades consumer dead-letters it). Each
poll's trades are folded with Arrow into bar rows, one per table, ticker and minute (`minute_parts`;
synthetic trades to bars of their own): no Python object per trade or per bar. Each row holds its Kafka
partition through its last trade (`held_through`, with the topic's incarnation).

Windows: Bytewax's `window` operator with a `TumblingWindower` of one UTC minute. It is keyed by table and
Kafka partition (a ticker's trades all come through one partition, in order), and each window holds the
bars of that minute of the partition's tickers, so the operator handles a few items per poll, not one per
ticker. `TradeTimeClock`: the watermark is the newest trade time seen minus `lateness`, and it moves on
with the wall clock while the partition is quiet, so the last minute before a pause closes `lateness`
after its end instead of waiting for the next trade. A window's bars are emitted when it closes.

Late trades: bar rows of a minute whose window has closed are Bytewax's "late" items (a row older than the
watermark whose window is still open goes into it: `_TradeTimeClockLogic`); they are emitted at once, after
their window's bars, as **corrections** of their minute, which the bars table folds into the stored bar
(`Bar.merge` gives the same bar in any order and split). So every trade the trades table keeps ends in its bar, however late; the
trades that came late are counted (`marketstream_bars_late_trades`). At the end of input every open
minute is emitted.

Exactly once: the bars table's writer leaves out what its rows hold, whoever folded it in, and folds again
from the topic (`TopicRange`) the trades of a part another writer cut elsewhere, so replays, restarts and
other deployments fold nothing twice. A flow that reads trades again also leaves out early the trades its
tables held when it first looked at each table and date (`StoredBars`), and so does a window restored from a
snapshot. The flow reads the topic from its earliest offset when it has no recovery state, whatever
`KAFKA_STARTING_OFFSET` says: a writer that skipped trades would fold later ones into minutes whose earlier
ones it never saw. Bar rows are gathered per table for `BATCH_MAX_AGE_SECONDS` or until the process holds
`BARS_BATCH_MAX_PARTS` of them, then written.
"""

from __future__ import annotations

import logging
import time
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

from marketstream import metrics, preflight
from marketstream.batching import BufferBudget, TableBatcher
from marketstream.bars import MINUTE_US, combine_parts, minute_of, split_by_held, to_datetime, trade_parts, unheld_trades
from marketstream.datasets import BARS_TABLES, STOCK, lake_tables
from marketstream.kafka_cluster import read_partition
from marketstream.memory import keep_pyarrow_from_loading_pandas
from marketstream.runs import key_runs
from marketstream.schemas import TIMESTAMP
from marketstream.settings import Settings
from pipelines.connectors import shared_object_store, topic_source
from pipelines.consumer import Decoded, SkipCounter, SkipSummary, decode, start_preparing
from pipelines.runtime import build_or_exit
from sinks.bars_table import PARTITION_BY, TABLE_SCHEMA, BarsSink, stored_held
from sinks.files import PREFIX_COLUMN, by_prefix
from sources.kafka_topic import InFlight, PolledMessages

log = logging.getLogger(__name__)

MinuteParts = tuple[str, int, pa.Table]
"""(`<table folder>|<Kafka partition>`, the newest trade time in µs, bar rows of one minute: a part per ticker)."""
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TRADE_COLUMNS = ["ticker", "date", "timestamp", "kafka_partition", "kafka_offset", "price", "size"]
TRADES = pa.schema([pa.field("ticker", pa.string()), pa.field("date", pa.date32()), pa.field("timestamp", TIMESTAMP),
                    pa.field("kafka_partition", pa.int32()), pa.field("kafka_offset", pa.int64()),
                    pa.field("price", pa.float64()), pa.field("size", pa.float64())])


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StoredBars:
    """What the bars tables held when this process first looked at a table and date (`load(folder, day)` ->
    `marketstream.bars.held_entries`), to leave out early the trades they hold. Read once per table folder and
    date: looking late is harmless, since the table's writer leaves out whatever the table holds when it
    commits; a table and date read again after `keep` others is simply read again."""

    def __init__(self, load: Callable[[str, date], pa.Table], keep: int = 8):
        self._load = load
        self._keep = keep
        self._held: dict[tuple[str, date], pa.Table] = {}

    def _entries(self, folder: str, day: date) -> pa.Table:
        if (folder, day) not in self._held:
            if len(self._held) >= self._keep:  # a long-running process moves on to new days
                del self._held[next(iter(self._held))]
            self._held[(folder, day)] = self._load(folder, day)
        return self._held[(folder, day)]

    def _by_day(self, rows: pa.Table):
        for day in pc.unique(rows.column("date")).to_pylist():
            yield day, rows.filter(pc.equal(rows.column("date"), pa.scalar(day, pa.date32())))

    def unstored(self, folder: str, trades: pa.Table, incarnation: str) -> pa.Table:
        """`trades` of one folder (`TRADE_COLUMNS`) of topic incarnation `incarnation` without those stored."""
        kept = [unheld_trades(self._entries(folder, day), rows, incarnation) for day, rows in self._by_day(trades)]
        return pa.concat_tables(kept) if kept else trades

    def not_held(self, folder: str, parts: pa.Table) -> pa.Table:
        """The bar rows `parts` (as the stream makes them) of which the table does not hold every trade."""
        kept = []
        for day, rows in self._by_day(parts):
            unheld, partly = split_by_held(self._entries(folder, day), rows)
            kept += [unheld, partly.drop_columns(["held"])]
        return pa.concat_tables(kept) if kept else parts


def minute_parts(decoded: Decoded, stored: StoredBars | None = None) -> list[tuple[str, MinuteParts]]:
    """One poll's decoded trades -> per table folder and minute, the bar rows of its tickers, keyed
    `<folder>|<Kafka partition>`; trades `stored` holds are left out."""
    trades = decoded.rows
    if PREFIX_COLUMN not in trades.column_names:
        trades = trades.append_column(PREFIX_COLUMN, pa.repeat(pa.scalar("", pa.string()), trades.num_rows))
    trades = trades.select([PREFIX_COLUMN, *TRADE_COLUMNS])
    if stored is not None:
        trades = pa.concat_tables([stored.unstored(folder, rows, decoded.incarnation)
                                   for folder, rows in by_prefix(trades)])
        if not trades.num_rows:
            return []
    parts = trade_parts(trades, decoded.incarnation, [PREFIX_COLUMN])
    # one item per run of one folder and minute
    parts = parts.sort_by([(PREFIX_COLUMN, "ascending"), ("minute", "ascending")])
    items = []
    for (folder, _), start, count in key_runs(parts, [PREFIX_COLUMN, "minute"]):
        run = parts.slice(start, count)
        key = f"{folder}|{decoded.kafka_partition}"
        latest = pc.max(pc.cast(run.column("close_ts"), pa.int64())).as_py()
        items.append((key, (key, latest, run.drop_columns([PREFIX_COLUMN]))))
    return items


@dataclass
class TradeTimeState:
    newest: datetime
    """The newest trade time seen, minus the lateness: the watermark when it was seen."""
    seen_at: datetime
    """The wall time it was seen at."""


class _TradeTimeClockLogic(ClockLogic[MinuteParts, TradeTimeState | None]):
    """Bytewax's window operator calls an item late when its timestamp is below the watermark the clock
    gives for it, and closes windows only at the end of a batch or at a notification. A part late while its
    minute's window were still open would reach the bars table before that window's bars, and the table
    would take the window's bars for trades it holds (a row holds every trade of its minute through its
    offset). So each part stands at the last microsecond of its minute, and items are judged against the
    watermark the windows were last closed at (`_closed_at`): a part is late exactly when its minute's
    window was closed, and so emitted, before it. A watermark moved on by a batch closes windows at the
    notification that follows at once (`notify_at` is then in the past)."""

    def __init__(self, lateness: timedelta, now: Callable[[], datetime], state: TradeTimeState | None):
        self._lateness = lateness
        self._now_getter = now
        self._state = state
        self._now = now()
        self._closed_at = datetime.min.replace(tzinfo=timezone.utc)

    def before_batch(self) -> None:
        self._now = max(self._now, self._now_getter())

    def _watermark(self) -> datetime:
        if self._state is None:
            return datetime.min.replace(tzinfo=timezone.utc)
        return self._state.newest + max(self._now - self._state.seen_at, timedelta(0))

    def on_item(self, value: MinuteParts) -> tuple[datetime, datetime]:
        base = to_datetime(value[1]) - self._lateness
        if base > self._watermark():
            self._state = TradeTimeState(base, self._now)
        return to_datetime(minute_of(value[1]) + MINUTE_US - 1), self._closed_at

    def on_notify(self) -> datetime:
        self.before_batch()
        self._closed_at = max(self._closed_at, self._watermark())
        return self._closed_at

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
    """A window's logic; restored from a snapshot, the bars of its minute whose trades the table holds already
    (stored after the snapshot) are dropped: folding them again would count them twice."""
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


class TopicRange:
    """Trades of one Kafka partition's offset range read again from the topic, decoded and kept as the trades
    consumer keeps them: what the bars writer folds when another writer cut a minute elsewhere (rare: only
    with several deployments). Raises when the topic is another incarnation than asked, when the trades asked
    for are past its retention, or when it cannot be read."""

    def __init__(self, settings: Settings, topic: str, timeout: float = 60.0):
        self._settings = settings
        self._dataset = replace(STOCK, topic=topic)
        self._timeout = timeout

    def __call__(self, folder: str, incarnation: str, partition: int, first: int, last: int) -> pa.Table:
        from confluent_kafka import Consumer, TopicPartition

        topic = self._dataset.topic
        current = self._settings.kafka_cluster().topic_incarnation(topic)
        if current != incarnation:
            raise RuntimeError(f"the trades of {topic} partition {partition} at offsets {first}..{last} are gone: "
                               f"the topic is incarnation {current} now, not {incarnation}")
        consumer = Consumer({**self._settings.kafka_client_config(), "group.id": "marketstream-bars-reread",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        batch = PolledMessages(topic, partition, incarnation=incarnation)
        try:
            for message in read_partition(consumer, topic, partition, first, last + 1,
                                          give_up_at=time.monotonic() + self._timeout):
                batch.offsets.append(message.offset())
                batch.keys.append(message.key())
                batch.values.append(message.value())
            low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self._timeout)
        except TimeoutError:
            raise RuntimeError(f"reading {topic} partition {partition} at offsets {first}..{last} again got no "
                               f"answer for {self._timeout:g} s (KAFKA_BOOTSTRAP_SERVERS)") from None
        finally:
            consumer.close()
        if low > first:  # asked after reading: retention may have removed some while they were read
            raise RuntimeError(f"the trades of {topic} partition {partition} at offsets {first}..{low - 1} are "
                               "past the topic's retention: run `marketstream rebuild-bars` for the days concerned")
        in_flight = InFlight(len(batch) + 1)
        in_flight.add(len(batch))
        decoded = decode(self._dataset, self._settings, SkipCounter("bars_reread"), in_flight, batch)
        if decoded.rows is None:
            return TRADES.empty_table()
        rows = decoded.rows
        if PREFIX_COLUMN in rows.column_names:
            rows = rows.filter(pc.equal(rows.column(PREFIX_COLUMN), folder))
        elif folder:
            rows = rows.slice(0, 0)
        return rows.select(TRADE_COLUMNS).cast(TRADES)


def build_bars_flow(settings: Settings, *, sink: Sink | None = None, source: Source | None = None,
                    stored: StoredBars | None = None, topic: str = STOCK.topic,
                    now: Callable[[], datetime] = _utc_now) -> Dataflow:
    """Trades topic -> the trades consumer's decoder -> trades per poll, table and minute -> one-minute
    windows per table and Kafka partition (closed windows and late trades alike) -> gathered per table folder:
    `(folder, (folder, trades))` -> `sink` (default: the bars tables of `BARS_BUCKET`)."""
    if settings.kafka_starting_offset != "earliest":
        log.info("bars_consume reads %s from its earliest offset when it has no recovery state "
                 "(KAFKA_STARTING_OFFSET=%s is not for bars)", topic, settings.kafka_starting_offset)
        settings = settings.model_copy(update={"kafka_starting_offset": "earliest"})
    if sink is None:
        settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
        options = settings.delta_storage_options()
        store = shared_object_store(settings)
        incarnation = partial(settings.kafka_cluster().topic_incarnation, topic)
        sink = BarsSink(settings.bars_bucket, options, store, incarnation, settings.parquet_compression,
                        reread=TopicRange(settings, topic))
        stored = stored or StoredBars(lambda folder, day: stored_held(sink.uri(folder), options, day))
    keep_pyarrow_from_loading_pandas()
    start_preparing(STOCK)
    flow = Dataflow("bars_consume")
    in_flight = InFlight(settings.kafka_max_in_flight_messages)
    polls = op.input("kafka_in", flow, source or topic_source(settings, topic, in_flight))
    skipped = SkipCounter("bars")
    decoded = op.map("decode", polls, partial(decode, replace(STOCK, topic=topic), settings, skipped, in_flight))
    op.output("skip_summary", decoded, SkipSummary(skipped))
    parts = op.flat_map("minute_parts", decoded, lambda d: minute_parts(d, stored) if d.rows is not None else [])
    windows = window("minutes", parts, TradeTimeClock(timedelta(seconds=settings.bars_allowed_lateness_seconds), now),
                     TumblingWindower(length=MINUTE, align_to=EPOCH), partial(restored_minute, stored),
                     ordered=False)
    closed = op.map("closed", windows.down, _by_table)
    late = op.map("late", op.map("count_late", windows.late, _count_late), _by_table)
    batcher = partial(TableBatcher, timedelta(seconds=settings.batch_max_age_seconds),
                      BufferBudget(settings.bars_batch_max_parts), now=now)
    batches = op.stateful_batch("batches", op.merge("parts", closed, late), batcher)
    # the sink partition is given values only: each carries its folder
    op.output("bars_out", op.map("with_folder", batches, lambda batch: (batch[0], batch)), sink)
    return flow


BARS_NEEDS = ("kafka", preflight.delta_tables_of(
    lambda settings: [lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket)[name] for name in BARS_TABLES],
    TABLE_SCHEMA, PARTITION_BY, "a bars table", "BARS_BUCKET"))
"""What the bars flow waits for and checks before it starts (`marketstream.preflight`)."""


def bars_dataflow() -> Dataflow:
    """What `dataflows.bars_consume.flow()` returns: the bars flow from the environment's settings, once
    the servers it needs answer."""
    return build_or_exit(build_bars_flow, BARS_NEEDS)
