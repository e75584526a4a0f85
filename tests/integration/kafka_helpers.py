"""Reading and writing test topics on the real broker."""

from __future__ import annotations

from confluent_kafka import Producer

from chaos.kafka_readback import read_topic
from marketstream.settings import Settings

__all__ = ["produce", "read_topic"]


def produce(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None]],
            timestamps_ms: list[int] | None = None, partition: int | None = None) -> None:
    """`messages` as (key, value), with Kafka timestamps `timestamps_ms` (default: now), into `partition`
    (default: by key)."""
    settings.kafka_cluster().ensure_topics([topic])
    producer = Producer(settings.kafka_client_config())
    for index, (key, value) in enumerate(messages):
        extra = {} if timestamps_ms is None else {"timestamp": timestamps_ms[index]}
        if partition is not None:
            extra["partition"] = partition
        while True:
            try:
                producer.produce(topic, key=key, value=value, **extra)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0
