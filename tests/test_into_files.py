"""A flushed batch is cut into files by destination: every row in exactly one file, each file's rows all of
its destination (hive partition and prefix), whichever destination columns hold one value throughout."""

import weakref
from datetime import datetime, timedelta, timezone

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from marketstream.datasets import STOCK
from marketstream.settings import load_settings
from pipelines.consumer import SkipCounter, decode, each_let_go, file_layout, into_files
from sources.kafka_topic import InFlight, PolledMessages

SESSION_OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)

trades = st.lists(st.tuples(st.sampled_from(["AAPL", "MSFT", "X"]), st.sampled_from([0, 1, 7]),
                            st.sampled_from(["alpaca", "synthetic"])), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(trades, st.integers(1, 7))
def test_every_row_lands_once_in_the_file_of_its_destination(drawn, max_rows):
    config = load_settings(s3_endpoint_url=None)
    values = [orjson.dumps({"symbol": symbol, "price": 10.0, "size": 1, "trade_id": f"t{i}", "source": source,
                            "timestamp": (SESSION_OPEN + timedelta(days=day, minutes=i)).isoformat()})
              for i, (symbol, day, source) in enumerate(drawn)]
    batch = PolledMessages("stock_trades", 3, list(range(100, 100 + len(values))), [None] * len(values), values)
    decoded = decode(STOCK, config, SkipCounter("stock"), InFlight(10_000), batch)
    stored = decoded.rows.num_rows if decoded.rows is not None else 0
    layout = file_layout(STOCK, load_settings(s3_endpoint_url=None, batch_max_rows=max_rows))
    files = into_files(layout, ("3", decoded.rows)) if stored else []

    offsets = []
    for key, file in files:
        assert key == f"{file.prefix}|3" and file.table.num_rows <= max_rows
        rows = file.table.to_pylist()
        offsets += [row["kafka_offset"] for row in rows]
        for row in rows:
            source = drawn[row["kafka_offset"] - 100][2]
            assert file.prefix.startswith(config.stock_synthetic_prefix) == (source == "synthetic")
            assert f"ticker={drawn[row['kafka_offset'] - 100][0]}/" in file.prefix
            symbol, day, _ = drawn[row["kafka_offset"] - 100]
            assert dict(file.partition_values) == {"ticker": symbol, "date": (SESSION_OPEN + timedelta(days=day)).date()}
    assert sorted(offsets) == sorted(decoded.rows.column("kafka_offset").to_pylist()) if stored else offsets == []
    # a destination's rows go to as few files as `max_rows` allows
    per_destination = {}
    for _, file in files:
        per_destination.setdefault(file.prefix, []).append(file.table.num_rows)
    assert all(len(counts) == -(-sum(counts) // max_rows) for counts in per_destination.values())


def test_each_flush_of_a_batch_is_let_go_once_it_is_cut_into_files():
    """The batcher emits the flushes of several Kafka partitions at once; each must be freed once its files
    are made, not when the whole batch is, or the peak holds every flush twice."""
    flushes = [(str(p), pa.table({"x": [p]})) for p in range(4)]
    alive = [weakref.ref(table) for _, table in flushes]
    seen = []

    def into(flushed):
        partition = int(flushed[0])
        seen.append([ref() is not None for ref in alive[:partition]])
        return [partition]

    batch, flushes = flushes, None
    assert each_let_go(into)(batch) == [0, 1, 2, 3]
    assert seen == [[], [False], [False, False], [False, False, False]]


def test_a_flush_is_split_by_prefix_a_null_one_being_none_and_copied_only_if_several():
    from sinks.files import PREFIX_COLUMN, by_prefix

    mixed = pa.table({"x": [1, 2, 3, 4], PREFIX_COLUMN: ["", "_synthetic", None, "_synthetic"]})
    assert sorted((prefix, rows.column("x").to_pylist()) for prefix, rows in by_prefix(mixed)) == [
        ("", [1]), ("", [3]), ("_synthetic", [2, 4])]
    one = pa.table({"x": [1, 2], PREFIX_COLUMN: ["_synthetic", "_synthetic"]})
    assert [(prefix, rows is one) for prefix, rows in by_prefix(one)] == [("_synthetic", True)]
    without = pa.table({"x": [1]})
    assert [(prefix, rows is without) for prefix, rows in by_prefix(without)] == [("", True)]
    assert by_prefix(one.slice(0, 0)) == []
