"""Encoding what a lake sink writes (no server)."""

import io

import pyarrow as pa
import pyarrow.parquet as pq

from sinks.files import encode_parquet, offset_range


def rows(offsets):
    return pa.table({"ticker": ["A"] * len(offsets), "price": [float(o) for o in offsets], "kafka_offset": offsets})


def test_a_file_holds_its_rows_sorted_by_kafka_offset():
    table = rows([7, 3, 9, 4])
    read = pq.read_table(io.BytesIO(encode_parquet(table, "zstd")))
    assert read.column("kafka_offset").to_pylist() == [3, 4, 7, 9]
    assert read.column("price").to_pylist() == [3.0, 4.0, 7.0, 9.0]
    assert read.schema == table.schema


def test_only_the_chosen_columns_are_dictionary_encoded():
    metadata = pq.ParquetFile(io.BytesIO(encode_parquet(rows([1, 2]), "zstd", ["ticker"]))).metadata.row_group(0)
    encodings = {metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" in encodings["ticker"] and "RLE_DICTIONARY" not in encodings["price"]


def test_the_offset_range_is_the_first_and_last_offset_whatever_the_order():
    assert offset_range(rows([12, 5, 40, 6])) == (5, 40)
