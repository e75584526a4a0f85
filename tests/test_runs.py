"""Runs of equal keys in a sorted table, as a plain loop over its rows finds them."""

import itertools
from datetime import date

import pyarrow as pa
from hypothesis import given, settings, strategies as st

from marketstream.runs import key_runs

rows = st.lists(st.tuples(st.sampled_from(["", "_synthetic", None]), st.sampled_from(["AAPL", "MSFT", "T", "BRK.B"]),
                          st.sampled_from([date(2026, 11, 24), date(2026, 11, 25), None])), max_size=80)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_runs_are_those_a_loop_over_the_sorted_rows_finds(drawn):
    table = pa.table({"prefix": pa.array([r[0] for r in drawn], pa.string()),
                      "ticker": pa.array([r[1] for r in drawn], pa.string()),
                      "date": pa.array([r[2] for r in drawn], pa.date32()),
                      "n": pa.array(range(len(drawn)), pa.int64())})
    keys = ["prefix", "ticker", "date"]
    table = table.sort_by([(name, "ascending") for name in keys])
    listed = list(zip(*(table.column(name).to_pylist() for name in keys))) if drawn else []
    expected, start = [], 0
    for key, group in itertools.groupby(listed):
        count = len(list(group))
        expected.append((key, start, count))
        start += count
    assert key_runs(table, keys) == expected


def test_many_runs_come_in_table_order():
    """The case Arrow's group_by gets wrong: ten tickers sorted, counted by group_by, come back reordered."""
    tickers = [f"T{n}" for n in (0, 1, 12, 13, 15, 18, 19, 8, 9)]
    table = pa.table({"ticker": sorted(tickers * 2)})
    assert [key for key, _, _ in key_runs(table, ["ticker"])] == [(t,) for t in sorted(tickers)]
    assert all(count == 2 for _, _, count in key_runs(table, ["ticker"]))
