"""The dead-letter sink: every message a consumer cannot store, published to `<topic>.dlq` with its reason.

Delivery guarantee: one dead letter per bad message, across crashes and restarts, with or without Bytewax
recovery, and across worker counts. The dead letters of source partition `p` go to partition
`p mod n` of the dead-letter topic (created with as many partitions as the source topic, so normally
`p` itself), and the producer is idempotent, so they sit there in the order of their source offsets. When
a process starts, it reads the tail of each dead-letter partition (backwards, a chunk at a time, until it
has seen every source partition that maps there, or a dead letter of an earlier incarnation of the topic)
and learns the last source offset dead-lettered per (topic incarnation, source partition). A replayed bad
message at or below that offset is not published again. `write_batch` returns only once every dead
letter is acknowledged, and the snapshot that follows it is taken after, so recovery never skips one.

A dead letter always fits: the broker refuses a record batch over the topic's `max.message.bytes`.
When the original does not fit with room to spare (`HEADROOM`), its full bytes are stored in the
dataset's bucket under `_dead_letters/<topic>/<incarnation>/<partition>/<offset>` (one PUT, retried while
the store is down) and the dead letter carries the first `EXCERPT_BYTES` bytes, plus headers giving the
object's URI, the original's size and its sha256. A dead letter whose publication fails for a transient
reason (broker down, timed out) is published again after a pause, for as long as it takes; a refusal
that retrying cannot cure (authorization, a topic that cannot be created) stops the dataflow with one
line naming it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from marketstream import metrics
from marketstream.kafka_cluster import KafkaCluster, read_partition
from sinks.layout import object_key
from sinks.object_store import ObjectStore

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 1_000
EXCERPT_BYTES = 4_096
MAX_INLINE_KEY_BYTES = 4_096
HEADROOM = 16_384
"""Bytes kept free under the broker's limit for the record batch's own fields and what compression adds
to incompressible data."""
TAIL_CHUNK = 500
RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer could not store, where it came from, and why."""

    dataset: str
    topic: str
    incarnation: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("dlq.reason", self.reason[:MAX_REASON_CHARS].encode()),
            ("dlq.dataset", self.dataset.encode()),
            ("dlq.topic", self.topic.encode()),
            ("dlq.incarnation", self.incarnation.encode()),
            ("dlq.partition", str(self.partition).encode()),
            ("dlq.offset", str(self.offset).encode()),
        ]


class DeadLetterError(RuntimeError):
    """A dead letter Kafka refused for good (not a transient failure)."""


_RETRIABLE_REFUSALS = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT,
                       KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_ENOUGH_REPLICAS,
                       KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                       KafkaError._TIMED_OUT, KafkaError.NETWORK_EXCEPTION}


def _origin(headers: list[tuple[str, bytes]] | None) -> tuple[str, int, int] | None:
    found = dict(headers or ())
    try:
        return (found["dlq.incarnation"].decode(), int(found["dlq.partition"]), int(found["dlq.offset"]))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def read_published_marks(kafka_config: dict, topic: str, incarnation: str, source_partitions: int) -> dict[int, int]:
    """Per source partition of `incarnation`, the highest source offset already dead-lettered to `topic`.

    Reads each dead-letter partition backwards a chunk at a time, and stops once it has seen every source
    partition that maps to it, or a dead letter of an earlier incarnation (all before it are older). The
    chunk after the one that completed the picture is read too: a dead letter published again after a
    failure may come after later ones."""
    consumer = Consumer({**kafka_config, "group.id": "marketstream-dead-letters", "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    marks: dict[int, int] = {}
    try:
        partitions = _settled(lambda: consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        for dead_partition in sorted(partitions):
            expected = {p for p in range(source_partitions) if p % len(partitions) == dead_partition}
            low, end = _settled(lambda: consumer.get_watermark_offsets(TopicPartition(topic, dead_partition), timeout=30))
            extra_chunks = 1
            while end > low:
                start = max(low, end - TAIL_CHUNK)
                older_incarnation = False
                for headers in _read_range(consumer, topic, dead_partition, start, end):
                    origin = _origin(headers)
                    if origin is None:
                        continue
                    if origin[0] != incarnation:
                        older_incarnation = True
                    elif origin[2] > marks.get(origin[1], -1):
                        marks[origin[1]] = origin[2]
                end = start
                if older_incarnation:
                    break
                if expected <= marks.keys():
                    if not extra_chunks:
                        break
                    extra_chunks -= 1
    finally:
        consumer.close()
    return marks


_NOT_SETTLED = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError._TRANSPORT,
                # the connection to the broker asked went away under the question (a broker killed, a proxy
                # cutting it): seen in the chaos run as a consumer that failed to start
                KafkaError._DESTROY_BROKER, KafkaError._ALL_BROKERS_DOWN}


def _settled(ask: Callable[[], object], seconds: float = 60.0) -> object:
    """`ask()`, again for a while if the broker has not settled yet (a topic created a moment ago has no
    leader for a short time; a broker restarting answers nothing)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ask()
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_SETTLED or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read_range(consumer: Consumer, topic: str, partition: int, start: int, end: int) -> list:
    """The headers of the messages at offsets [start, end) of one partition."""
    try:
        return [message.headers() for message in
                read_partition(consumer, topic, partition, start, end, give_up_at=time.monotonic() + 60)]
    except TimeoutError:
        raise DeadLetterError(f"could not read the dead letters of {topic} partition {partition} within 60 s") from None


class _Published:
    """What this process knows of the dead-letter topic: its partitions, its size limit, and per (topic
    incarnation, source partition) the last source offset dead-lettered. Shared by the process's workers."""

    def __init__(self, partitions: int, inline_limit: int, incarnation: str, marks: dict[int, int]):
        self.partitions = partitions
        self.inline_limit = inline_limit
        self._marks = {(incarnation, partition): offset for partition, offset in marks.items()}
        self._lock = threading.Lock()

    def already(self, letter: DeadLetter) -> bool:
        with self._lock:
            return letter.offset <= self._marks.get((letter.incarnation, letter.partition), -1)

    def record(self, letters: list[DeadLetter]) -> None:
        with self._lock:
            for letter in letters:
                key = (letter.incarnation, letter.partition)
                self._marks[key] = max(self._marks.get(key, -1), letter.offset)


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, config: dict, topic: str, published: _Published, store: Callable[[], ObjectStore],
                 bucket: str, sleep: Callable[[float], None] = time.sleep):
        self._failures: list[tuple[DeadLetter, KafkaError]] = []
        self._producer = Producer({**config, "delivery.report.only.error": True})
        self._topic = topic
        self._published = published
        self._store = store
        self._bucket = bucket
        self._sleep = sleep

    def _on_delivery(self, letter: DeadLetter, err: KafkaError | None, _message) -> None:
        if err is not None:
            self._failures.append((letter, err))

    def _stored_aside(self, letter: DeadLetter) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """Store the original in the bucket; the dead letter carries an excerpt and where to find it."""
        base = object_key("_dead_letters", letter.topic, letter.incarnation, str(letter.partition), f"{letter.offset:020d}")
        value = letter.value or b""
        self._store().put(self._bucket, base, value)
        headers = [*letter.headers(),
                   ("dlq.original.uri", f"s3://{self._bucket}/{base}".encode()),
                   ("dlq.original.size", str(len(value)).encode()),
                   ("dlq.original.sha256", hashlib.sha256(value).hexdigest().encode())]
        key = letter.key
        if key is not None and len(key) > MAX_INLINE_KEY_BYTES:
            self._store().put(self._bucket, f"{base}.key", key)
            headers.append(("dlq.original.key.uri", f"s3://{self._bucket}/{base}.key".encode()))
            key = key[:MAX_INLINE_KEY_BYTES]
        log.info("%s: dead letter for partition %d offset %d is %d bytes, over what %s accepts: original stored at "
                 "s3://%s/%s", letter.topic, letter.partition, letter.offset, len(value), self._topic, self._bucket, base)
        return key, value[:EXCERPT_BYTES], headers

    def _produce(self, letter: DeadLetter, aside: bool = False) -> None:
        headers = letter.headers()
        size = len(letter.key or b"") + len(letter.value or b"") + sum(len(k) + len(v) for k, v in headers)
        key, value = letter.key, letter.value
        if aside or size > self._published.inline_limit:
            key, value, headers = self._stored_aside(letter)
        partition = letter.partition % self._published.partitions
        while True:
            try:
                self._producer.produce(self._topic, value, key, partition=partition, headers=headers,
                                       on_delivery=partial(self._on_delivery, letter))
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE and not aside:
                    key, value, headers = self._stored_aside(letter)
                    aside = True
                    continue
                raise DeadLetterError(f"{self._topic}: cannot publish a dead letter: {exc.args[0].str()}") from None

    def write_batch(self, items: list[DeadLetter]) -> None:
        letters = [letter for letter in items if not self._published.already(letter)]
        if len(letters) < len(items):
            log.info("%s: %d dead letters of replayed messages were published before, not again",
                     self._topic, len(items) - len(letters))
        for letter in letters:
            self._produce(letter)
        self._flush()
        self._published.record(letters)
        for letter in letters:
            metrics.DEAD_LETTERS.labels(letter.dataset, metrics.reason_kind(letter.reason)).inc()

    def _flush(self) -> None:
        """Wait until every dead letter is acknowledged, publishing again those that failed transiently."""
        delay = 0.5
        while True:
            self._producer.flush()
            if not self._failures:
                return
            failures, self._failures = self._failures, []
            permanent = [err for _, err in failures if err.code() not in _RETRIABLE_REFUSALS and not err.retriable()]
            if permanent:
                raise DeadLetterError(f"{self._topic}: Kafka refused {len(permanent)} dead letter(s): {permanent[0].str()}")
            log.warning("%s: %d dead letter(s) not published (%s); publishing them again in %.1fs",
                        self._topic, len(failures), failures[0][1].str(), delay)
            metrics.RETRIES.labels("dead_letter").inc()
            self._sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            for letter, err in failures:
                self._produce(letter, aside=err.code() == KafkaError.MSG_SIZE_TOO_LARGE)

    def close(self) -> None:
        self._flush()


class DeadLetterSink(DynamicSink[DeadLetter]):
    """Publishes `DeadLetter`s of `source_topic` to `topic`, once each; originals too large for a Kafka
    message are kept in `bucket` (see the module docstring)."""

    def __init__(self, cluster: KafkaCluster, *, topic: str, source_topic: str, bucket: str,
                 store: Callable[[], ObjectStore], delivery_timeout_ms: int = 300_000):
        self._cluster = cluster
        self._delivery_timeout_ms = delivery_timeout_ms
        self._topic = topic
        self._source_topic = source_topic
        self._bucket = bucket
        self._store = store
        self._published: _Published | None = None
        self._lock = threading.Lock()

    def _learn(self) -> _Published:
        with self._lock:
            if self._published is None:
                cluster = self._cluster
                source = cluster.describe_topic(self._source_topic)
                cluster.ensure_topics([self._topic], partitions=source.partitions)
                partitions = cluster.describe_topic(self._topic).partitions
                inline_limit = cluster.topic_message_limit(self._topic) - HEADROOM
                marks = read_published_marks(cluster.client_config, self._topic, source.incarnation, source.partitions)
                self._published = _Published(partitions, inline_limit, source.incarnation, marks)
            return self._published

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        published = self._learn()
        config = {**self._cluster.producer_config(), "message.max.bytes": published.inline_limit + HEADROOM,
                  "message.timeout.ms": self._delivery_timeout_ms}
        return _DeadLetterPartition(config, self._topic, published, self._store, self._bucket)
