"""The consumers' input: every partition of one Kafka topic.

Delivery guarantee: exactly-once input when the dataflow runs with Bytewax recovery (`-r`): the offset of
each partition is part of the snapshot, and a resumed flow re-reads from the snapshotted offsets, so
messages of the interrupted epoch are read again (at-least-once into the sinks). Without recovery it
starts from `KAFKA_STARTING_OFFSET`. Consumer errors (a broker restarting, say) are emitted as
`KafkaError` items for the flow to log, not raised, and librdkafka reconnects by itself. The topic is
created if missing, so a consumer can start before its producer. On SIGTERM / Ctrl-C the input ends
cleanly (`marketstream.shutdown`), so open batches are flushed before the process exits.
"""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from marketstream import shutdown
from marketstream.kafka import ensure_topics
from marketstream.settings import Settings


class _StoppablePartition(StatefulSourcePartition):
    """Bytewax's Kafka partition, ending its input when a graceful shutdown is requested."""

    def __init__(self, inner: StatefulSourcePartition):
        self._inner = inner

    def next_batch(self):
        if shutdown.requested():
            raise StopIteration
        return self._inner.next_batch()

    def next_awake(self):
        return self._inner.next_awake()

    def snapshot(self):
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class TopicSource(KafkaSource):
    def __init__(self, settings: Settings, topic: str):
        config = settings.kafka_client_config()
        brokers = config.pop("bootstrap.servers").split(",")
        super().__init__(
            brokers=brokers,
            topics=[topic],
            tail=not settings.kafka_stop_at_end,
            starting_offset=OFFSET_BEGINNING if settings.kafka_starting_offset == "earliest" else OFFSET_END,
            add_config=config,
            batch_size=settings.kafka_consume_batch_size,
            raise_on_errors=False,
        )
        self._settings = settings
        self._topic = topic

    def list_parts(self) -> list[str]:
        ensure_topics(self._settings, [self._topic])
        return super().list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state):
        return _StoppablePartition(super().build_part(step_id, for_part, resume_state))
