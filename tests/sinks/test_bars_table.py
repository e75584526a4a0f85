"""The bars table's MERGE folds parts as `Bar.merge` does, once each, on a table in a local folder."""

import random

from deltalake import DeltaTable

from marketstream.bars import MINUTE_US, Bar, bar_rows
from sinks.bars_table import merge_parts, open_table, turns
from tests.dataflows.test_bars import merged

START = 1_795_530_600_000_000  # 2026-11-24 14:30 UTC


def parts_of_a_tape(seed: int) -> list[tuple[str, Bar]]:
    """Parts as the builder emits them: per ticker and minute, consecutive runs of trades in offset order."""
    rnd = random.Random(seed)
    parts, offset = [], 0
    for ticker in ("AAPL", "MSFT"):
        for minute in range(3):
            bar = None
            for n in range(rnd.randint(1, 12)):
                trade = Bar.of_trade(START + minute * MINUTE_US + rnd.randrange(MINUTE_US), offset, f"t{offset}",
                                     round(rnd.uniform(90, 110), 2), float(rnd.randint(1, 100)))
                offset += 1
                bar = trade if bar is None else bar.merge(trade)
                if rnd.random() < 0.3:  # the part ends here: the rest are corrections
                    parts.append((ticker, bar))
                    bar = None
            if bar is not None:
                parts.append((ticker, bar))
    return parts


def stored(path) -> dict:
    rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    return {(r["ticker"], r["minute"]): r for r in rows}


def test_parts_fold_into_the_bar_merge_gives_and_a_replay_changes_nothing(tmp_path):
    parts = parts_of_a_tape(5)
    table = open_table(str(tmp_path), {})
    assert merge_parts(table, bar_rows(parts[: len(parts) // 2])) > 0
    merge_parts(table, bar_rows(parts))  # a replay of the first half, then the rest
    rows = stored(tmp_path)
    # a replay folds nothing in, also through another writer's view of the table
    assert merge_parts(open_table(str(tmp_path), {}), bar_rows(parts)) == 0
    assert merge_parts(table, bar_rows(parts)) == 0
    assert stored(tmp_path) == rows
    bars = merged(parts)
    assert len(rows) == len(bars)
    for (ticker, minute_us), bar in bars.items():
        row = next(r for (t, m), r in rows.items() if t == ticker and m == bar.minute)
        assert (row["open"], row["high"], row["low"], row["close"], row["volume"], row["trades"]) == \
            (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades)
        assert (row["first_offset"], row["last_offset"]) == (bar.first_offset, bar.last_offset)
        assert abs(row["vwap"] - bar.vwap) <= 1e-9 * bar.vwap


def test_parts_of_one_minute_in_one_call_are_merged_in_turns():
    a = Bar.of_trade(START, 0, "a", 1.0, 1.0)
    b = Bar.of_trade(START + 5, 1, "b", 2.0, 1.0)
    c = Bar.of_trade(START + MINUTE_US, 2, "c", 3.0, 1.0)
    split = turns(bar_rows([("X", a), ("X", b), ("X", c), ("Y", a)]))
    assert [turn.to_pydict()["first_offset"] for turn in split] == [[0, 2, 0], [1]]
    assert [turn.to_pydict()["ticker"] for turn in split] == [["X", "X", "Y"], ["X"]]


def test_a_correction_within_the_literal_bounds_folds_into_its_row_and_rewrites_only_its_file(tmp_path):
    """The MERGE names the tickers, dates and minutes it may match (so delta-rs prunes the other files):
    a correction still finds its stored row."""
    table = open_table(str(tmp_path), {})
    merge_parts(table, bar_rows([(t, Bar.of_trade(START + m * MINUTE_US, m, "x", 1.0, 1.0))
                                 for t in ("AAPL", "MSFT") for m in range(3)]))
    before = set(table.file_uris())
    merge_parts(table, bar_rows([("AAPL", Bar.of_trade(START + 1 * MINUTE_US + 7, 9, "y", 2.0, 1.0))]))
    after = set(table.file_uris())
    # only AAPL's file was rewritten; the new row folded into its minute
    assert len(before - after) == 1 and "ticker=AAPL" in (before - after).pop()
    row = [r for r in DeltaTable(str(tmp_path)).to_pyarrow_table().to_pylist()
           if r["ticker"] == "AAPL" and r["trades"] == 2]
    assert len(row) == 1 and row[0]["high"] == 2.0
