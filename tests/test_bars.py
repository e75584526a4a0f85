"""A minute's bar is the same however its trades are split, ordered and merged, and equals the SQL
aggregate of those trades."""


from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings, strategies as st

from marketstream.bars import MINUTE_US, Bar, minute_of

START_US = 1_795_000_000 * 1_000_000 - (1_795_000_000 * 1_000_000) % MINUTE_US

trades = st.lists(
    st.tuples(st.integers(0, 3 * MINUTE_US - 1),                     # event time within three minutes
              st.integers(1, 9_999_900).map(lambda cents: cents / 100),  # price
              st.integers(1, 5_000).map(float)),                       # size
    min_size=1, max_size=60)


def rows_of(drawn):
    # offsets in arrival order; equal event times are common, as on a busy tape
    return [(START_US + (t // 1_000_000) * 1_000_000, offset, f"id{offset}", price, size)
            for offset, (t, price, size) in enumerate(drawn)]


def fold(rows):
    bars = {}
    for row in rows:
        bar = Bar.of_trade(*row)
        bars[bar.minute_us] = bars[bar.minute_us].merge(bar) if bar.minute_us in bars else bar
    return bars


def same(a: Bar, b: Bar) -> bool:
    exact = (a.minute_us, a.open_key, a.open, a.close_key, a.close, a.high, a.low, a.volume, a.trades)
    return exact == (b.minute_us, b.open_key, b.open, b.close_key, b.close, b.high, b.low, b.volume, b.trades) \
        and a.notional == pytest.approx(b.notional, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(trades, st.randoms(use_true_random=False))
def test_any_order_and_any_split_give_the_same_bars(drawn, rnd):
    rows = rows_of(drawn)
    in_order = fold(rows)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    cut = rnd.randint(0, len(shuffled))
    left, right = fold(shuffled[:cut]), fold(shuffled[cut:])
    merged = dict(left)
    for minute, bar in right.items():
        merged[minute] = bar.merge(merged[minute]) if minute in merged else bar
    assert in_order.keys() == merged.keys()
    assert all(same(in_order[m], merged[m]) for m in in_order)


@settings(max_examples=100, deadline=None)
@given(trades)
def test_bars_equal_the_sql_aggregate_of_their_trades(drawn):
    rows = rows_of(drawn)
    table = pa.table({"ts": [r[0] for r in rows], "kafka_offset": [r[1] for r in rows],
                      "trade_id": [r[2] for r in rows], "price": [r[3] for r in rows], "size": [r[4] for r in rows]})
    connection = duckdb.connect()
    connection.register("trades", table)
    answer = connection.sql(f"""
        SELECT ts - ts % {MINUTE_US} AS minute,
               first(price ORDER BY ts, kafka_offset, trade_id) AS open,
               max(price) AS high, min(price) AS low,
               last(price ORDER BY ts, kafka_offset, trade_id) AS close,
               sum(size) AS volume, count(*) AS trades, sum(price * size) / sum(size) AS vwap
        FROM trades GROUP BY ALL ORDER BY minute""").fetchall()
    bars = fold(rows)
    assert [m for m, *_ in answer] == sorted(bars)
    for minute, open_, high, low, close, volume, count, vwap in answer:
        bar = bars[minute]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (open_, high, low, close, volume, count)
        assert bar.vwap == pytest.approx(vwap, rel=1e-12)


def test_a_trade_belongs_to_the_minute_it_happened_in_and_minutes_do_not_mix():
    last_microsecond = START_US + MINUTE_US - 1
    assert minute_of(last_microsecond) == START_US and minute_of(last_microsecond + 1) == START_US + MINUTE_US
    with pytest.raises(ValueError, match="different minutes"):
        Bar.of_trade(START_US, 0, "a", 1.0, 1.0).merge(Bar.of_trade(START_US + MINUTE_US, 1, "b", 1.0, 1.0))


def test_ties_in_time_go_by_offset_for_open_and_close():
    bar = Bar.of_trade(START_US, 7, "x", 10.0, 1.0).add(START_US, 3, "y", 11.0, 1.0).add(START_US, 9, "z", 12.0, 2.0)
    assert (bar.open, bar.close, bar.high, bar.low, bar.volume, bar.trades) == (11.0, 12.0, 12.0, 10.0, 4.0, 3)
    assert bar.vwap == pytest.approx((10 + 11 + 24) / 4)


INCARNATION = "topic-id-1"


def trades_table(rows, partition: int | list[int] = 0, tickers: list[str] | None = None) -> pa.Table:
    """`rows` as the trades the bars fold: of ticker X (or `tickers`, one per row) on 2026-11-19, all of Kafka
    partition `partition` (or one partition per row)."""
    partitions = partition if isinstance(partition, list) else [partition] * len(rows)
    return pa.table({"ticker": tickers or ["X"] * len(rows),
                     "date": pa.array([date(2026, 11, 19)] * len(rows), pa.date32()),
                     "timestamp": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
                     "kafka_partition": pa.array(partitions[:len(rows)], pa.int32()),
                     "kafka_offset": pa.array([r[1] for r in rows], pa.int64()),
                     "price": [r[3] for r in rows], "size": [r[4] for r in rows]})


def parts_of(rows, incarnation: str = INCARNATION) -> pa.Table:
    from marketstream.bars import trade_parts

    return trade_parts(trades_table(rows), incarnation)


def bars_by_minute(table: pa.Table) -> dict:
    keys = ("open", "high", "low", "close", "volume", "trades", "first_offset", "last_offset", "open_offset", "close_offset")
    return {int(row["minute"].timestamp()) * 1_000_000: tuple(row[k] for k in keys) + (row["notional"],)
            for row in table.to_pylist()}


def expected_by_minute(bars: dict) -> dict:
    return {minute: (b.open, b.high, b.low, b.close, b.volume, b.trades, b.first_offset, b.last_offset,
                     b.open_key[1], b.close_key[1], b.notional) for minute, b in bars.items()}


def approx_equal(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(
        g[:-1] == w[:-1] and g[-1] == pytest.approx(w[-1], rel=1e-12) for g, w in ((got[k], want[k]) for k in got))


@settings(max_examples=150, deadline=None)
@given(trades, st.integers(1, 59), st.randoms(use_true_random=False))
def test_the_arrow_fold_of_trades_and_of_parts_in_any_split_gives_the_bars_of_bar_merge(drawn, cut, rnd):
    from marketstream.bars import combine_parts

    rows = rows_of(drawn)
    want = expected_by_minute(fold(rows))
    assert approx_equal(bars_by_minute(parts_of(rows)), want)
    # parts of any split of the trades, in any order, combine to the same bars
    cut = min(cut, len(rows))
    parts = [parts_of(rows[:cut])] + ([parts_of(rows[cut:])] if rows[cut:] else [])
    rnd.shuffle(parts)
    assert approx_equal(bars_by_minute(combine_parts(pa.concat_tables(parts))), want)


def fold_batch(stored: pa.Table, parts: pa.Table, topics: dict[str, pa.Table]) -> pa.Table:
    """What the bars writer does with a batch of bar parts (as the stream makes them): leave out what the table
    holds, fold in the rest, reading trades again from `topics` (per incarnation, all its trades) where another
    writer holds part of a part."""
    from marketstream.bars import combine_parts, held_entries, unheld_parts

    def reread(incarnation, partition, first, last):
        trades = topics[incarnation]
        offsets = trades.column("kafka_offset")
        return trades.filter(pc.and_(pc.greater_equal(offsets, first), pc.less_equal(offsets, last)))

    fresh = unheld_parts(held_entries(stored), parts, reread)
    if not fresh.num_rows:
        return stored
    return combine_parts(pa.concat_tables([stored, fresh.cast(stored.schema)]))


def empty_bars() -> pa.Table:
    from marketstream import schemas

    return pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS]).empty_table()


def batches_of(rows, polls: list[int], batches: list[int], incarnation: str = INCARNATION) -> list[pa.Table]:
    """A writer's batches over `rows`: the stream polled in runs cut at `polls`, each poll folded into parts,
    consecutive polls' parts batched together, cut at `batches` (poll numbers)."""
    bounds = [0, *sorted({min(c, len(rows)) for c in polls}), len(rows)]
    parts = [parts_of(rows[a:b], incarnation) for a, b in zip(bounds, bounds[1:]) if b > a]
    cuts = [0, *sorted({min(c, len(parts)) for c in batches}), len(parts)]
    return [pa.concat_tables(parts[a:b]) for a, b in zip(cuts, cuts[1:]) if b > a]


@settings(max_examples=200, deadline=None)
@given(trades, st.lists(st.tuples(st.lists(st.integers(1, 59), max_size=8), st.lists(st.integers(1, 8), max_size=3)),
                        min_size=1, max_size=3), st.data())
def test_independent_writers_cutting_the_stream_anywhere_fold_every_trade_once(drawn, writers_cuts, data):
    """Writers (deployments, restarts, replays) each read the stream from its start, poll it and batch their
    parts their own way; their commits interleave in any order, and some writers stop (are killed) anywhere.
    As long as one of them reads to the end, the table holds the bars of all trades, each counted once."""
    rows = rows_of(drawn)
    batches = [batches_of(rows, polls, cuts) for polls, cuts in writers_cuts]
    stops = [data.draw(st.integers(0, len(b)), label="batches before this writer is killed") for b in batches]
    stops[data.draw(st.integers(0, len(batches) - 1), label="the writer that reads to the end")] = None
    pending = [b[:stop] if stop is not None else b for b, stop in zip(batches, stops)]
    stored, topics = empty_bars(), {INCARNATION: trades_table(rows)}
    while any(pending):
        writer = data.draw(st.sampled_from([i for i, left in enumerate(pending) if left]), label="next commit by")
        stored = fold_batch(stored, pending[writer].pop(0), topics)
    assert approx_equal(bars_by_minute(stored), expected_by_minute(fold(rows)))


@settings(max_examples=100, deadline=None)
@given(trades, trades)
def test_trades_of_a_recreated_topic_fold_into_minutes_an_earlier_incarnation_filled(first, second):
    """The topic is deleted and created again: its offsets start at 0 again, for the same minutes (a
    microsecond apart, so that the order of trades by time and offset is the same in the bars and in SQL)."""
    old = rows_of(first)
    new = [(ts + 1, offset, f"new{offset}", price, size) for ts, offset, _, price, size in rows_of(second)]
    topics = {"incarnation-1": trades_table(old), "incarnation-2": trades_table(new)}
    stored = fold_batch(empty_bars(), parts_of(old, "incarnation-1"), topics)
    stored = fold_batch(stored, parts_of(new, "incarnation-2"), topics)
    stored = fold_batch(stored, parts_of(new, "incarnation-2"), topics)  # a replay of the new one
    stored = fold_batch(stored, parts_of(old, "incarnation-1"), topics)  # and of the old one
    everything = fold(old)
    for minute, bar in fold(new).items():
        everything[minute] = everything[minute].merge(bar) if minute in everything else bar
    got = {m: v[:6] for m, v in bars_by_minute(stored).items()}
    want = {m: v[:6] for m, v in expected_by_minute(everything).items()}
    assert got.keys() == want.keys()
    for minute in got:
        assert got[minute][1:] == pytest.approx(want[minute][1:], rel=1e-12)


def test_rows_written_before_held_offsets_existed_hold_every_partition_of_their_incarnation():
    from marketstream.bars import held_entries, unheld_trades, with_legacy_held

    rows = rows_of([(0, 10.0, 1.0), (1_000_000, 11.0, 2.0), (2_000_000, 12.0, 3.0)])
    legacy = parts_of(rows[:2]).drop_columns(["held_through"])
    legacy = legacy.append_column("held_through", pa.nulls(legacy.num_rows, empty_bars().schema.field("held_through").type))
    entries = held_entries(legacy, "incarnation-1")
    assert entries.to_pylist()[0] | {"minute": None} == {"ticker": "X", "minute": None, "incarnation": "incarnation-1",
                                                         "kafka_partition": -1, "offset": 1}
    for partition in (0, 3):  # any partition of that incarnation
        assert unheld_trades(entries, trades_table(rows, partition), "incarnation-1").column("kafka_offset").to_pylist() == [2]
    assert unheld_trades(entries, trades_table(rows), "incarnation-2").num_rows == 3
    assert held_entries(legacy).num_rows == 0  # no incarnation known: nothing held
    explicit = with_legacy_held(legacy, "incarnation-1")
    assert explicit.column("held_through").to_pylist() == [[{"incarnation": "incarnation-1", "kafka_partition": -1,
                                                             "offset": 1}]]


def test_parts_of_many_tickers_and_minutes_combine_each_into_its_own_bar():
    """Arrow's group_by returns groups out of order; opens and closes must still meet their own minute."""
    from marketstream.bars import bar_rows, combine_parts

    tickers = [f"T{n}" for n in (0, 1, 12, 13, 15, 18, 19, 8, 9, 2, 21, 3)]
    parts, offset = [], 0
    for split in range(2):
        for ticker in tickers:
            for minute in range(5):
                offset += 1
                price = 100.0 + tickers.index(ticker) + minute / 10 + split / 100
                parts.append((ticker, Bar.of_trade(START_US + minute * MINUTE_US + split, offset, "t", price, 1.0)))
    combined = combine_parts(bar_rows(parts)).to_pylist()
    assert len(combined) == len(tickers) * 5
    for row in combined:
        minute = int(row["minute"].timestamp()) * 1_000_000 - START_US
        base = 100.0 + tickers.index(row["ticker"]) + minute // MINUTE_US / 10
        assert (row["open"], row["close"], row["trades"]) == (pytest.approx(base), pytest.approx(base + 0.01), 2)


@settings(max_examples=150, deadline=None)
@given(trades, st.one_of(st.integers(0, 2).map(lambda partition: [partition] * 60),
                         st.lists(st.integers(0, 2), min_size=60, max_size=60)), st.sampled_from(["AAPL", "MSFT"]),
       st.integers(0, 60))
def test_each_bar_holds_every_kafka_partition_of_its_trades_through_their_last_offset(drawn, partitions, other, cut):
    """Trades of one partition (a poll) or of several (a fold of a day), folded at once or as parts merged:
    per ticker and minute, one entry per partition of its trades, in partition order, through the last offset
    of that partition's trades there."""
    from marketstream.bars import combine_parts, trade_parts

    rows = rows_of(drawn)
    table = trades_table(rows, partitions, [other if r[1] % 3 == 0 else "X" for r in rows])
    want: dict[tuple, dict[int, int]] = {}
    for row in table.to_pylist():
        held = want.setdefault((row["ticker"], minute_of(int(row["timestamp"].timestamp() * 1_000_000))), {})
        held[row["kafka_partition"]] = max(held.get(row["kafka_partition"], -1), row["kafka_offset"])
    want = {key: [{"incarnation": INCARNATION, "kafka_partition": partition, "offset": offset}
                  for partition, offset in sorted(held.items())] for key, held in want.items()}

    def held(parts: pa.Table) -> dict:
        return {(row["ticker"], int(row["minute"].timestamp()) * 1_000_000): row["held_through"] for row in parts.to_pylist()}

    assert held(trade_parts(table, INCARNATION)) == want
    # the same trades as the parts of two polls, merged when their window closes
    cut = cut % (table.num_rows + 1)
    assert held(combine_parts(pa.concat_tables([trade_parts(table.slice(0, cut), INCARNATION),
                                                trade_parts(table.slice(cut), INCARNATION)]))) == want


@settings(max_examples=50, deadline=None)
@given(trades, st.integers(1, 30))
def test_trades_folded_a_chunk_at_a_time_give_the_bars_of_all_at_once(drawn, chunk):
    import marketstream.bars
    from marketstream.bars import fold_trades

    rows = rows_of(drawn)
    original, marketstream.bars.FOLD_CHUNK = marketstream.bars.FOLD_CHUNK, chunk
    try:
        chunked = fold_trades(trades_table(rows), INCARNATION)
    finally:
        marketstream.bars.FOLD_CHUNK = original
    assert approx_equal(bars_by_minute(chunked), expected_by_minute(fold(rows)))
    # rows come in no particular order: compare them minute by minute
    assert (chunked.sort_by("minute").column("held_through").to_pylist()
            == parts_of(rows).sort_by("minute").column("held_through").to_pylist())


def test_parts_held_in_part_are_folded_again_from_their_own_trades_above_what_is_held():
    """Two minutes another writer cut elsewhere, held through different offsets, in one batch of one partition:
    each is folded again from its own trades above its own held offset, read in one range."""
    from marketstream.bars import held_entries, unheld_parts

    # minute 0: offsets 0, 2, 4; minute 1: offsets 1, 3, 5 (interleaved, as a busy tape is)
    rows = [(START_US + (i % 2) * MINUTE_US + i, i, f"t{i}", 100.0 + i, 1.0) for i in range(6)]
    stored = parts_of([rows[0], rows[2]]).cast(empty_bars().schema)  # minute 0 held through offset 2...
    stored = pa.concat_tables([stored, parts_of([rows[1]]).cast(stored.schema)])  # ...minute 1 through offset 1
    asked = []

    def reread(incarnation, partition, first, last):
        asked.append((first, last))
        table = trades_table(rows)
        return table.filter(pc.greater_equal(table.column("kafka_offset"), first))

    fresh = unheld_parts(held_entries(stored), parts_of(rows), reread)
    assert asked == [(2, 5)]  # one read, from the lowest held offset on
    got = {row["minute"].timestamp(): (row["trades"], row["first_offset"]) for row in fresh.to_pylist()}
    assert sorted(got.values()) == [(1, 4), (2, 3)]  # minute 0: offset 4 only; minute 1: offsets 3 and 5


def test_held_offsets_of_one_partition_only_when_every_entry_names_that_partition():
    from marketstream import schemas
    from marketstream.bars import _held_in_one_partition_each

    def held(*partitions):
        return pa.array([[{"incarnation": INCARNATION, "kafka_partition": p, "offset": i}] for i, p in enumerate(partitions)],
                        schemas.HELD_THROUGH)

    incarnation, partition, offsets = _held_in_one_partition_each(held(2, 2, 2))
    assert (incarnation, partition, offsets.to_pylist()) == (INCARNATION, 2, [0, 1, 2])
    assert _held_in_one_partition_each(held(2, 1)) is None
    assert _held_in_one_partition_each(held(2, None)) is None  # an unknown partition is not partition 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**62) // 1000, 2**62 // 1000), min_size=1, max_size=50))
def test_minutes_are_those_arrows_floor_to_the_minute_gives_before_and_after_the_epoch(micros):
    from marketstream.bars import minutes_of

    stamps = pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    for given in (stamps, pa.chunked_array([stamps, stamps])):
        assert minutes_of(given).equals(pc.floor_temporal(given, unit="minute"))


def test_parts_of_distinct_minutes_are_combined_without_a_copy():
    """The sink combines its whole batch, mostly of distinct minutes: a copy of it all was 20-30 MB of a
    500 000-trade drain's peak. Such rows come back as they were, their buffers shared."""
    from marketstream.bars import combine_parts

    parts = pa.concat_tables([parts_of([(START_US + minute * MINUTE_US, minute, "t", 10.0 + minute, 1.0)])
                              for minute in (3, 1, 2)])
    combined = combine_parts(parts)
    assert combined.column("minute").to_pylist() == parts.column("minute").to_pylist()  # not reordered
    for name in ("ticker", "open", "held_through"):
        assert ([chunk.buffers()[-1].address for chunk in combined.column(name).chunks]
                == [chunk.buffers()[-1].address for chunk in parts.column(name).chunks])
