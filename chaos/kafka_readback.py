"""Reading a whole topic back, as it is when asked: every partition from its first kept offset up to its
high watermark."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from marketstream.settings import Settings


def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list:
    """Every message in `topic` right now (confluent_kafka Messages); none when the topic does not exist."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": "marketstream-readback",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            return []
        starts, ends = {}, {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                starts[partition], ends[partition] = low, high
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        messages, done = [], {p: False for p in ends}
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out reading {topic} back (KAFKA_BOOTSTRAP_SERVERS)")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
            if msg.offset() >= ends[msg.partition()] - 1:
                done[msg.partition()] = True
        return messages
    finally:
        consumer.close()
