"""Fake API -> real client -> *_produce -> real Kafka -> *_consume -> real MinIO, read back, per source."""

from dataclasses import replace
from datetime import date, datetime, timezone

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.testing import run_main

from dataflows import bluesky_produce, macro_produce, news_produce
from marketstream.datasets import BLUESKY, MACRO, NEWS
from marketstream import schemas
from pipelines.consumer import build_consumer_flow
from marketstream.lake import lake_filesystem, read_table
from pipelines.api_sources import news_source
from tests.conftest import clock_from, make_settings
from fakes.bluesky import FakeBluesky
from fakes.finnhub import FakeFinnhub
from fakes.fred import FakeFred
from tests.integration.kafka_helpers import produce, read_topic

pytestmark = pytest.mark.integration


def data_folders(settings, bucket: str) -> set[str]:
    """The folders of the bucket's data files (the table's log aside)."""
    return {key.split("/", 1)[1].rsplit("/", 1)[0] for key in lake_filesystem(settings).find(bucket)
            if key.endswith(".parquet") and "/_delta_log/" not in key}


def consume(settings, dataset, topic, bucket):
    run_main(build_consumer_flow(replace(dataset, topic=topic, bucket=bucket), settings.model_copy(update={"kafka_stop_at_end": True})))


@pytest.fixture
def bucket(stack, unique):
    name = f"it-api-{unique}"
    yield name
    fs = lake_filesystem(make_settings())
    if fs.exists(name):
        fs.rm(name, recursive=True)


def test_fred_to_macro_data(bucket, unique):
    topic = f"it_macro_{unique}"
    with FakeFred() as fred:
        fred.add("CPIAUCSL", "2025-12-01", "318.2", "2026-01-13")
        fred.add("CPIAUCSL", "2026-09-01", ".", "2026-10-15")
        fred.add("GDP", "2026-04-01", "31000.5", "2026-07-30")
        settings = make_settings(api_key_fred="fred-test-key", fred_api_url=fred.root_url,
                                 fred_series="cpi:CPIAUCSL,gdp:GDP", produce_for_seconds=2)
        run_main(macro_produce.build_flow(settings, topic=topic))
    assert sorted(m.key() for m in read_topic(settings, topic)) == [b"cpi", b"cpi", b"gdp"]
    produce(settings, topic, [(b"cpi", b'{"alias": "cpi", "value": "high"}')])
    consume(settings, MACRO, topic, bucket)

    table = read_table(settings, bucket, schemas.MACRO_OBSERVATIONS_PARTITIONING, schema=schemas.MACRO_OBSERVATIONS)
    rows = sorted((r["alias"], r["year"], r["series_id"], r["date"], r["value"]) for r in table.to_pylist())
    assert rows == [
        ("cpi", 2025, "CPIAUCSL", date(2025, 12, 1), 318.2),
        ("cpi", 2026, "CPIAUCSL", date(2026, 9, 1), None),
        ("gdp", 2026, "GDP", date(2026, 4, 1), 31000.5),
    ]
    keys = sorted(data_folders(settings, bucket))
    assert keys == ["alias=cpi/year=2025", "alias=cpi/year=2026", "alias=gdp/year=2026"]
    dead = read_topic(settings, f"{topic}.dlq")
    assert len(dead) == 1 and b"series_id" in dict(dead[0].headers())["dlq.reason"]


def test_finnhub_to_finnhub_data(bucket, unique):
    topic = f"it_news_{unique}"
    with FakeFinnhub() as finnhub:
        finnhub.publish("AAPL", 11, datetime(2026, 11, 24, 14, 5, tzinfo=timezone.utc), "Apple ships")
        finnhub.publish("ADBE", 12, datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc), "Adobe at night")
        settings = make_settings(finnhub_api_key="finnhub-test-token", finnhub_api_url=finnhub.api_url,
                                 news_poll_seconds=1, finnhub_calls_per_minute=60, produce_for_seconds=2.5)
        # the producer asks for the news of its today and yesterday: that is 2026-11-25 here, whatever the day
        clock = clock_from(datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc))
        run_main(news_produce.build_flow(settings, topic=topic, source=news_source(settings, now=clock)))
    consume(settings, NEWS, topic, bucket)

    table = read_table(settings, bucket, schemas.NEWS_ARTICLES_PARTITIONING, schema=schemas.NEWS_ARTICLES)
    rows = sorted((r["ticker"], r["date"], r["id"], r["headline"]) for r in table.to_pylist())
    assert rows == [("AAPL", date(2026, 11, 24), 11, "Apple ships"), ("ADBE", date(2026, 11, 24), 12, "Adobe at night")]
    assert table.schema.field("datetime").type == schemas.TIMESTAMP


def test_bluesky_to_bluesky_data_with_readable_reversible_keyword_partitions_and_tickers_from_postgresql(bucket, unique):
    topic = f"it_bluesky_{unique}"
    with FakeBluesky() as bluesky:
        bluesky.post(1, "Tim Cook talks earnings", datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc))
        bluesky.post(2, "Sam's Club opens", datetime(2026, 11, 24, 23, 0, tzinfo=timezone.utc), lang=None)
        settings = make_settings(bluesky_identifier="tester.bsky.social", bluesky_password="app-pass-1234",
                                 bluesky_api_url=bluesky.url, bluesky_keywords="earnings",
                                 bluesky_keyword_delay_seconds=0, produce_for_seconds=4)
        run_main(bluesky_produce.build_flow(settings, topic=topic))
    consume(settings, BLUESKY, topic, bucket)

    table = read_table(settings, bucket, schemas.BLUESKY_POSTS_PARTITIONING, schema=schemas.BLUESKY_POSTS)
    rows = sorted((str(r["date"]), r["keyword"], r["text"], r["language"], r["tickers"]) for r in table.to_pylist())
    assert rows == [  # tickers: whom the keyword stands for in companies_info (stack/init.sql), or the market
        ("2026-11-24", "Sam's Club", "Sam's Club opens", None, ["WMT"]),
        ("2026-11-25", "Tim Cook", "Tim Cook talks earnings", "en", ["AAPL"]),
        ("2026-11-25", "earnings", "Tim Cook talks earnings", "en", ["*MARKET*"]),
    ]
    prefixes = sorted(data_folders(settings, bucket))
    assert prefixes == ["date=2026-11-24/keyword=Sam%27s%20Club", "date=2026-11-25/keyword=Tim%20Cook",
                        "date=2026-11-25/keyword=earnings"]
    assert pc.sum(table.column("like_count")).as_py() == 1 + 1 + 2


def earlier(schema):
    """A dataset's schema as it was before the sentiment columns and the posts' tickers (version 1)."""
    return pa.schema([field for field in schema if field.name not in ("sentiment", "sentiment_model", "tickers")])


def test_tables_of_the_earlier_schema_gain_the_new_columns_and_keep_their_rows(bucket, unique):
    """Delta schema evolution on the real store: a news table and a Bluesky table created and written with the
    schema of before are appended to by the consumers of now; their old rows read a null sentiment."""
    from deltalake import DeltaTable, write_deltalake

    options = make_settings().delta_storage_options()
    settings = make_settings()
    lake_filesystem(settings).mkdir(bucket)
    old_article = {"ticker": "AAPL", "date": date(2026, 11, 23), "id": 1, "datetime": datetime(2026, 11, 23, 15, tzinfo=timezone.utc),
                   "headline": "Old news", "summary": "", "source": "s", "url": "u", "image": "", "category": "company",
                   "related": "AAPL", "kafka_partition": 0, "kafka_offset": 0}
    old_post = {"date": date(2026, 11, 23), "keyword": "earnings", "uri": "at://did:plc:a/app.bsky.feed.post/0", "cid": "c",
                "author_handle": "a.bsky.social", "author_did": "did:plc:a", "text": "old post",
                "created_at": datetime(2026, 11, 23, 15, tzinfo=timezone.utc), "indexed_at": datetime(2026, 11, 23, 15, tzinfo=timezone.utc),
                "like_count": 0, "repost_count": 0, "reply_count": 0, "language": "en", "kafka_partition": 0, "kafka_offset": 0}
    for dataset, folder, row in ((NEWS, "news", old_article), (BLUESKY, "bluesky", old_post)):
        schema = pa.schema([*dataset.partitioning, *earlier(dataset.schema)])
        write_deltalake(f"s3://{bucket}/{folder}", pa.Table.from_pylist([row], schema=schema),
                        partition_by=dataset.partitioning.names, storage_options=options)

    article = {**{k: v for k, v in old_article.items() if k not in ("date", "kafka_partition", "kafka_offset")},
               "id": 2, "datetime": "2026-11-24T15:00:00.000000Z", "headline": "Apple beats estimates, a great quarter"}
    post = {**{k: v for k, v in old_post.items() if k not in ("date", "kafka_partition", "kafka_offset")},
            "uri": "at://did:plc:a/app.bsky.feed.post/1", "text": "awful crash, terrible day",
            "created_at": "2026-11-24T15:00:00.000000Z", "indexed_at": "2026-11-24T15:00:01.000000Z"}
    for dataset, folder, message in ((NEWS, "news", article), (BLUESKY, "bluesky", post)):
        topic = f"it_{folder}_evolve_{unique}"
        produce(settings, topic, [(b"k", orjson.dumps(message))])
        consume(settings, dataset, topic, f"{bucket}/{folder}")

        table = DeltaTable(f"s3://{bucket}/{folder}", storage_options=options)
        assert table.schema().to_arrow().names == [*dataset.partitioning.names, *dataset.schema.names]
        rows = sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["kafka_offset"] if r["date"] != date(2026, 11, 23) else -1)
        assert [(r["sentiment"] is None, r["sentiment_model"]) for r in rows] == [(True, None), (False, "vader-3.3.2")]
        assert (rows[1]["sentiment"] > 0.5) if folder == "news" else (rows[1]["sentiment"] < -0.5)
        if folder == "bluesky":  # the message carries no tickers (an earlier producer's): null, as the old row's
            assert [r["tickers"] for r in rows] == [None, None]
