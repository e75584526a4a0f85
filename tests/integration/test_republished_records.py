"""Records an at-least-once API producer publishes twice are stored once: real Kafka -> *_consume -> real
MinIO, with the repeats in the same poll, in a later run, after compaction and in another Kafka partition."""

import random
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import orjson
from bytewax.testing import run_main
from confluent_kafka.admin import AdminClient, NewPartitions
from deltalake import DeltaTable

from marketstream.datasets import BLUESKY, MACRO, NEWS
from marketstream.lake import lake_filesystem, read_delta
from pipelines.consumer import build_consumer_flow
from pipelines.maintenance import maintain
from sinks.delta_commits import app_id_prefix
from tests.integration.kafka_helpers import produce, read_topic

UTC = timezone.utc


def consume(settings, dataset, topic, bucket):
    """One run of the dataset's consumer over everything in `topic`, in small polls and files."""
    small = settings.model_copy(update={"kafka_stop_at_end": True, "batch_max_rows": 4,
                                        "kafka_poll_max_messages": 25, "batch_max_age_seconds": 0.05})
    run_main(build_consumer_flow(replace(dataset, topic=topic, bucket=bucket), small))


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def post(number: int, keyword: str, likes: int) -> tuple[bytes, bytes]:
    created = datetime(2026, 11, 24, 9, tzinfo=UTC) + timedelta(minutes=number * 37)
    body = {"uri": f"at://did:plc:author/app.bsky.feed.post/{number:06d}", "cid": f"bafy{number:x}",
            "author_handle": "author.bsky.social", "author_did": "did:plc:author", "text": f"post {number}",
            "created_at": stamp(created), "indexed_at": stamp(created + timedelta(seconds=2)),
            "like_count": likes, "repost_count": 0, "reply_count": 0, "language": "en", "keyword": keyword}
    return keyword.encode(), orjson.dumps(body)


def handled_through(settings, dataset, topic, bucket) -> dict[int, int]:
    """Per Kafka partition of `topic`, (its last offset, the version its transaction id has in the table)."""
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())
    prefix = app_id_prefix(dataset.name, topic, settings.kafka_cluster().topic_incarnation(topic))
    last = {}
    for message in read_topic(settings, topic):
        last[message.partition()] = max(last.get(message.partition(), -1), message.offset())
    return {partition: (offset, table.transaction_version(f"{prefix}:{partition}")) for partition, offset in last.items()}


def test_posts_published_again_are_stored_once_whenever_and_wherever_they_come_back(lake):
    settings, topic, bucket = lake
    rng = random.Random(11)
    keywords = ("earnings", "stock market", "nvidia")
    originals = {number: post(number, rng.choice(keywords), number) for number in range(60)}
    first_run = [originals[n] for n in range(40)]
    # published again at once (same poll), with other like counts as a later search would see them
    first_run += [post(n, orjson.loads(originals[n][1])["keyword"], 1000 + n) for n in range(0, 40, 3)]
    produce(settings, topic, first_run)
    consume(settings, BLUESKY, topic, bucket)

    # a restart of the producer: part of what it published before comes again, with new records
    second_run = [post(n, orjson.loads(originals[n][1])["keyword"], 2000 + n) for n in range(20, 40)]
    second_run += [originals[n] for n in range(40, 60)]
    produce(settings, topic, second_run)
    consume(settings, BLUESKY, topic, bucket)

    report = maintain(settings, "bluesky", f"s3://{bucket}", today=date(2026, 12, 1), closed_after_days=0,
                      vacuum=False)
    assert report.files_compacted > 0

    # after compaction, and from a Kafka partition the keyword was not published to before
    admin = AdminClient(settings.kafka_client_config())
    admin.create_partitions([NewPartitions(topic, 9)])[topic].result(30)
    third_run = [post(n, orjson.loads(originals[n][1])["keyword"], 3000 + n) for n in range(0, 60, 2)]
    for index, (key, value) in enumerate(third_run):
        produce(settings, topic, [(key, value)], partition=6 + index % 3)
    consume(settings, BLUESKY, topic, bucket)

    rows = read_delta(settings, bucket).to_pylist()
    stored = sorted((row["keyword"], row["uri"]) for row in rows)
    expected = sorted((orjson.loads(value)["keyword"], orjson.loads(value)["uri"]) for _, value in originals.values())
    assert stored == expected  # each post once
    assert all(row["like_count"] == int(row["uri"][-6:]) for row in rows)  # the first arrival is the one kept
    # every offset handled, those of the records left out too: a restart does not read them again
    assert all(last == version for last, version in handled_through(settings, BLUESKY, topic, bucket).values())


def test_news_and_macro_published_again_are_stored_once_and_a_revision_is_kept(lake):
    settings, topic, bucket = lake
    news_topic, macro_topic = f"{topic}_news", f"{topic}_macro"

    def article(number: int, ticker: str, headline: str) -> tuple[bytes, bytes]:
        body = {"id": number, "ticker": ticker, "datetime": "2026-11-24T14:05:00.000000Z", "headline": headline,
                "summary": "", "source": "Fake", "url": f"https://news.example/{number}", "image": "",
                "category": "company", "related": ticker}
        return ticker.encode(), orjson.dumps(body)

    def observation(observed: str, vintage: str, value: float, fetched: str) -> tuple[bytes, bytes]:
        body = {"alias": "gdp", "series_id": "GDP", "date": observed, "value": value, "realtime_start": vintage,
                "fetched_at": fetched}
        return b"gdp", orjson.dumps(body)

    # the same article is news of two tickers: one row in each ticker's partition
    produce(settings, news_topic, [article(7, "AAPL", "first"), article(7, "MSFT", "first"), article(8, "AAPL", "x")])
    consume(settings, NEWS, news_topic, bucket)
    produce(settings, news_topic, [article(7, "AAPL", "again"), article(9, "AAPL", "new")])
    consume(settings, NEWS, news_topic, bucket)
    news = sorted((row["ticker"], row["id"], row["headline"]) for row in read_delta(settings, bucket).to_pylist())
    assert news == [("AAPL", 7, "first"), ("AAPL", 8, "x"), ("AAPL", 9, "new"), ("MSFT", 7, "first")]

    macro_bucket = f"{bucket}-macro"
    try:
        produce(settings, macro_topic, [observation("2026-07-01", "2026-08-28", 31000.5, "2026-11-24T10:00:00Z")])
        consume(settings, MACRO, macro_topic, macro_bucket)
        produce(settings, macro_topic, [
            observation("2026-07-01", "2026-08-28", 31000.5, "2026-11-24T11:00:00Z"),  # published again
            observation("2026-07-01", "2026-09-25", 31012.0, "2026-11-24T11:00:00Z"),  # a revision: a new vintage
        ])
        consume(settings, MACRO, macro_topic, macro_bucket)
        macro = sorted((row["date"], row["realtime_start"], row["value"], row["fetched_at"].hour)
                       for row in read_delta(settings, macro_bucket).to_pylist())
        assert macro == [(date(2026, 7, 1), date(2026, 8, 28), 31000.5, 10),
                         (date(2026, 7, 1), date(2026, 9, 25), 31012.0, 11)]
        assert [version for _, version in handled_through(settings, MACRO, macro_topic, macro_bucket).values()] == [2]
    finally:
        fs = lake_filesystem(settings)
        if fs.exists(macro_bucket):
            fs.rm(macro_bucket, recursive=True)
