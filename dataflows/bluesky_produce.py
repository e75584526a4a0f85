"""Bluesky posts for static financial keywords and every company's name and related words -> Kafka topic
`bluesky`, key = keyword. Run with recovery (-r) so the URIs already published survive restarts."""

from bytewax.dataflow import Dataflow

from marketstream.datasets import BLUESKY
from pipelines.api_sources import bluesky_posts_source
from pipelines.producer import producer_dataflow
from pipelines.runtime import COMPANIES_PRODUCER_NEEDS, build_or_exit

build_flow = producer_dataflow(BLUESKY, bluesky_posts_source)


def flow() -> Dataflow:
    return build_or_exit(build_flow, COMPANIES_PRODUCER_NEEDS)
