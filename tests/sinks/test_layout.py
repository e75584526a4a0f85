from datetime import date
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.layout import (
    HIVE_NULL,
    BatchObject,
    UnsafeKeyError,
    batch_object_name,
    encode_partition_value,
    object_key,
    parse_batch_object_name,
    partition_path,
)


def test_partition_path_is_hive_style():
    assert partition_path([("ticker", "AAPL"), ("date", date(2026, 11, 24))]) == "ticker=AAPL/date=2026-11-24"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("Tim Cook", "Tim%20Cook"),
        ("AT&T", "AT%26T"),
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("BRK.B", "BRK.B"),
        ('say "hi"', "say%20%22hi%22"),
        ("Nestlé", "Nestlé"),
        ("トヨタ", "トヨタ"),
        ("100%", "100%25"),
        ("k=v", "k%3Dv"),
        ("line\nbreak", "line%0Abreak"),
        ("", HIVE_NULL),
        (None, HIVE_NULL),
    ],
)
def test_values_are_encoded_readably_and_safely(value, encoded):
    assert encode_partition_value(value) == encoded


@given(st.text(min_size=1, max_size=60))
def test_any_value_is_one_safe_segment_that_decodes_back(value):
    encoded = encode_partition_value(value)
    assert "/" not in encoded and "\\" not in encoded
    assert encoded not in (".", "..")
    assert all(char.isprintable() for char in encoded)
    assert unquote(encoded) == value
    object_key("prefix", partition_path([("keyword", value)]), "file.parquet")  # never raises


INCARNATION = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_object_names_are_fixed_by_topic_incarnation_partition_and_offsets():
    name = batch_object_name("stock_trades", INCARNATION, 3, 1200, 1299)
    assert name == f"stock_trades-i{INCARNATION}-p0003-00000000000000001200-00000000000000001299.parquet"
    assert name == batch_object_name("stock_trades", INCARNATION, 3, 1200, 1299)


@pytest.mark.parametrize("bad", ["../x", "a/../b", "a//b", "./a", "a\\b", "a/\x00"])
def test_object_key_refuses_segments_that_escape(bad):
    with pytest.raises(UnsafeKeyError):
        object_key("prefix", bad)


def test_object_key_drops_empty_prefixes():
    assert object_key("", "ticker=A/date=2026-11-24", "f.parquet") == "ticker=A/date=2026-11-24/f.parquet"


@given(st.from_regex(r"[a-z_.\-]{1,20}", fullmatch=True), st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
       st.integers(0, 9999), st.integers(0, 10**18), st.integers(0, 10**18))
def test_batch_object_names_parse_back(topic, incarnation, partition, first, last):
    name = batch_object_name(topic, incarnation, partition, first, last)
    parsed = parse_batch_object_name(f"ticker=A/date=2026-11-24/{name}", topic)
    assert parsed == BatchObject(incarnation, partition, first, last)


def test_names_written_before_incarnations_parse_without_one():
    name = "stock_trades-p0001-00000000000000000005-00000000000000000009.parquet"
    assert parse_batch_object_name(name, "stock_trades") == BatchObject(None, 1, 5, 9)


def test_a_topic_whose_name_extends_another_is_not_mistaken_for_it():
    name = batch_object_name("stock_trades-p0001", INCARNATION, 2, 5, 9)
    assert parse_batch_object_name(name, "stock_trades") is None
    assert parse_batch_object_name(name, "stock_trades-p0001") == BatchObject(INCARNATION, 2, 5, 9)


@pytest.mark.parametrize("other", ["notes.txt", "x-p1-1-2.parquet", "stock_trades-p0001-00000000000000000001.parquet",
                                   "other_topic-p0001-00000000000000000001-00000000000000000002.parquet"])
def test_other_object_names_are_not_batches(other):
    assert parse_batch_object_name(other, "stock_trades") is None
