"""A minute's bar is the same however its trades are split, ordered and merged, and equals the SQL
aggregate of those trades."""


import duckdb
import pyarrow as pa
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


def trades_table(rows) -> pa.Table:
    from datetime import date

    return pa.table({"ticker": ["X"] * len(rows), "date": pa.array([date(2026, 11, 19)] * len(rows), pa.date32()),
                     "timestamp": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
                     "kafka_offset": pa.array([r[1] for r in rows], pa.int64()),
                     "price": [r[3] for r in rows], "size": [r[4] for r in rows]})


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
    from marketstream.bars import combine_parts, trade_parts

    rows = rows_of(drawn)
    want = expected_by_minute(fold(rows))
    assert approx_equal(bars_by_minute(trade_parts(trades_table(rows))), want)
    # parts of any split of the trades, in any order, combine to the same bars
    cut = min(cut, len(rows))
    parts = [trade_parts(trades_table(rows[:cut]))] + ([trade_parts(trades_table(rows[cut:]))] if rows[cut:] else [])
    rnd.shuffle(parts)
    assert approx_equal(bars_by_minute(combine_parts(pa.concat_tables(parts))), want)


@settings(max_examples=150, deadline=None)
@given(trades, st.lists(st.integers(1, 59), max_size=6), st.data())
def test_folding_parts_a_stored_row_holds_again_changes_nothing(drawn, cuts, data):
    """Parts come as the stream makes them: consecutive runs of trades in offset order. Whatever prefix of
    them the table holds, folding in those it does not hold (after any replay) gives the bars of all."""
    from marketstream import schemas
    from marketstream.bars import combine_parts, trade_parts, unheld_parts

    none = pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS]).empty_table()
    rows = rows_of(drawn)
    bounds = [0, *sorted({min(c, len(rows)) for c in cuts}), len(rows)]
    parts = [trade_parts(trades_table(rows[a:b])) for a, b in zip(bounds, bounds[1:]) if b > a]
    held = data.draw(st.integers(0, len(parts)), label="parts the table holds")
    replay_from = data.draw(st.integers(0, held), label="first part replayed")
    stored = combine_parts(pa.concat_tables([none, *parts[:held]]))
    fresh = unheld_parts(stored, pa.concat_tables([none, *parts[replay_from:]]))
    assert fresh.num_rows == sum(p.num_rows for p in parts[held:])
    assert approx_equal(bars_by_minute(combine_parts(pa.concat_tables([stored, fresh]))),
                        expected_by_minute(fold(rows)))


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
