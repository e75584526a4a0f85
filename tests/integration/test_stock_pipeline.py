"""Trades -> real Kafka -> stock_consume -> real MinIO, read back with pyarrow.dataset and DuckDB."""

from dataclasses import replace

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main

from marketstream.datasets import STOCK
from marketstream import schemas
from pipelines.consumer import build_consumer_flow
from marketstream.lake import lake_filesystem, read_table
from sinks import parquet
from sinks.parquet import FULL_LISTING_MAX_OBJECTS
from tests.conftest import make_settings
from tests.integration.kafka_helpers import produce, read_topic

pytestmark = pytest.mark.integration


def trade(symbol: str, trade_id: str, ts: str = "2026-11-24T15:30:00.000001Z", source: str = "alpaca", **extra) -> bytes:
    return orjson.dumps({"symbol": symbol, "price": 101.5, "size": 20, "timestamp": ts, "exchange": "V",
                         "conditions": ["@"], "trade_id": trade_id, "tape": "C", "source": source, **extra})


@pytest.fixture
def pipeline(stack, unique):
    settings = make_settings(kafka_stop_at_end=True, kafka_topic_partitions=3, batch_max_rows=40)
    dataset = replace(STOCK, topic=f"it_trades_{unique}", bucket=f"it-stock-{unique}")
    yield settings, dataset
    fs = lake_filesystem(settings)
    if fs.exists(dataset.bucket):
        fs.rm(dataset.bucket, recursive=True)


def test_trades_land_in_minio_exactly_with_bad_ones_dead_lettered(pipeline):
    settings, dataset = pipeline
    tickers = ["AAPL", "MSFT", "BRK.B"]
    good = [(t.encode(), trade(t, f"{t}-{i}", ts=f"2026-11-{24 + i % 2}T15:30:00.{i:06d}Z"))
            for i in range(100) for t in tickers]
    synthetic = [(b"NVDA", trade("NVDA", f"syn-{i}", ts="2026-11-24T03:00:00Z", source="synthetic")) for i in range(10)]
    out_of_session = [(b"AAPL", trade("AAPL", "late", ts="2026-11-24T22:00:00Z"))]
    bad = [
        (b"AAPL", b"{truncated"),
        (b"AAPL", trade("AAPL", "neg", size=-5)),
        (b"X", trade("../etc", "escape")),
        (None, None),
        (b"AAPL", b"\xff\xfe\x00"),
    ]
    produce(settings, dataset.topic, good + synthetic + out_of_session + bad)

    run_main(build_consumer_flow(dataset, settings))

    real = read_table(settings, dataset.bucket, schemas.STOCK_TRADES_PARTITIONING, schema=schemas.STOCK_TRADES)
    assert real.num_rows == len(good)
    assert sorted(real.column("trade_id").to_pylist()) == sorted(orjson.loads(v)["trade_id"] for _, v in good)
    assert real.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert real.schema.field("date").type == pa.date32()
    assert set(real.column("ticker").to_pylist()) == set(tickers)
    row = real.filter(pa.compute.equal(real.column("trade_id"), "AAPL-7")).to_pylist()[0]
    assert (row["price"], row["size"], row["exchange"], row["conditions"], row["source"]) == (101.5, 20.0, "V", ["@"], "alpaca")
    assert str(row["date"]) == "2026-11-25" and row["timestamp"].microsecond == 7

    synthetic_rows = read_table(settings, dataset.bucket, schemas.STOCK_TRADES_PARTITIONING, prefix="_synthetic")
    assert sorted(synthetic_rows.column("trade_id").to_pylist()) == sorted(f"syn-{i}" for i in range(10))
    assert set(synthetic_rows.column("date").to_pylist()) == {__import__("datetime").date(2026, 11, 23)}

    fs = lake_filesystem(settings)
    keys = [k.split("/", 1)[1] for k in fs.find(dataset.bucket) if "_delta_log/" not in k]
    assert all(k.startswith(("ticker=", "_synthetic/ticker=")) for k in keys)
    assert any(k.startswith("ticker=BRK.B/date=2026-11-24/") for k in keys)
    assert all(k.endswith(".parquet") and f"/part-{dataset.topic}-i" in k for k in keys)

    dead = read_topic(settings, dataset.dead_letter_topic)
    reasons = {m.value(): dict(m.headers())["dlq.reason"].decode() for m in dead}
    assert len(dead) == len(bad)
    assert reasons[b"{truncated"].startswith("not valid JSON")
    assert "'size' must be finite and > 0" in reasons[trade("AAPL", "neg", size=-5)]
    assert "not a valid ticker" in reasons[trade("../etc", "escape")]
    assert reasons[None] == "empty message value"
    assert all(dict(m.headers())["dlq.topic"] == dataset.topic.encode() for m in dead)


def test_duckdb_reads_a_plain_parquet_lake_with_hive_partitions(pipeline):
    settings, dataset = pipeline
    settings = settings.model_copy(update={"lake_format": "parquet"})
    produce(settings, dataset.topic, [(b"AAPL", trade("AAPL", str(i))) for i in range(25)]
            + [(b"MSFT", trade("MSFT", f"m{i}", ts="2026-11-25T15:00:00Z")) for i in range(5)])
    run_main(build_consumer_flow(dataset, settings))

    con = duckdb.connect()
    con.register_filesystem(lake_filesystem(settings))
    rows = con.execute(
        f"SELECT ticker, CAST(date AS VARCHAR), count(*), sum(size) FROM read_parquet('s3://{dataset.bucket}/ticker=*/date=*/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [("AAPL", "2026-11-24", 25, 500.0), ("MSFT", "2026-11-25", 5, 100.0)]


def test_only_columns_with_few_values_are_dictionary_encoded(pipeline):
    settings, dataset = pipeline
    produce(settings, dataset.topic, [(b"AAPL", trade("AAPL", str(i))) for i in range(30)])
    run_main(build_consumer_flow(dataset, settings))

    fs = lake_filesystem(settings)
    [path] = [key for key in fs.find(dataset.bucket) if key.endswith(".parquet")]
    with fs.open(path, "rb") as handle:
        metadata = pq.ParquetFile(handle).metadata
    group = metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    dictionary = {path for path, used in encodings.items() if "RLE_DICTIONARY" in used}
    assert dictionary == {"exchange", "conditions.list.element", "tape", "source", "kafka_partition"}
    assert set(encodings) - dictionary == {"trade_id", "timestamp", "price", "size", "kafka_offset"}


@pytest.mark.parametrize("full_listing_max_objects", [FULL_LISTING_MAX_OBJECTS, 0], ids=["bucket-listed-whole", "per-prefix"])
def test_re_reading_the_topic_with_other_batch_boundaries_adds_no_duplicates(pipeline, monkeypatch, full_listing_max_objects):
    """The sink learns what is stored from one listing of a small bucket, or else one per prefix."""
    monkeypatch.setattr(parquet, "FULL_LISTING_MAX_OBJECTS", full_listing_max_objects)
    settings, dataset = pipeline
    produce(settings, dataset.topic, [(b"AAPL", trade("AAPL", str(i))) for i in range(60)])
    run_main(build_consumer_flow(dataset, settings.model_copy(update={"batch_max_rows": 7})))
    produce(settings, dataset.topic, [(b"AAPL", trade("AAPL", str(i))) for i in range(60, 100)]
            + [(b"MSFT", trade("MSFT", f"m{i}")) for i in range(10)])
    # a restart without recovery re-reads everything from the start, cutting batches elsewhere
    run_main(build_consumer_flow(dataset, settings.model_copy(update={"batch_max_rows": 13})))
    run_main(build_consumer_flow(dataset, settings.model_copy(update={"batch_max_rows": 1000})))

    table = read_table(settings, dataset.bucket, schemas.STOCK_TRADES_PARTITIONING)
    ids = table.column("trade_id").to_pylist()
    assert len(ids) == 110 and len(set(ids)) == 110
    offsets = sorted(zip(table.column("kafka_partition").to_pylist(), table.column("kafka_offset").to_pylist()))
    assert len(set(offsets)) == len(offsets)
