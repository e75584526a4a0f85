"""The differential query tests' harness (`tests.query_predicates`) says each predicate the way DuckDB, polars
and pyarrow's DNF filters mean it, and its Python evaluator agrees with each of them on in-memory Arrow
tables (no files, no statistics, nothing to skip): so a disagreement on the lake is the lake's."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.query_predicates import (AllOf, Among, AnyOf, Compare, IsNull, Like, columns_of, holds, like_patterns, matching,
                                    plain, predicates, quoted, to_dnf, to_polars, to_sql)

UTC = timezone.utc
SCHEMA = pa.schema([("text", pa.string()), ("real", pa.float64()), ("whole", pa.int64()), ("year", pa.int32()),
                    ("moment", pa.timestamp("us", tz="UTC")), ("day", pa.date32()), ("words", pa.list_(pa.string()))])
_EPOCH = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
VALUES = {
    "text": st.text(st.sampled_from(["a", "b", "%", "_", "'", "é", "📈", "\n", " ", "Z"]), max_size=6),
    "real": st.sampled_from([0.0, -1.5, 100.25, 1e-300, 189.12, 2.0**53]),
    "whole": st.integers(-3, 3) | st.just(2**40),
    "year": st.integers(2024, 2027),
    "moment": st.integers(0, 3_000_000).map(lambda micros: _EPOCH + timedelta(microseconds=micros)),
    "day": st.dates(date(2026, 11, 20), date(2026, 11, 26)),
    "words": st.lists(st.sampled_from(["@", "I"]), max_size=2),
}


@st.composite
def tables(draw) -> pa.Table:
    rows = draw(st.integers(1, 15))
    columns = {name: [draw(st.none() | values) for _ in range(rows)] for name, values in VALUES.items()}
    for name in VALUES:  # each column holds at least one value to draw literals from
        if all(value is None for value in columns[name]):
            columns[name][0] = draw(VALUES[name])
    return pa.table(columns, schema=SCHEMA)


def answers(rows) -> Counter:
    return Counter(rows)


def expected(table: pa.Table, predicate, **semantics) -> Counter:
    return matching(table.to_pylist(), predicate, table.column_names, **semantics)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_python_evaluator_agrees_with_duckdb_polars_and_pyarrow_on_in_memory_tables(data):
    table = data.draw(tables())
    predicate = data.draw(predicates(columns_of(table)))
    names = ", ".join(quoted(name) for name in table.column_names)

    connection = duckdb.connect()
    connection.register("t", table)
    sql_rows = connection.sql(f"SELECT {names} FROM t WHERE {to_sql(predicate)}").to_arrow_table().to_pylist()
    want = expected(table, predicate)
    assert answers((tuple(plain(v) for v in row.values()) for row in sql_rows)) == want, to_sql(predicate)

    frame = pl.from_arrow(table)
    polars_rows = frame.filter(to_polars(predicate, dict(frame.schema))).to_arrow().to_pylist()
    assert answers((tuple(plain(v) for v in row.values()) for row in polars_rows)) == want, predicate

    dnf = to_dnf(predicate)
    if dnf is not None:
        arrow_rows = ds.dataset(table).to_table(filter=pq.filters_to_expression(dnf)).to_pylist()
        assert answers((tuple(plain(v) for v in row.values()) for row in arrow_rows)) == expected(
            table, predicate, null_is_not_in=True), dnf


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | VALUES["text"], min_size=2, max_size=12).filter(lambda texts: any(texts)), st.data())
def test_like_patterns_mean_the_same_to_the_evaluator_duckdb_and_polars(texts, data):
    table = pa.table({"text": pa.array(texts, pa.string())})
    (column,) = columns_of(table)
    predicate = Like("text", data.draw(like_patterns(column)))
    want = expected(table, predicate)
    connection = duckdb.connect()
    connection.register("t", table)
    assert Counter(connection.sql(f"SELECT text FROM t WHERE {to_sql(predicate)}").fetchall()) == want, predicate
    frame = pl.from_arrow(table)
    assert Counter(frame.filter(to_polars(predicate, dict(frame.schema))).rows()) == want, predicate


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES["text"], min_size=1, max_size=6), st.integers(0, 3), st.data())
def test_like_patterns_hold_at_most_the_wildcards_asked_for(texts, most, data):
    (column,) = columns_of(pa.table({"text": pa.array(texts * 10 + ["%" * 40, "a" * 300], pa.string())}))
    bounded = data.draw(like_patterns(column, most_wildcards=most))
    assert bounded.count("%") <= most


def test_sql_three_valued_logic_of_the_evaluator():
    row = {"a": None, "b": 1}
    assert holds(Compare("a", "=", 1), row) is None
    assert holds(AnyOf((Compare("a", "=", 1), Compare("b", "=", 1))), row) is True
    assert holds(AllOf((Compare("a", "=", 1), Compare("b", "=", 1))), row) is None
    assert holds(AllOf((Compare("a", "=", 1), Compare("b", "=", 2))), row) is False
    assert holds(Among("a", (1,), negated=True), row) is None
    assert holds(Among("a", (1,), negated=True), row, null_is_not_in=True) is True
    assert holds(IsNull("a"), row) is True and holds(IsNull("b", negated=True), row) is True


def test_like_patterns_match_whole_values_with_percent_and_underscore_only():
    assert holds(Like("a", "a%"), {"a": "abc\ndef"}) is True
    assert holds(Like("a", "_b_"), {"a": "ébc"}) is True
    assert holds(Like("a", "a.c"), {"a": "abc"}) is False
    assert holds(Like("a", "b"), {"a": "ab"}) is False


def test_pandas_is_asked_only_what_its_filters_can_say():
    assert to_dnf(AnyOf((Compare("a", "=", 1), AllOf((Compare("b", ">", 2), Among("c", (3, 4))))))) == [
        [("a", "=", 1)], [("b", ">", 2), ("c", "in", [3, 4])]]
    assert to_dnf(AllOf((Compare("a", "=", 1), Like("b", "x%")))) is None
    assert to_dnf(IsNull("a")) is None
