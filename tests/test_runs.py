"""Runs of equal keys in a sorted table, as a plain loop over its rows finds them."""

import itertools
import math
from datetime import date

import pyarrow as pa
from hypothesis import given, settings, strategies as st

from marketstream.runs import key_runs, sort_codes, sorted_runs

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


def _ordered(value):
    """A value's place in `sort_by`'s ascending order, nulls last: a key for Python's sort."""
    return (value is None, value)


@settings(max_examples=300, deadline=None)
@given(rows, st.lists(st.integers(-3, 3), min_size=80, max_size=80), st.integers(1, 3))
def test_sorted_runs_sort_and_split_as_python_sorting_the_rows_does(drawn, then, chunks):
    """`sort_codes` of strings, dates and integers (nulls too, in several chunks) sorted by `sorted_runs`: the
    order and runs a stable Python sort of the values and a loop over them give."""
    columns = [pa.array([r[0] for r in drawn], pa.string()), pa.array([r[1] for r in drawn], pa.string()),
               pa.array([r[2] for r in drawn], pa.date32())]
    cut = max(math.ceil(len(drawn) / chunks), 1)
    chunked = [pa.chunked_array([column.slice(start, cut) for start in range(0, len(drawn), cut)] or [column])
               for column in columns]
    tie = then[:len(drawn)]
    order, starts = sorted_runs([sort_codes(column) for column in chunked], [sort_codes(pa.array(tie, pa.int64()))])
    values = [column.to_pylist() for column in columns]
    expected = sorted(range(len(drawn)), key=lambda row: ([_ordered(v[row]) for v in values], tie[row]))
    assert order.tolist() == expected
    keys = [tuple(v[row] for v in values) for row in expected]
    assert starts.tolist() == [row for row in range(len(keys)) if row == 0 or keys[row] != keys[row - 1]]


def test_sort_codes_of_a_constant_column_leave_the_rows_in_place():
    order, starts = sorted_runs([sort_codes(pa.array(["X"] * 4))], [])
    assert order.tolist() == [0, 1, 2, 3] and starts.tolist() == [0]
    order, starts = sorted_runs([sort_codes(pa.array([], pa.string()))], [])
    assert order.tolist() == [] and starts.tolist() == []
