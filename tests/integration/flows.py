"""Dataflow factories for tests that run `python -m bytewax.run` on isolated topics and buckets:
`python -m bytewax.run "tests.integration.flows:stock_consume('topic', 'bucket')" -w 2`."""

from dataclasses import replace

from dataflows.stock_consume import STOCK_TRADES
from marketstream.consumer_flow import build_consumer_flow
from tests.conftest import make_settings


def stock_consume(topic: str, bucket: str, **settings):
    return build_consumer_flow(
        replace(STOCK_TRADES, topic=topic, bucket=bucket), make_settings(kafka_stop_at_end=True, **settings)
    )
