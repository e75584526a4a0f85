"""Reading and writing test topics on the real broker."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from marketstream.settings import Settings


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


def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list:
    """Every message in `topic` right now: each partition read up to its high watermark."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": "marketstream-tests", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for partition in metadata.partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > 0:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        messages, done = [], {p: False for p in ends}
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
            if msg.offset() >= ends[msg.partition()] - 1:
                done[msg.partition()] = True
        return messages
    finally:
        consumer.close()
