"""One-minute OHLCV bars of trades: the state of one ticker's minute, which can be built from trades in any
order and merged with another part of the same minute in any order, always giving the same bar.

Open and close are the first and last trade by event time, ties broken by Kafka offset (then by trade id,
for trades that never came through Kafka). That order is total, so `merge` is associative and commutative:
a bar built live, rebuilt after a crash from a different split of its trades, or corrected by a late trade
ends up the same. Volume and trade count are sums; VWAP is sum(price × size) / sum(size), kept as its two
sums so that merging stays exact up to floating-point addition order.

Minutes are UTC minutes of the event time (a trade at 14:30:59.999 belongs to 14:30).

The same fold over Arrow columns, for the stream: `trade_parts` folds trades into rows of the bars table,
one per ticker and minute (and any further group column), and `combine_parts` merges rows of one minute as
`Bar.merge` does; one sort of the keys as integers (`marketstream.runs.sorted_runs`) and numpy's `reduceat`
over each key's run, no Python object per trade or per bar.

What a row holds (`held_through`): per Kafka partition of a topic incarnation, the offset through which every
trade of that partition in the row's minute is folded in. A ticker's trades come through one partition in
offset order, and whoever folds trades of a partition into a row folds all of the minute's trades after the
row's offset up to its own last one (it read them all), so that offset is a prefix: `unheld_trades` drops
exactly the trades a row holds, whoever folded them in — a replay, a restarted flow, another deployment —
and the rest fold in without counting a trade twice. A topic deleted and created again is a new incarnation,
whose partitions the row does not hold yet. Rows written before these offsets existed hold, for the
incarnation that was current when the table was first written by this version (the table property
`LEGACY_INCARNATION`), every trade of any partition up to their `last_offset` (`held_entries`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketstream.runs import key_runs, sort_codes, sorted_runs

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
    """The lowest and highest Kafka offsets folded in."""

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
                  "close_offset": bar.close_key[1], "first_offset": bar.first_offset, "last_offset": bar.last_offset,
                  "held_through": None}
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS]))


_BAR_KEYS = ["ticker", "date", "minute"]
_SUMS = [("high", np.maximum), ("low", np.minimum), ("volume", np.add), ("trades", np.add), ("notional", np.add),
         ("first_offset", np.minimum), ("last_offset", np.maximum)]
LEGACY_INCARNATION = "marketstream.bars.legacyIncarnation"
"""The table property naming the topic incarnation whose trades rows without `held_through` hold."""
ANY_PARTITION = -1
"""An entry of `held_entries` for every Kafka partition of its incarnation (a row written before 2026-12)."""
_ENTRY_KEYS = ["ticker", "minute", "incarnation", "kafka_partition"]


def _bars_table(columns: dict[str, pa.Array], extra: list[str]) -> pa.Table:
    from marketstream import schemas

    columns["vwap"] = pc.divide(columns["notional"], columns["volume"])
    schema = pa.schema([*(pa.field(name, columns[name].type) for name in extra), *schemas.BARS_PARTITIONING,
                        *schemas.BARS])
    return pa.table([columns[field.name].cast(field.type) for field in schema], schema=schema)


def _held_of_groups(groups: np.ndarray, group_count: int, incarnations: pa.Array, partitions: np.ndarray,
                    offsets: np.ndarray) -> pa.ListArray:
    """Entries of what rows hold (the row group `groups` each belongs to, of `group_count`; its incarnation,
    Kafka partition and offset) -> per group its `held_through`: each incarnation and partition through the
    highest offset given, in incarnation and partition order; null for a group without entries."""
    from marketstream import schemas

    order, starts = sorted_runs([groups, sort_codes(incarnations), partitions], [])
    highest = np.maximum.reduceat(offsets[order], starts) if len(starts) else offsets[:0]
    firsts = order[starts]
    entry = schemas.HELD_THROUGH.value_type
    structs = pa.StructArray.from_arrays(
        [incarnations.take(firsts).cast(entry.field("incarnation").type),
         pa.array(partitions[firsts]).cast(entry.field("kafka_partition").type),
         pa.array(highest).cast(entry.field("offset").type)], fields=list(entry))
    # the entries of a group are one run of them, sorted by group first: a list is that run
    bounds = np.searchsorted(groups[firsts], np.arange(group_count + 1)).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(bounds), structs, type=schemas.HELD_THROUGH,
                                    mask=pa.array(bounds[1:] == bounds[:-1]))


def _group_of_rows(order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For the runs `sorted_runs` gives: the run (0, 1, …) each row, in row order, belongs to."""
    is_start = np.zeros(len(order), dtype=np.int64)
    is_start[starts] = 1
    groups = np.empty(len(order), dtype=np.int64)
    groups[order] = np.cumsum(is_start) - 1
    return groups


def minutes_of(timestamps: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The minute (UTC) each `timestamp[us, tz=UTC]` falls in, as `pc.floor_temporal(…, unit="minute")` gives
    it, by integer arithmetic: a tenth of its cost, which looks up the time zone of every value."""
    micros = timestamps.cast(pa.int64())
    # Arrow's integer division truncates toward zero: below the epoch, floor is one minute less
    floored = pc.if_else(pc.less(micros, 0), pc.subtract(pc.divide(pc.add(micros, 1), MINUTE_US), 1),
                         pc.divide(micros, MINUTE_US))
    return pc.multiply(floored, MINUTE_US).cast(timestamps.type)


def trade_parts(trades: pa.Table, incarnation: str, extra: list[str] = ()) -> pa.Table:
    """Trades of topic incarnation `incarnation` (`ticker`, `date`, `timestamp`, `kafka_partition`,
    `kafka_offset`, `price`, `size`, and the `extra` columns) -> one row of the bars table per `extra`
    columns, ticker, date and minute, in that order, `extra` columns first, holding the trades' partitions
    through their last offsets."""
    extra = list(extra)
    group_names = [*extra, "ticker", "date"]
    stamps = trades.column("timestamp")
    micros = _values(trades, "timestamp", pa.int64())
    offsets = _values(trades, "kafka_offset", pa.int64())
    partitions = _values(trades, "kafka_partition", pa.int64())
    minutes = _numbers(minutes_of(stamps), "timestamp", pa.int64())
    keys = [*(sort_codes(trades.column(name)) for name in group_names), minutes]
    # each group's rows in trade order (time, then offset), so that its first and last are the open and close
    order, starts = sorted_runs(keys, [micros, offsets])
    lasts = np.append(starts[1:], len(order)) - 1 if len(starts) else starts
    price, size = _values(trades, "price", pa.float64())[order], _values(trades, "size", pa.float64())[order]
    ordered_micros, ordered_offsets = micros[order], offsets[order]

    def folded(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(values, starts) if len(starts) else values[:0]

    firsts = order[starts]
    columns = {name: trades.column(name).take(firsts) for name in group_names}
    columns |= {"minute": pa.array(minutes[firsts]).cast(stamps.type), "open": pa.array(price[starts]),
                "open_ts": pa.array(ordered_micros[starts]).cast(stamps.type),
                "open_offset": pa.array(ordered_offsets[starts]), "close": pa.array(price[lasts]),
                "close_ts": pa.array(ordered_micros[lasts]).cast(stamps.type),
                "close_offset": pa.array(ordered_offsets[lasts]), "high": pa.array(folded(np.maximum, price)),
                "low": pa.array(folded(np.minimum, price)), "volume": pa.array(folded(np.add, size)),
                "trades": pa.array(lasts - starts + 1), "notional": pa.array(folded(np.add, price * size)),
                "first_offset": pa.array(folded(np.minimum, ordered_offsets)),
                "last_offset": pa.array(folded(np.maximum, ordered_offsets))}
    if len(order) and partitions.min() == partitions.max():  # a poll's trades, as the bars flow folds them
        columns["held_through"] = _held_in_one_partition(columns["last_offset"], int(partitions[0]), incarnation)
        return _bars_table(columns, extra)
    columns["held_through"] = _held_of_groups(  # trades of several partitions (a rebuild's)
        _group_of_rows(order, starts), len(starts), pa.repeat(pa.scalar(incarnation, pa.string()), len(order)),
        partitions, offsets)
    return _bars_table(columns, extra)


def _values(table: pa.Table, name: str, type: pa.DataType) -> np.ndarray:
    """Column `name` of `table` as a numpy array of `type`; a null in it is an error (the trades and bars
    schemas have none)."""
    return _numbers(table.column(name), name, type)


def _numbers(column: pa.ChunkedArray | pa.Array, name: str, type: pa.DataType) -> np.ndarray:
    if column.null_count:
        raise ValueError(f"rows to fold into bars have a null {name}")
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column.cast(type).to_numpy() if column.type != type else column.to_numpy()


def _held_in_one_partition(last_offsets: pa.ChunkedArray | pa.Array, partition: int, incarnation: str) -> pa.ListArray:
    """`held_through` of rows whose trades all come from Kafka partition `partition`: one entry each, that
    partition through the row's last offset (what `_held_of_groups` gives them, without its sort)."""
    from marketstream import schemas

    rows = len(last_offsets)
    if isinstance(last_offsets, pa.ChunkedArray):
        last_offsets = last_offsets.combine_chunks()
    entry = schemas.HELD_THROUGH.value_type
    structs = pa.StructArray.from_arrays(
        [pa.repeat(pa.scalar(incarnation, pa.string()), rows), pa.repeat(pa.scalar(partition, pa.int32()), rows),
         last_offsets.cast(pa.int64())], fields=list(entry))
    return pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32)), structs, type=schemas.HELD_THROUGH)


FOLD_CHUNK = 50_000
"""Trades folded at once by `fold_trades`: sorting half a million at once took twice the time and memory."""


def fold_trades(trades: pa.Table, incarnation: str) -> pa.Table:
    """`trade_parts` of `trades`, folded `FOLD_CHUNK` at a time and combined: one row per ticker, date, minute."""
    if trades.num_rows <= FOLD_CHUNK:
        return trade_parts(trades, incarnation)
    return combine_parts(pa.concat_tables([trade_parts(trades.slice(start, FOLD_CHUNK), incarnation)
                                           for start in range(0, trades.num_rows, FOLD_CHUNK)]))


def held_entries(rows: pa.Table, legacy_incarnation: str | None = None) -> pa.Table:
    """Rows of the bars table (`ticker`, `minute`, `last_offset`, `held_through`) -> what they hold, one row
    per (ticker, minute, incarnation, Kafka partition) with its `offset`. A row without `held_through` holds
    every partition (`ANY_PARTITION`) of `legacy_incarnation` through its `last_offset` (none if that is None)."""
    from marketstream import schemas

    if "held_through" not in rows.column_names:
        rows = rows.append_column("held_through", pa.nulls(rows.num_rows, schemas.HELD_THROUGH))
    held = rows.column("held_through").combine_chunks() if rows.num_rows else pa.array([], schemas.HELD_THROUGH)
    flat, parents = pc.list_flatten(held), pc.list_parent_indices(held)
    entries = pa.table({"ticker": rows.column("ticker").take(parents), "minute": rows.column("minute").take(parents),
                        "incarnation": pc.struct_field(flat, "incarnation"),
                        "kafka_partition": pc.struct_field(flat, "kafka_partition"),
                        "offset": pc.struct_field(flat, "offset")})
    legacy = rows.filter(pc.is_null(rows.column("held_through")))
    if legacy_incarnation is not None and legacy.num_rows:
        entries = pa.concat_tables([entries, pa.table({
            "ticker": legacy.column("ticker"), "minute": legacy.column("minute"),
            "incarnation": pa.repeat(pa.scalar(legacy_incarnation, pa.string()), legacy.num_rows),
            "kafka_partition": pa.repeat(pa.scalar(ANY_PARTITION, pa.int32()), legacy.num_rows),
            "offset": legacy.column("last_offset")}).cast(entries.schema)])
    return entries


def with_legacy_held(rows: pa.Table, legacy_incarnation: str | None) -> pa.Table:
    """Rows of the bars table whose null `held_through` (rows written before 2026-12) is made explicit as
    `held_entries` reads it, so that folding more trades into them keeps what they held."""
    if legacy_incarnation is None or not pc.any(pc.is_null(rows.column("held_through"))).as_py():
        return rows
    from marketstream import schemas

    entry = pa.struct([pa.field(f.name, f.type) for f in schemas.HELD_THROUGH.value_type])
    legacy = [None if held is not None else [{"incarnation": legacy_incarnation, "kafka_partition": ANY_PARTITION,
                                              "offset": last}]
              for held, last in zip(rows.column("held_through").to_pylist(), rows.column("last_offset").to_pylist())]
    filled = pc.coalesce(rows.column("held_through"), pa.array(legacy, pa.list_(entry)))
    return rows.set_column(rows.schema.get_field_index("held_through"), "held_through", filled)


def held_offsets(entries: pa.Table, keys: pa.Table) -> pa.Array:
    """For each row of `keys` (`ticker`, `minute`, `incarnation`, `kafka_partition`), in order, the offset
    through which the rows `entries` describes (`held_entries`) hold that ticker's minute in that Kafka
    partition of that incarnation: its partition's entry or an `ANY_PARTITION` one (rows written before held
    offsets existed), whichever is higher; -1 where none holds it."""
    def typed(table: pa.Table, names: list[str]) -> dict:
        return {name: table.column(name).cast(keys.schema.field(name).type) for name in names}

    rows = pa.table({**typed(keys, _ENTRY_KEYS), "_row": pa.array(range(keys.num_rows), pa.int64())})
    by_partition = pc.not_equal(entries.column("kafka_partition"), ANY_PARTITION)
    exact, legacy = entries.filter(by_partition), entries.filter(pc.invert(by_partition))
    exact = pa.table({**typed(exact, _ENTRY_KEYS), "offset": exact.column("offset")}).group_by(_ENTRY_KEYS).aggregate(
        [("offset", "max")]).rename_columns([*_ENTRY_KEYS, "_held"])
    legacy_keys = ["ticker", "minute", "incarnation"]
    legacy = pa.table({**typed(legacy, legacy_keys), "offset": legacy.column("offset")}).group_by(legacy_keys).aggregate(
        [("offset", "max")]).rename_columns([*legacy_keys, "_held_any"])
    joined = (rows.join(exact, _ENTRY_KEYS, join_type="left outer")
              .join(legacy, legacy_keys, join_type="left outer").sort_by("_row"))
    return pc.max_element_wise(pc.fill_null(joined.column("_held"), -1), pc.fill_null(joined.column("_held_any"), -1))


def unheld_trades(entries: pa.Table, trades: pa.Table, incarnation: str) -> pa.Table:
    """The `trades` (of topic incarnation `incarnation`: `ticker`, `timestamp`, `kafka_partition`,
    `kafka_offset`, …) that the rows `entries` describes (`held_entries`) do not hold: those whose offset is
    above their minute's held offset for their partition."""
    if not trades.num_rows:
        return trades
    mine = entries.filter(pc.equal(entries.column("incarnation"), incarnation))
    if not mine.num_rows:
        return trades
    minute = minutes_of(trades.column("timestamp"))
    # most trades are of minutes after every held one (a stream moves on): only the others are looked up
    doubtful = pc.less_equal(minute, pc.max(mine.column("minute")).cast(minute.type))
    if not pc.any(doubtful).as_py():
        return trades
    looked_up = trades.filter(doubtful)
    held = held_offsets(mine, pa.table({
        "ticker": looked_up.column("ticker"), "minute": minute.filter(doubtful),
        "incarnation": pa.repeat(pa.scalar(incarnation, pa.string()), looked_up.num_rows),
        "kafka_partition": looked_up.column("kafka_partition")}))
    kept = looked_up.filter(pc.greater(looked_up.column("kafka_offset"), held))
    return pa.concat_tables([trades.filter(pc.invert(doubtful)), kept])


def single_stream(parts: pa.Table) -> pa.Table:
    """`parts` (rows of the bars table, each holding one Kafka partition, as the stream makes them) with that
    partition's `incarnation`, `kafka_partition` and `last` (offset) as columns of their own."""
    first_entry = pc.list_element(parts.column("held_through"), 0)
    return (parts.append_column("incarnation", pc.struct_field(first_entry, "incarnation"))
            .append_column("kafka_partition", pc.struct_field(first_entry, "kafka_partition"))
            .append_column("last", pc.struct_field(first_entry, "offset")))


def split_by_held(entries: pa.Table, parts: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Parts of one Kafka partition each (rows of the bars table as the stream makes them: a part holds every
    trade of its ticker's minute in that partition from its `first_offset` to its held offset) against what the
    rows `entries` describes hold (`held_entries`): (the parts none of whose trades are held, the parts some but
    not all of whose trades are held, with `held`: the offset through which they are). Parts held whole are
    left out: folding them again would count their trades twice."""
    if not entries.num_rows or not parts.num_rows:
        return parts, parts.slice(0, 0).append_column("held", pa.array([], pa.int64()))
    # most parts are of minutes after every held one (a stream moves on): only the others are looked up
    doubtful = pc.less_equal(parts.column("minute"), pc.max(entries.column("minute")).cast(parts.schema.field("minute").type))
    if not pc.any(doubtful).as_py():
        return parts, parts.slice(0, 0).append_column("held", pa.array([], pa.int64()))
    later = parts.filter(pc.invert(doubtful))
    parts = parts.filter(doubtful)
    streams = single_stream(parts)
    held = held_offsets(entries, streams.select(_ENTRY_KEYS))
    none_held = pc.greater(streams.column("first_offset"), held)
    some_held = pc.and_(pc.invert(none_held), pc.greater(streams.column("last"), held))
    unheld = pa.concat_tables([later, parts.filter(none_held)])
    partly = parts.filter(some_held).append_column("held", held.filter(some_held))
    return unheld, partly


Reread = Callable[[str, int, int, int], pa.Table]
"""`reread(incarnation, partition, first, last)`: the trades (`ticker`, `date`, `timestamp`, `kafka_partition`,
`kafka_offset`, `price`, `size`) of a Kafka partition's offsets `first`..`last` that the bars table keeps."""


def unheld_parts(entries: pa.Table, parts: pa.Table, reread: Reread) -> pa.Table:
    """Bar rows holding exactly the trades of `parts` (as the stream makes them, one Kafka partition each)
    that the rows `entries` describes (`held_entries`) do not hold: parts held whole are left out, parts held
    in part (another writer cut the same minute elsewhere) are folded again from their trades above what is
    held, which `reread` gives; `held_through` says what each holds."""
    fresh, partly = split_by_held(entries, combine_each_partition(parts))
    if not partly.num_rows:
        return fresh
    streams = single_stream(partly).sort_by([("incarnation", "ascending"), ("kafka_partition", "ascending")])
    refolded = [fresh]
    for (incarnation, partition), start, count in key_runs(streams, ["incarnation", "kafka_partition"]):
        group = streams.slice(start, count)
        trades = reread(incarnation, partition, pc.min(group.column("held")).as_py() + 1, pc.max(group.column("last")).as_py())
        minute = minutes_of(trades.column("timestamp"))
        bounds = group.select(["ticker", "minute", "held", "last"]).cast(pa.schema(
            [trades.schema.field("ticker"), pa.field("minute", minute.type), pa.field("held", pa.int64()),
             pa.field("last", pa.int64())]))
        chosen = trades.append_column("minute", minute).join(bounds, ["ticker", "minute"], join_type="inner")
        offsets = chosen.column("kafka_offset")
        chosen = chosen.filter(pc.and_(pc.greater(offsets, chosen.column("held")), pc.less_equal(offsets, chosen.column("last"))))
        if chosen.num_rows:
            refolded.append(trade_parts(chosen.select(trades.column_names), incarnation).cast(fresh.schema))
    return pa.concat_tables(refolded)


def combine_each_partition(parts: pa.Table) -> pa.Table:
    """Parts of one Kafka partition each (`split_by_held`) merged per ticker, date, minute and partition: the
    parts a writer makes of one minute in one partition hold consecutive runs of its trades, so each merged part
    still holds every trade of its minute in that partition between its first and held offsets."""
    _, starts = sorted_runs([sort_codes(parts.column(name)) for name in _BAR_KEYS], [])
    if len(starts) == parts.num_rows:  # nothing to merge
        return parts
    streams = single_stream(parts).sort_by([("incarnation", "ascending"), ("kafka_partition", "ascending")])
    return pa.concat_tables([combine_parts(streams.slice(start, count).select(parts.column_names))
                             for _, start, count in key_runs(streams, ["incarnation", "kafka_partition"])])


def combine_parts(parts: pa.Table) -> pa.Table:
    """Rows of the bars table with the same ticker, date and minute merged into one, as `Bar.merge` does,
    holding what each held; in ticker, date and minute order unless no two shared a key (then as they were).
    Rows must carry `held_through` (`with_legacy_held` for rows written before 2026-12)."""
    keys = [sort_codes(parts.column(name)) for name in _BAR_KEYS]
    # each key's rows by open, then by close: its first and last rows are its open and close
    by_open, starts = sorted_runs(keys, [_values(parts, "open_ts", pa.int64()), _values(parts, "open_offset", pa.int64())])
    if len(starts) == parts.num_rows:  # the common case: nothing to merge, and nothing copied
        return _bars_table({name: parts.column(name) for name in parts.column_names}, [])
    by_close, _ = sorted_runs(keys, [_values(parts, "close_ts", pa.int64()), _values(parts, "close_offset", pa.int64())])
    lasts = np.append(starts[1:], len(by_open)) - 1
    opens, closes = pa.array(by_open[starts]), pa.array(by_close[lasts])
    columns = {name: parts.column(name).take(opens) for name in [*_BAR_KEYS, "open", "open_ts", "open_offset"]}
    columns |= {name: parts.column(name).take(closes) for name in ["close", "close_ts", "close_offset"]}
    for name, ufunc in _SUMS:
        values = _values(parts, name, parts.schema.field(name).type)[by_open]
        columns[name] = pa.array(ufunc.reduceat(values, starts))
    held = parts.column("held_through").combine_chunks()
    if (one_partition := _held_in_one_partition_each(held)) is not None:  # a window's parts: one Kafka partition's
        incarnation, partition, offsets = one_partition
        highest = np.maximum.reduceat(offsets.to_numpy()[by_open], starts)
        columns["held_through"] = _held_in_one_partition(pa.array(highest), partition, incarnation)
    else:
        flat, parents = pc.list_flatten(held), pc.list_parent_indices(held).to_numpy()
        columns["held_through"] = _held_of_groups(
            _group_of_rows(by_open, starts)[parents], len(starts), pc.struct_field(flat, "incarnation"),
            _numbers(pc.struct_field(flat, "kafka_partition"), "kafka_partition", pa.int64()),
            _numbers(pc.struct_field(flat, "offset"), "offset", pa.int64()))
    return _bars_table(columns, [])


def _held_in_one_partition_each(held: pa.ListArray) -> tuple[str, int, pa.Array] | None:
    """If every row of `held` (`held_through` values) holds exactly one entry, all of one incarnation and Kafka
    partition: that incarnation and partition, and each row's offset; else None."""
    lengths = pc.min_max(pc.list_value_length(held))
    if held.null_count or lengths["min"].as_py() != 1 or lengths["max"].as_py() != 1:
        return None
    entries = pc.list_flatten(held)
    incarnations, partitions = pc.struct_field(entries, "incarnation"), pc.struct_field(entries, "kafka_partition")
    if (incarnations.null_count or partitions.null_count or pc.count_distinct(incarnations).as_py() != 1
            or pc.count_distinct(partitions).as_py() != 1):
        return None
    return incarnations[0].as_py(), partitions[0].as_py(), pc.struct_field(entries, "offset")
