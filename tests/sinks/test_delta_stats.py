"""`sinks.delta_stats` records for a file exactly what delta-rs's own writer records for the same rows."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.delta_stats import bounded_columns, file_stats, has_full_stats, indexed_columns

UTC = timezone.utc
TIMESTAMP = pa.timestamp("us", tz="UTC")

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=90)
COLUMNS = {
    "text": (pa.string(), st.one_of(_text, st.sampled_from(["a" * 65, "\x7f" * 70, "\U0010ffff" * 17, "é" * 33, "\ud7ff" * 30]))),
    "whole": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "small": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "real": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "moment": (TIMESTAMP, st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC))),
    "day": (pa.date32(), st.dates(date(1, 1, 1), date(9999, 12, 31))),
    "flag": (pa.bool_(), st.booleans()),
    "words": (pa.list_(pa.string()), st.lists(_text, max_size=3)),
}


@st.composite
def tables(draw) -> pa.Table:
    rows = draw(st.integers(1, 12))
    names = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=len(COLUMNS), unique=True))
    columns = {"part": pa.array(["p"] * rows)}
    for name in names:
        kind, values = COLUMNS[name]
        nulls = draw(st.sampled_from(["none", "some", "all"]))
        column = [None if nulls == "all" or (nulls == "some" and draw(st.booleans())) else draw(values)
                  for _ in range(rows)]
        columns[name] = pa.array(column, kind)
    return pa.table(columns)


def _delta_rs_stats(table: pa.Table, folder: Path, **options) -> dict:
    write_deltalake(str(folder), table, partition_by=["part"], **options)
    (log,) = [line for line in (folder / "_delta_log" / "00000000000000000000.json").read_text().split("\n")
              if line.startswith('{"add"')]
    return json.loads(json.loads(log)["add"]["stats"])


def _same(ours: object, theirs: object) -> bool:
    """Equal JSON values, floats compared by value (delta-rs writes 1e-7 where Python writes 1e-07)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(_same(ours[k], theirs[k]) for k in ours)
    return ours == theirs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables())
def test_the_stats_of_a_file_are_those_delta_rs_writes_for_the_same_rows(table, tmp_path_factory):
    theirs = _delta_rs_stats(table, tmp_path_factory.mktemp("table"))
    ours = json.loads(file_stats(table, indexed_columns(table.schema, ["part"], {})))
    assert _same(ours, theirs), (ours, theirs)


def test_the_indexed_columns_follow_the_table_properties_as_delta_rs_does(tmp_path):
    table = pa.table({"a": [1], "part": ["p"], "b": [2.0], "c": ["x"]})
    for configuration in ({"delta.dataSkippingNumIndexedCols": "2"}, {"delta.dataSkippingStatsColumns": "c,a"},
                          {"delta.dataSkippingNumIndexedCols": "0"}):
        theirs = _delta_rs_stats(table, tmp_path / str(len(list(tmp_path.iterdir()))), configuration=configuration)
        ours = json.loads(file_stats(table, indexed_columns(table.schema, ["part"], configuration)))
        assert ours == theirs


def test_a_file_missing_any_bound_is_not_fully_described():
    table = pa.table({"s": ["x", "y"], "o": [5, 6], "none": pa.array([None, None], pa.string()),
                      "l": pa.array([["a"], []], pa.list_(pa.string()))})
    columns = bounded_columns(table.schema, indexed_columns(table.schema, [], {}))
    assert columns == ["s", "o", "none"]
    assert has_full_stats(file_stats(table, columns), columns)
    partial = json.dumps({"numRecords": 2, "minValues": {"o": 5}, "maxValues": {"o": 6}})
    assert not has_full_stats(partial, columns)
    assert not has_full_stats(None, columns)
    no_nulls = json.dumps({"numRecords": 2, "minValues": {"o": 5, "s": "x"}, "maxValues": {"o": 6, "s": "y"}})
    assert not has_full_stats(no_nulls, columns)


def test_a_reader_filtering_on_any_column_finds_the_rows_of_a_file_added_with_these_stats(tmp_path):
    """The defect this module fixes: a file whose stats bound only `kafka_offset` reads as empty to a filter on
    any other column."""
    import os
    import time

    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    schema = pa.schema([("ticker", pa.string()), ("source", pa.string()), ("at", TIMESTAMP), ("kafka_offset", pa.int64())])
    rows = pa.table({"source": ["alpaca", "synthetic"], "at": pa.array([datetime(2026, 11, 24, 15, tzinfo=UTC)] * 2, TIMESTAMP),
                     "kafka_offset": [5, 6]})
    answers = {}
    for label, stats in (("partial", json.dumps({"numRecords": 2, "minValues": {"kafka_offset": 5},
                                                 "maxValues": {"kafka_offset": 6}})),
                         ("full", file_stats(rows, indexed_columns(schema, ["ticker"], {})))):
        folder = tmp_path / label
        DeltaTable.create(str(folder), schema, partition_by=["ticker"])
        (folder / "ticker=A").mkdir()
        pq.write_table(rows, folder / "ticker=A" / "f.parquet")
        add = AddAction("ticker=A/f.parquet", os.path.getsize(folder / "ticker=A" / "f.parquet"), {"ticker": "A"},
                        int(time.time() * 1000), True, stats)
        DeltaTable(str(folder)).create_write_transaction([add], mode="append", schema=schema, partition_by=["ticker"])
        dataset = DeltaTable(str(folder)).to_pyarrow_dataset()
        answers[label] = dataset.to_table(filter=ds.field("source") == "alpaca").num_rows
    assert answers == {"partial": 0, "full": 1}


@settings(max_examples=300, deadline=None)
@given(tables(), st.lists(st.integers(0, 12), max_size=4))
def test_the_stats_of_several_files_at_once_are_those_of_each_file_alone(table, cuts):
    from sinks.delta_stats import files_stats

    bounds = [0, *sorted({min(cut, table.num_rows) for cut in cuts}), table.num_rows]
    files = [table.slice(start, end - start) for start, end in zip(bounds, bounds[1:]) if end > start]

    columns = indexed_columns(files[0].schema, ["part"], {})
    assert [json.loads(stats) for stats in files_stats(files, columns)] == \
        [json.loads(file_stats(table, columns)) for table in files]
