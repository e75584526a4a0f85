"""Publishing to Kafka: the producer sink of every `*_produce` dataflow and of the dead-letter topics.

Delivery guarantee: at-least-once. The producer is idempotent with `acks=all` (`marketstream.kafka_cluster`), so
librdkafka's own retries neither duplicate nor reorder. `write_batch` returns only after every message of
the batch is acknowledged; a message that still fails is raised as `DeliveryError`, which stops the
dataflow loudly instead of dropping the message. The destination topics are created if missing.
"""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Producer

from marketstream import metrics
from marketstream.kafka_cluster import KafkaCluster
from marketstream.messages import MessageBlock


class DeliveryError(RuntimeError):
    """Kafka did not accept a message after the producer's retries."""


class _ProducerPartition(StatelessSinkPartition[KafkaSinkMessage | MessageBlock]):
    def __init__(self, config: dict, default_topic: str):
        self._failures: list[tuple[str, str]] = []
        # the counter exists from the start, at 0: "no failures" on a dashboard, not "no data"
        metrics.DELIVERY_FAILURES.labels(default_topic)
        # delivery reports only for failures: no Python callback per delivered message
        self._producer = Producer({**config, "delivery.report.only.error": True, "on_delivery": self._on_delivery})
        self._default_topic = default_topic

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._failures.append((msg.topic(), err.str()))

    def write_batch(self, items: list[KafkaSinkMessage | MessageBlock]) -> None:
        produce, topic = self._producer.produce, self._default_topic
        sent: dict[str, int] = {}
        for item in items:
            destination = item.topic if isinstance(item, KafkaSinkMessage) and item.topic else topic
            sent[destination] = sent.get(destination, 0) + (len(item.values) if isinstance(item, MessageBlock) else 1)
            if isinstance(item, MessageBlock):
                for key, value in zip(item.keys, item.values):
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        self._wait_for_room(topic, value, key)
            else:
                try:
                    produce(item.topic or topic, item.value, item.key, headers=item.headers or None,
                            timestamp=item.timestamp or 0)
                except BufferError:
                    self._wait_for_room(item.topic or topic, item.value, item.key, item.headers or None)
        self._producer.flush()
        for failed, _ in self._failures:
            sent[failed] -= 1
        for destination, count in sent.items():
            metrics.MESSAGES_PUBLISHED.labels(destination).inc(count)
        self._raise_failures()

    def _wait_for_room(self, topic: str, value, key, headers=None) -> None:
        """The local queue is full: let deliveries drain, then send."""
        while True:
            self._producer.poll(0.05)
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                continue

    def _raise_failures(self) -> None:
        if self._failures:
            failures, self._failures = self._failures, []
            for failed, _ in failures:
                metrics.DELIVERY_FAILURES.labels(failed).inc()
            raise DeliveryError(f"{len(failures)} message(s) not delivered, first: {failures[0][0]}: {failures[0][1]}")

    def close(self) -> None:
        self._producer.flush()
        self._raise_failures()


class KafkaProducerSink(DynamicSink[KafkaSinkMessage | MessageBlock]):
    """Publishes `KafkaSinkMessage`s to `topic` (or to the topic a message names), and `MessageBlock`s of
    ready-serialised messages to `topic`."""

    def __init__(self, cluster: KafkaCluster, topic: str, *, also_create: tuple[str, ...] = ()):
        self._cluster = cluster
        self._topic = topic
        self._topics = [topic, *also_create]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        self._cluster.ensure_topics(self._topics)
        return _ProducerPartition(self._cluster.producer_config(), self._topic)
