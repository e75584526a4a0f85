"""One-minute OHLCV bars of trades: the state of one ticker's minute, which can be built from trades in any
order and merged with another part of the same minute in any order, always giving the same bar.

Open and close are the first and last trade by event time, ties broken by Kafka offset (then by trade id,
for trades that never came through Kafka). That order is total, so `merge` is associative and commutative:
a bar built live, rebuilt after a crash from a different split of its trades, or corrected by a late trade
ends up the same. Volume and trade count are sums; VWAP is sum(price × size) / sum(size), kept as its two
sums so that merging stays exact up to floating-point addition order.

Minutes are UTC minutes of the event time (a trade at 14:30:59.999 belongs to 14:30).

The same fold in Arrow, for the stream: `trade_parts` folds trades into rows of the bars table, one per
ticker and minute (and any further group column), and `combine_parts` merges rows of one minute as
`Bar.merge` does; no Python object per trade or per bar. `unheld_parts` tells the parts a stored row holds
already, so that folding the same parts in again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from marketstream.runs import key_changes

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MINUTE_US = 60_000_000

OrderKey = tuple[int, int, str]
"""(event time in µs since the epoch, Kafka offset, trade id): the order of trades within a minute."""


def minute_of(timestamp_us: int) -> int:
    """The start of the UTC minute holding `timestamp_us`, in µs since the epoch."""
    return timestamp_us - timestamp_us % MINUTE_US


def to_datetime(timestamp_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=timestamp_us)


@dataclass(frozen=True, slots=True)
class Bar:
    minute_us: int
    open_key: OrderKey
    open: float
    close_key: OrderKey
    close: float
    high: float
    low: float
    volume: float
    trades: int
    notional: float
    """sum(price × size): VWAP's numerator."""
    first_offset: int
    last_offset: int
    """The lowest and highest Kafka offsets folded in. The trades of one ticker arrive in offset order and
    each part of a minute holds trades that arrived after those of the parts before it, so a part whose
    first offset is at or below the stored bar's last offset has been folded in already."""

    @staticmethod
    def of_trade(timestamp_us: int, offset: int, trade_id: str, price: float, size: float) -> Bar:
        key = (timestamp_us, offset, trade_id)
        return Bar(minute_of(timestamp_us), key, price, key, price, price, price, size, 1, price * size, offset, offset)

    def merge(self, other: Bar) -> Bar:
        """This minute's bar over the trades of both; both must be of the same minute."""
        if other.minute_us != self.minute_us:
            raise ValueError(f"bars of different minutes: {self.minute_us} and {other.minute_us}")
        first = self if self.open_key <= other.open_key else other
        last = self if self.close_key >= other.close_key else other
        return Bar(self.minute_us, first.open_key, first.open, last.close_key, last.close,
                   max(self.high, other.high), min(self.low, other.low), self.volume + other.volume,
                   self.trades + other.trades, self.notional + other.notional, min(self.first_offset, other.first_offset),
                   max(self.last_offset, other.last_offset))

    def add(self, timestamp_us: int, offset: int, trade_id: str, price: float, size: float) -> Bar:
        return self.merge(Bar.of_trade(timestamp_us, offset, trade_id, price, size))

    @property
    def vwap(self) -> float:
        return self.notional / self.volume if self.volume else self.close

    @property
    def minute(self) -> datetime:
        return to_datetime(self.minute_us)


def bar_rows(bars: list[tuple[str, Bar]]) -> pa.Table:
    """(ticker, bar) pairs as rows of the bars table (`marketstream.schemas.BARS` and its partitioning)."""
    from marketstream import schemas
    from marketstream.calendar import exchange_date

    columns: dict[str, list] = {name: [] for name in (*schemas.BARS_PARTITIONING.names, *schemas.BARS.names)}
    for ticker, bar in bars:
        values = {"ticker": ticker, "date": exchange_date(bar.minute), "minute": bar.minute, "open": bar.open,
                  "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume, "trades": bar.trades,
                  "vwap": bar.vwap, "notional": bar.notional, "open_ts": to_datetime(bar.open_key[0]),
                  "open_offset": bar.open_key[1], "close_ts": to_datetime(bar.close_key[0]),
                  "close_offset": bar.close_key[1], "first_offset": bar.first_offset, "last_offset": bar.last_offset}
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS]))


_BAR_KEYS = ["ticker", "date", "minute"]
_SUMS = [("high", "max"), ("low", "min"), ("volume", "sum"), ("trades", "sum"), ("notional", "sum"),
         ("first_offset", "min"), ("last_offset", "max")]


def _bars_table(columns: dict[str, pa.Array], extra: list[str]) -> pa.Table:
    from marketstream import schemas

    columns["vwap"] = pc.divide(columns["notional"], columns["volume"])
    schema = pa.schema([*(pa.field(name, columns[name].type) for name in extra), *schemas.BARS_PARTITIONING,
                        *schemas.BARS])
    return pa.table([columns[field.name].cast(field.type) for field in schema], schema=schema)


def trade_parts(trades: pa.Table, extra: list[str] = ()) -> pa.Table:
    """Trades (`ticker`, `date`, `timestamp`, `kafka_offset`, `price`, `size`, and the `extra` columns) ->
    one row of the bars table per `extra` columns, ticker, date and minute, `extra` columns first."""
    extra = list(extra)
    minute = pc.floor_temporal(trades.column("timestamp"), unit="minute")
    table = pa.table({**{name: trades.column(name) for name in extra}, "ticker": trades.column("ticker"),
                      "date": trades.column("date"), "minute": minute, "ts": trades.column("timestamp"),
                      "offset": trades.column("kafka_offset"), "price": trades.column("price"),
                      "size": trades.column("size"),
                      "notional": pc.multiply(trades.column("price"), trades.column("size"))})
    keys = [*extra, *_BAR_KEYS]
    # in trade order within each group, so that its first and last rows are the open and close trades
    table = table.sort_by([(name, "ascending") for name in [*keys, "ts", "offset"]])
    groups = table.group_by(keys, use_threads=False).aggregate([
        ("price", "first"), ("ts", "first"), ("offset", "first"), ("price", "last"), ("ts", "last"), ("offset", "last"),
        ("price", "max"), ("price", "min"), ("size", "sum"), ("ts", "count"), ("notional", "sum"),
        ("offset", "min"), ("offset", "max")])
    names = {"price_first": "open", "ts_first": "open_ts", "offset_first": "open_offset", "price_last": "close",
             "ts_last": "close_ts", "offset_last": "close_offset", "price_max": "high", "price_min": "low",
             "size_sum": "volume", "ts_count": "trades", "notional_sum": "notional", "offset_min": "first_offset",
             "offset_max": "last_offset"}
    return _bars_table({names.get(name, name): groups.column(name) for name in groups.column_names}, extra)


def combine_parts(parts: pa.Table) -> pa.Table:
    """Rows of the bars table with the same ticker, date and minute merged into one, as `Bar.merge` does;
    in ticker, date and minute order."""
    by_open = parts.sort_by([(name, "ascending") for name in [*_BAR_KEYS, "open_ts", "open_offset"]])
    repeated = _repeated_keys(by_open)
    alone = _bars_table({name: by_open.column(name) for name in by_open.column_names}, [])
    if not pc.any(repeated).as_py():  # the common case: nothing to merge
        return alone
    several = by_open.filter(repeated)
    in_key_order = [(name, "ascending") for name in _BAR_KEYS]
    # group_by keeps each group's input order (first, last), not the order of the groups: sorted to line up
    opened = several.group_by(_BAR_KEYS, use_threads=False).aggregate(
        [("open", "first"), ("open_ts", "first"), ("open_offset", "first"), *_SUMS]).sort_by(in_key_order)
    by_close = several.sort_by([(name, "ascending") for name in [*_BAR_KEYS, "close_ts", "close_offset"]])
    closed = by_close.group_by(_BAR_KEYS, use_threads=False).aggregate(
        [("close", "last"), ("close_ts", "last"), ("close_offset", "last")]).sort_by(in_key_order)
    columns = {name.removesuffix("_first").removesuffix("_last").removesuffix("_max").removesuffix("_min")
               .removesuffix("_sum"): table.column(name)
               for table in (opened, closed) for name in table.column_names}
    merged = pa.concat_tables([alone.filter(pc.invert(repeated)), _bars_table(columns, [])])
    return merged.sort_by(in_key_order)


def _repeated_keys(rows: pa.Table) -> pa.ChunkedArray:
    """For `rows` in key order: whether each row's ticker, date and minute are those of a neighbour."""
    if rows.num_rows < 2:
        return pa.chunked_array([pa.array([False] * rows.num_rows, pa.bool_())])
    same = pc.invert(key_changes(rows, _BAR_KEYS))  # same[i]: rows i and i + 1 have the same key
    edge = pa.chunked_array([[False]], pa.bool_())
    return pc.or_(pa.chunked_array([*edge.chunks, *same.chunks]), pa.chunked_array([*same.chunks, *edge.chunks]))


def unheld_parts(stored: pa.Table, parts: pa.Table) -> pa.Table:
    """The `parts` (rows of the bars table) that the `stored` rows do not hold yet: a part whose first offset
    is at or below the last offset of the stored row of its ticker, date and minute is in that row already.
    That holds because a ticker's trades arrive in offset order and each part of a minute holds trades that
    arrived after those of the parts before it (`pipelines.bars`)."""
    held = stored.select([*_BAR_KEYS, "last_offset"]).rename_columns([*_BAR_KEYS, "_held"])
    joined = parts.join(held, _BAR_KEYS, join_type="left outer")
    lacking = pc.fill_null(pc.greater(joined.column("first_offset"), joined.column("_held")), True)
    return joined.filter(lacking).select(parts.column_names).cast(parts.schema)
