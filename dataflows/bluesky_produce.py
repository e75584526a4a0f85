"""Bluesky posts for static financial keywords and every company's name and related words -> Kafka topic
`bluesky`, key = keyword. Run with recovery (-r) so the URIs already published survive restarts."""

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.producer_flow import build_producer_flow
from marketstream.runtime import lazy_flow
from marketstream.settings import Settings, get_settings
from sources.bluesky_posts import bluesky_source

TOPIC = "bluesky"


def build_flow(
    settings: Settings | None = None, *, topic: str = TOPIC, source: Source | None = None, sink: Sink | None = None
) -> Dataflow:
    settings = settings or get_settings()
    if source is None:
        settings.require("bluesky_identifier", "bluesky_password",
                         "postgres_host", "postgres_db", "postgres_user", "postgres_password")
    return build_producer_flow("bluesky_produce", settings, source or bluesky_source(settings), topic, sink)


__getattr__ = lazy_flow(build_flow)
