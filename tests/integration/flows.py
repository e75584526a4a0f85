"""Dataflow factories for tests that run `python -m bytewax.run` on isolated topics and buckets:
`python -m bytewax.run "tests.integration.flows:stock_consume('topic', 'bucket')" -w 2`."""

from dataclasses import replace

from dataflows.stock_consume import STOCK_TRADES
from marketstream import shutdown
from marketstream.consumer_flow import build_consumer_flow
from marketstream.runtime import configure_logging
from tests.conftest import make_settings


def stock_consume(topic: str, bucket: str, **settings):
    configure_logging()
    shutdown.install()
    return build_consumer_flow(
        replace(STOCK_TRADES, topic=topic, bucket=bucket), make_settings(**{"kafka_stop_at_end": True, **settings})
    )


def macro_produce(topic: str, **settings):
    from dataflows.macro_produce import build_flow

    configure_logging()
    shutdown.install()
    return build_flow(make_settings(**settings), topic=topic)
