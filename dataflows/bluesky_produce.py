"""Bluesky posts for static financial keywords and every company's name and related words -> Kafka topic
`bluesky`, key = keyword. Run with recovery (-r) so the URIs already published survive restarts."""

from pipelines.producer import producer_dataflow
from marketstream.runtime import COMPANIES_PRODUCER_NEEDS, lazy_flow
from pipelines.connectors import bluesky_posts_source

build_flow = producer_dataflow("bluesky_produce", "bluesky", bluesky_posts_source)
__getattr__ = lazy_flow(build_flow, COMPANIES_PRODUCER_NEEDS)
