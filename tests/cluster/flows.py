"""Dataflow factories for the cluster tests: the stock consumer on a topic and bucket of the test's own,
configured like `python -m bytewax.run dataflows.stock_consume` from the environment alone
(`python -m bytewax.run "tests.cluster.flows:stock_consume('topic', 'bucket')"`)."""

from dataclasses import replace

from marketstream.datasets import STOCK
from pipelines.consumer import build_consumer_flow
from pipelines.runtime import build_or_exit, consumer_needs


def stock_consume(topic: str, bucket: str):
    return build_or_exit(lambda config: build_consumer_flow(replace(STOCK, topic=topic, bucket=bucket), config),
                         consumer_needs(bucket))
