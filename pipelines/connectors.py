"""The connectors every dataflow shares, built from the settings: with `pipelines.api_sources`, the places
that turn `Settings` into the plain values sources and sinks take. A missing setting stops here, with one
line naming it, before anything connects. (The API clients are imported only by the producers, so the
consumers do not carry them in memory.)"""

from __future__ import annotations

import functools
from collections.abc import Callable

from marketstream.settings import Settings
from sinks.object_store import ObjectStore
from sources.kafka_topic import InFlight, TopicSource


def shared_object_store(settings: Settings) -> Callable[[], ObjectStore]:
    """The process's one object store client, made on first use: each client loads botocore's S3 model
    (tens of MB)."""
    return functools.cache(lambda: ObjectStore(settings.s3_storage_options(),
                                               retry_max_seconds=settings.s3_retry_max_seconds))


def topic_source(settings: Settings, topic: str, in_flight: InFlight) -> TopicSource:
    return TopicSource(settings.kafka_cluster(), topic, in_flight=in_flight,
                       batch_size=settings.kafka_poll_max_messages,
                       starting_offset=settings.kafka_starting_offset, stop_at_end=settings.kafka_stop_at_end)
