"""The one producer dataflow: an API source's records -> JSON messages keyed by `record.key` -> Kafka.

A record is any object with a `key` (str) and `to_json()` (bytes); each `dataflows/*_produce.py` hands
its dataset of the registry and the maker of its source to `producer_dataflow`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.datasets import Dataset
from marketstream.settings import Settings, get_settings
from marketstream.messages import MessageBlock
from sinks.kafka_producer import KafkaProducerSink


class Record(Protocol):
    @property
    def key(self) -> str: ...

    def to_json(self) -> bytes: ...


def to_message(record: Record | MessageBlock) -> KafkaSinkMessage | MessageBlock:
    """A record as its message; a block of ready-serialised messages (synthetic trades) as it is."""
    if isinstance(record, MessageBlock):
        return record
    return KafkaSinkMessage(key=record.key.encode(), value=record.to_json())


def build_producer_flow(name: str, settings: Settings, source: Source, topic: str, sink: Sink | None = None) -> Dataflow:
    flow = Dataflow(name)
    records = op.input("records", flow, source)
    messages = op.map("to_message", records, to_message)
    op.output("kafka_out", messages, sink or KafkaProducerSink(settings.kafka_cluster(), topic))
    return flow


def producer_dataflow(dataset: Dataset, make_source: Callable[[Settings], Source]) -> Callable[..., Dataflow]:
    """`build_flow(settings=None, *, topic=dataset.topic, source=None, sink=None)` for `<dataset>_produce`.

    `make_source` checks the settings its source needs, so a missing one stops the flow before it
    connects anywhere; tests pass their own `source`, `sink` or `topic`.
    """

    def build_flow(
        settings: Settings | None = None, *, topic: str = dataset.topic, source: Source | None = None, sink: Sink | None = None
    ) -> Dataflow:
        settings = settings or get_settings()
        return build_producer_flow(f"{dataset.name}_produce", settings, source or make_source(settings), topic, sink)

    return build_flow
