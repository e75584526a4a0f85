"""The output formats of `marketstream sql`: what each writes for the rows it is given, batch by batch."""

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings, strategies as st

from pipelines.query_output import TextSink, result_format

UTC = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("ticker", pa.string()), ("at", UTC), ("price", pa.float64()), ("size", pa.int64()),
                    ("conditions", pa.list_(pa.string())), ("day", pa.date32())])

texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc))
rows = st.lists(st.fixed_dictionaries({
    "ticker": st.one_of(st.none(), texts), "at": moments,
    "price": st.floats(allow_nan=False, allow_infinity=False, width=64), "size": st.integers(-2**63, 2**63 - 1),
    "conditions": st.one_of(st.none(), st.lists(st.one_of(st.none(), texts), max_size=3)),
    "day": st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 1, 1)),
}), max_size=30)


def written(name: str, batches: list[pa.RecordBatch], schema: pa.Schema = SCHEMA) -> bytes:
    stream = io.BytesIO()
    output = result_format(name, stream)
    output.begin(schema)
    for batch in batches:
        output.write(batch)
    output.end()
    return stream.getvalue()


def in_batches(drawn: list[dict], schema: pa.Schema = SCHEMA, size: int = 7) -> list[pa.RecordBatch]:
    return [pa.RecordBatch.from_pylist(drawn[i:i + size], schema=schema) for i in range(0, len(drawn), size)]


@settings(max_examples=150, deadline=None)
@given(rows)
def test_json_is_one_object_per_row_with_iso_times_and_the_values_given(drawn):
    lines = written("json", in_batches(drawn)).decode().splitlines()
    assert len(lines) == len(drawn)
    for line, row in zip(lines, drawn):
        read = json.loads(line)
        assert read["at"].endswith("Z") and datetime.fromisoformat(read["at"]) == row["at"]
        assert date.fromisoformat(read["day"]) == row["day"]
        assert {k: v for k, v in read.items() if k not in ("at", "day")} == {
            k: v for k, v in row.items() if k not in ("at", "day")}


@settings(max_examples=150, deadline=None)
@given(rows)
def test_csv_has_a_header_and_a_row_per_row_nested_values_as_json(drawn):
    read = list(csv.reader(io.StringIO(written("csv", in_batches(drawn)).decode(), newline="")))
    assert read[0] == SCHEMA.names and len(read) == len(drawn) + 1
    for line, row in zip(read[1:], drawn):
        assert line[0] == (row["ticker"] or "")  # Arrow writes a null and an empty text alike
        assert datetime.fromisoformat(line[1]) == row["at"]
        assert float(line[2]) == row["price"] and int(line[3]) == row["size"]
        assert (json.loads(line[4]) if line[4] else None) == row["conditions"]
        assert date.fromisoformat(line[5]) == row["day"]


@settings(max_examples=100, deadline=None)
@given(rows)
def test_parquet_keeps_the_types_and_values(drawn):
    table = pq.read_table(io.BytesIO(written("parquet", in_batches(drawn))))
    assert table.schema.equals(SCHEMA) and table.to_pylist() == drawn


def test_json_writes_what_it_cannot_say_natively_in_a_lossless_form():
    schema = pa.schema([("whole", pa.decimal128(38, 0)), ("cents", pa.decimal128(10, 2)), ("raw", pa.binary()),
                        ("ns", pa.timestamp("ns", tz="UTC")), ("naive", pa.timestamp("us")), ("nan", pa.float64())])
    batch = pa.RecordBatch.from_pylist([{"whole": Decimal(12), "cents": Decimal("1.50"), "raw": b"\x00\xff",
                                         "ns": 1_764_000_000_123_456_789, "naive": datetime(2026, 11, 24, 9, 30),
                                         "nan": float("nan")}], schema=schema)
    assert json.loads(written("json", [batch], schema)) == {
        "whole": 12, "cents": "1.50", "raw": "AP8=", "ns": "2025-11-24T16:00:00.123456789+00:00",
        "naive": "2026-11-24T09:30:00", "nan": None}


def test_the_table_format_aligns_numbers_right_and_the_rest_left():
    batch = pa.RecordBatch.from_pylist([{"ticker": "AAPL", "n": 5}, {"ticker": "T", "n": 1200}],
                                       schema=pa.schema([("ticker", pa.string()), ("n", pa.int64())]))
    assert written("table", [batch], batch.schema).decode().splitlines() == [
        "ticker     n",
        "AAPL       5",
        "T       1200",
    ]


@given(st.text(max_size=20))
def test_the_table_format_escapes_every_control_character(text):
    schema = pa.schema([("text", pa.string())])
    page = written("table", [pa.RecordBatch.from_pylist([{"text": text}], schema=schema)], schema).decode()
    assert len(page.splitlines()) == 2  # the header and one line for the row, whatever the text holds
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in page)


def test_the_table_format_of_no_rows_is_its_header():
    schema = pa.schema([("ticker", pa.string()), ("trades", pa.int64())])
    assert written("table", [], schema).decode() == "ticker  trades\n"


def test_the_table_format_writes_nulls_times_and_lists_readably():
    schema = pa.schema([("at", UTC), ("conditions", pa.list_(pa.string())), ("x", pa.float64())])
    batch = pa.RecordBatch.from_pylist([{"at": datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc) + timedelta(microseconds=5),
                                         "conditions": ["@", "I"], "x": None}], schema=schema)
    assert written("table", [batch], schema).decode().splitlines()[1] == \
        "2026-11-24 14:30:00.000005+00:00  [\"@\",\"I\"]   NULL"  # conditions: as wide as its name


def test_a_text_stream_receives_the_bytes_decoded():
    out = io.StringIO()
    TextSink(out).write("é\n".encode())
    assert out.getvalue() == "é\n"
