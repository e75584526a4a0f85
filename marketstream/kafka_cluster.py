"""Kafka plumbing shared by producers and consumers: client configuration, topic creation, and reading one
partition's offset range again (`read_partition`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

log = logging.getLogger(__name__)

_NOT_YET_KNOWN = ("UNKNOWN_TOPIC_OR_PART", "LEADER_NOT_AVAILABLE", "_TIMED_OUT", "REQUEST_TIMED_OUT")
ATTEMPT_SECONDS = 8.0
"""The longest one request describing a topic may wait before it is made again."""

_admins: dict[tuple, AdminClient] = {}
_admins_lock = threading.Lock()


@dataclass(frozen=True)
class TopicInfo:
    incarnation: str
    """The Kafka topic id as 32 hex digits. A topic deleted and created again under the same name gets a
    new id and starts its offsets at 0: the id tells which incarnation an offset belongs to."""
    partitions: int


@dataclass(frozen=True, eq=False)
class KafkaCluster:
    """How to reach the brokers (`client_config`: librdkafka settings such as `bootstrap.servers`), and how
    the topics this project creates are made."""

    client_config: dict[str, object]
    topic_partitions: int
    replication_factor: int

    def producer_config(self) -> dict[str, object]:
        """Durable, ordered, compressed publishing: acks from all replicas and idempotence, so a retried send
        never duplicates or reorders a message within a partition. lz4 costs the least CPU of the codecs."""
        return {
            **self.client_config,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
            "batch.size": 1_000_000,
        }

    def admin(self) -> AdminClient:
        """The process's admin client for these brokers, made on first use: each new client opens its own
        connections first (~60 ms of a consumer's start-up, which asks several times)."""
        with _admins_lock:
            if self._admin_key not in _admins:
                _admins[self._admin_key] = AdminClient(self.client_config)
            return _admins[self._admin_key]

    def fresh_admin(self) -> AdminClient:
        """A new admin client, from now on the process's: it asks the cluster afresh who its controller is."""
        with _admins_lock:
            _admins[self._admin_key] = AdminClient(self.client_config)
            return _admins[self._admin_key]

    @property
    def _admin_key(self) -> tuple:
        return tuple(sorted((name, str(value)) for name, value in self.client_config.items()))

    def ensure_topics(self, topics: list[str], timeout: float = 30.0, partitions: int | None = None) -> None:
        """Create the topics that do not exist yet, with `partitions` (default `topic_partitions`) partitions."""
        partitions = partitions or self.topic_partitions
        admin = self.admin()
        existing = admin.list_topics(timeout=timeout).topics
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=self.replication_factor) for t in missing],
            operation_timeout=timeout,
        )
        for topic, future in futures.items():
            try:
                future.result()
                log.info("kafka: created topic %s with %d partitions", topic, partitions)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise

    def describe_topic(self, topic: str, timeout: float = 30.0) -> TopicInfo:
        """`topic`'s incarnation and partition count, creating the topic if missing."""
        self.ensure_topics([topic], timeout)
        return self._describe(topic, timeout)

    def existing_topic(self, topic: str, timeout: float = 30.0) -> TopicInfo | None:
        """`topic`'s incarnation and partition count; None when there is no such topic (none is created)."""
        if topic not in self.admin().list_topics(timeout=timeout).topics:
            return None
        return self._describe(topic, timeout)

    def _describe(self, topic: str, timeout: float) -> TopicInfo:
        description = self._asked_until_known(
            lambda admin, attempt: admin.describe_topics(TopicCollection([topic]), request_timeout=attempt)[topic],
            timeout)
        uuid = description.topic_id
        incarnation = (f"{uuid.get_most_significant_bits() & (2**64 - 1):016x}"
                       f"{uuid.get_least_significant_bits() & (2**64 - 1):016x}")
        return TopicInfo(incarnation, len(description.partitions))

    def _asked_until_known(self, ask: Callable[[AdminClient, float], Future], timeout: float):
        """The result of `ask(admin, attempt_seconds)`'s future, asked again while the answer is that the topic
        is not known yet (a topic created a moment ago is not known to every broker at once: found by `make
        chaos` on three brokers) or the controller did not answer (then of a fresh admin client), for up to
        `timeout` seconds in all."""
        admin = self.admin()
        deadline = time.monotonic() + timeout
        while True:
            # each attempt gets a part of the time: one spent waiting for a controller that was just killed
            # would otherwise take all of it (found by `make chaos`: a consumer started while the KRaft
            # leader was down exited with "Timed out waiting for controller")
            attempt = max(1.0, min(ATTEMPT_SECONDS, deadline - time.monotonic()))
            try:
                return ask(admin, attempt).result()
            except KafkaException as exc:
                if exc.args[0].name() not in _NOT_YET_KNOWN or time.monotonic() > deadline:
                    raise
                if exc.args[0].name() == "_TIMED_OUT":
                    admin = self.fresh_admin()
                time.sleep(0.2)

    def topic_incarnation(self, topic: str, timeout: float = 30.0) -> str:
        """`topic`'s incarnation (`TopicInfo.incarnation`), creating the topic if missing."""
        return self.describe_topic(topic, timeout).incarnation

    def topic_message_limit(self, topic: str, timeout: float = 30.0) -> int:
        """The largest record batch the broker accepts on `topic` (`max.message.bytes`)."""
        resource = ConfigResource(ResourceType.TOPIC, topic)
        configs = self._asked_until_known(
            lambda admin, attempt: admin.describe_configs([resource], request_timeout=attempt)[resource], timeout)
        return int(configs["max.message.bytes"].value)


def read_partition(consumer: Consumer, topic: str, partition: int, first: int, end: int, *,
                   give_up_at: float, poll_seconds: float = 1.0) -> Iterator[Message]:
    """The messages of one partition at offsets `first`..`end - 1`, in offset order, read with `consumer`
    (assigned to that partition here; `enable.partition.eof` lets it stop at the partition's end). Messages
    retention removed meanwhile are skipped: a caller that needs them all compares the low watermark with
    `first` afterwards. Messages of another partition (left from an earlier assignment) are ignored. Raises
    TimeoutError when a poll after `give_up_at` (a `time.monotonic()` instant) brings no message: a broker
    that keeps answering is read to the end."""
    position = first
    consumer.assign([TopicPartition(topic, partition, first)])
    while position < end:
        batch = [m for m in consumer.consume(min(end - position, 500), timeout=poll_seconds)
                 if m.topic() == topic and m.partition() == partition]
        for message in batch:
            error = message.error()
            if error is None:
                if message.offset() >= position:
                    position = message.offset() + 1
                    if message.offset() < end:
                        yield message
            elif error.code() == KafkaError._PARTITION_EOF and message.offset() >= position:
                return
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:  # retention removed `position` meanwhile
                low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=poll_seconds * 10)
                position = max(position, low)
                consumer.assign([TopicPartition(topic, partition, position)])
        # error events (a lost connection) are no answer either: librdkafka reports them while it retries
        if all(m.error() is not None for m in batch) and time.monotonic() >= give_up_at:
            raise TimeoutError(f"the messages {position}..{end - 1} of {topic} [{partition}]: no answer")
