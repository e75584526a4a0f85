"""One-minute bars from the trades topic into the bars tables (`sinks.bars_table`): `dataflows.bars_consume`.

Trades go through the trades consumer's own decoder (`pipelines.consumer.decode`: the same validation and
NYSE-session rule; what it would dead-letter is dropped here, the trades consumer dead-letters it), are
keyed by table and ticker (synthetic trades to bars of their own), and folded into per-minute `Bar`s.

Late trades: each key's watermark is its newest event time minus `lateness`. A minute is closed, and its
bar emitted, once the watermark has passed its end; a trade for a minute already closed is emitted at once
as a **correction**: a one-trade part of that minute, which the bars table merges into the stored bar
(`Bar.merge` gives the same bar in any order). So every trade the trades table keeps ends in its bar,
however late. The watermark moves with event time only, never with the wall clock, so a replay of the same
trades closes the same minutes at the same trades. At the end of input every open minute is emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import partial
from typing import Literal

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from marketstream.bars import MINUTE_US, Bar, minute_of, to_datetime
from marketstream.calendar import exchange_date
from marketstream.datasets import STOCK
from marketstream.settings import Settings
from pipelines.connectors import shared_object_store, topic_source
from pipelines.consumer import PREFIX, SkipCounter, decode
from pipelines.runtime import build_or_exit
from sinks.bars_table import BarsSink, stored_last_offsets
from sources.kafka_topic import InFlight

Part = tuple[Literal["closed", "late"], Bar]
TradeRow = tuple[int, int, str, float, float]
"""(event time in µs, Kafka offset, trade id, price, size)."""

_NOTHING: tuple = ()


@dataclass
class BarsState:
    open: dict[int, Bar] = field(default_factory=dict)
    newest_us: int | None = None


StoredOffset = Callable[[str, int], int]
"""(key, minute in µs) -> the last offset the bars table holds for that minute (-1: none)."""


class BarBuilder(StatefulBatchLogic[tuple[str, list[TradeRow]], Part, BarsState]):
    """The bars of one key (table and ticker); its trades arrive in offset order. A trade the bars table
    already holds (`stored`: its offset is at or below its minute's stored last offset) is not folded
    again, so a flow that restarts and reads trades again emits only what is new."""

    def __init__(self, lateness: timedelta, state: BarsState | None = None, stored: StoredOffset | None = None):
        self._lateness_us = int(lateness / timedelta(microseconds=1))
        self._state = state if state is not None else BarsState()
        self._stored = stored

    def _watermark(self) -> int | None:
        newest = self._state.newest_us
        return None if newest is None else newest - self._lateness_us

    def fold(self, key: str, rows: list[TradeRow]) -> list[Part]:
        parts: list[Part] = []
        state = self._state
        for timestamp_us, offset, trade_id, price, size in rows:
            minute = minute_of(timestamp_us)
            if self._stored is not None:
                held = self._stored(key, minute)
                if offset <= held:
                    continue
                if minute in state.open and state.open[minute].first_offset <= held:
                    # restored from a snapshot older than the part that stored this bar: the table has it all
                    del state.open[minute]
            watermark = self._watermark()
            if minute not in state.open and watermark is not None and minute + MINUTE_US <= watermark:
                parts.append(("late", Bar.of_trade(timestamp_us, offset, trade_id, price, size)))
                continue
            bar = Bar.of_trade(timestamp_us, offset, trade_id, price, size)
            state.open[minute] = state.open[minute].merge(bar) if minute in state.open else bar
            if state.newest_us is None or timestamp_us > state.newest_us:
                state.newest_us = timestamp_us
                watermark = self._watermark()
                for closed in sorted(m for m in state.open if m + MINUTE_US <= watermark):
                    parts.append(("closed", state.open.pop(closed)))
        return parts

    def on_batch(self, values: list[tuple[str, list[TradeRow]]]):
        parts = [part for key, rows in values for part in self.fold(key, rows)]
        return parts, StatefulBatchLogic.RETAIN

    def on_eof(self):
        parts = [("closed", self._state.open.pop(minute)) for minute in sorted(self._state.open)]
        return parts, StatefulBatchLogic.RETAIN

    def snapshot(self) -> BarsState:
        return self._state


def trades_by_key(table: pa.Table, prefix_column: str | None) -> list[tuple[str, tuple[str, list[TradeRow]]]]:
    """Decoded trades (with `kafka_offset`) -> per `<prefix>|<ticker>`, (that key, its rows in offset order)."""
    names = ([prefix_column] if prefix_column else []) + ["ticker"]
    table = table.sort_by([(name, "ascending") for name in names] + [("kafka_offset", "ascending")])
    micros = pc.cast(table.column("timestamp"), pa.int64()).to_pylist()
    columns = [table.column(name).to_pylist() for name in ("kafka_offset", "trade_id", "price", "size")]
    prefixes = table.column(prefix_column).to_pylist() if prefix_column else [""] * table.num_rows
    tickers = table.column("ticker").to_pylist()
    keyed: dict[str, list[TradeRow]] = {}
    for i in range(table.num_rows):
        keyed.setdefault(f"{prefixes[i]}|{tickers[i]}", []).append(
            (micros[i], columns[0][i], columns[1][i], columns[2][i], columns[3][i]))
    return [(key, (key, rows)) for key, rows in keyed.items()]


class StoredBars:
    """What the bars tables hold, read once per ticker and day (`sinks.bars_table.stored_last_offsets`)."""

    def __init__(self, load: Callable[[str, str, date], dict[int, int]]):
        self._load = load
        self._known: dict[tuple[str, date], dict[int, int]] = {}

    def __call__(self, key: str, minute_us: int) -> int:
        folder, ticker = key.split("|", 1)
        day = exchange_date(to_datetime(minute_us))
        if (key, day) not in self._known:
            self._known[(key, day)] = self._load(folder, ticker, day)
        return self._known[(key, day)].get(minute_us, -1)


def build_bars_flow(settings: Settings, *, sink: Sink | None = None, source: Source | None = None,
                    stored: StoredOffset | None = None, topic: str = STOCK.topic) -> Dataflow:
    """Trades topic -> the trades consumer's decoder -> per table and ticker -> one-minute bar parts
    (`(key, ("closed" | "late", Bar))`) -> `sink` (default: the bars tables of `BARS_BUCKET`)."""
    if sink is None:
        settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
        options = settings.delta_storage_options()
        store = shared_object_store(settings)
        sink = BarsSink(settings.bars_bucket, options, lambda bucket: store().ensure_bucket(bucket))
        stored = stored or StoredBars(lambda folder, ticker, day: stored_last_offsets(
            sink.uri(folder), options, ticker, day))
    flow = Dataflow("bars_consume")
    in_flight = InFlight(settings.kafka_max_in_flight_messages)
    polls = op.input("kafka_in", flow, source or topic_source(settings, topic, in_flight))
    decoded = op.map("decode", polls, partial(decode, replace(STOCK, topic=topic), settings, SkipCounter("bars"),
                                              in_flight))
    keyed = op.flat_map("by_ticker", decoded,
                        lambda d: trades_by_key(d.rows, PREFIX if PREFIX in d.rows.column_names else None)
                        if d.rows is not None else [])
    lateness = timedelta(seconds=settings.bars_allowed_lateness_seconds)
    parts = op.stateful_batch("bars", keyed, lambda state: BarBuilder(lateness, state, stored))
    op.output("bars_out", parts, sink)
    return flow


def bars_dataflow() -> Dataflow:
    """What `dataflows.bars_consume.flow()` returns: the bars flow from the environment's settings, once
    the servers it needs answer."""
    return build_or_exit(build_bars_flow, ("kafka", "s3"))
