"""The consumers' input: every partition of one Kafka topic, read in batches.

Each poll of a partition becomes one `MessageBatch` item (values, keys and offsets as lists), so the
dataflow pays Bytewax's per-item cost once per poll instead of once per message; the hot path downstream
decodes whole batches into Arrow columns.

Delivery guarantee: exactly-once input when the dataflow runs with Bytewax recovery (`-r`): the next
offset of each partition is its snapshot, and a resumed flow re-reads from the snapshotted offsets, so
messages of the interrupted epoch are read again (at-least-once into the sinks, which the Parquet sink
turns into exactly-once). Without recovery it starts from `KAFKA_STARTING_OFFSET`. Consumer errors (a
broker restarting, say) are logged, and librdkafka reconnects by itself. The topic is created if
missing, so a consumer can start before its producer. `KAFKA_STOP_AT_END` ends the input at the end of
every partition; SIGTERM / Ctrl-C end it cleanly (`marketstream.shutdown`), so open batches are flushed
before the process exits.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from marketstream import shutdown
from marketstream.kafka import ensure_topics
from marketstream.settings import Settings

log = logging.getLogger(__name__)


class InFlight:
    """Messages read but not yet decoded, across this process's partitions. Bytewax lets an input run
    ahead of the operators behind it; past `limit` the partitions stop polling until the decoder has
    caught up, so the raw messages held in memory stay bounded."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def full(self) -> bool:
        return self.count >= self.limit

    def add(self, messages: int) -> None:
        with self._lock:
            self.count += messages

    def release(self, messages: int) -> None:
        with self._lock:
            self.count -= messages


@dataclass
class MessageBatch:
    """Consecutive messages of one topic partition."""

    topic: str
    partition: int
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


class _PartitionReader(StatefulSourcePartition[MessageBatch, int]):
    def __init__(self, config: dict, topic: str, partition: int, offset: int, batch_size: int, stop_at_end: bool,
                 in_flight: InFlight):
        self._in_flight = in_flight
        self._consumer = Consumer({**config, "enable.partition.eof": stop_at_end})
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._topic, self._partition = topic, partition
        self._next_offset = offset
        self._batch_size = batch_size
        self._at_end = False

    def next_batch(self) -> list[MessageBatch]:
        if self._at_end or shutdown.requested():
            raise StopIteration
        if self._in_flight.full():
            return []
        messages = self._consumer.consume(self._batch_size, 0.05)
        if any(message.error() is not None for message in messages):
            usable = []
            for message in messages:
                error = message.error()
                if error is None:
                    usable.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    self._at_end = True  # emit what this poll got; stop at the next call
                else:
                    log.warning("%s[%d]: Kafka consumer error (librdkafka retries): %s", self._topic, self._partition, error)
            messages = usable
        batch = MessageBatch(self._topic, self._partition, [m.offset() for m in messages],
                             [m.key() for m in messages], [m.value() for m in messages])
        if not batch.offsets:
            return []
        self._next_offset = batch.offsets[-1] + 1
        self._in_flight.add(len(batch))
        return [batch]

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + _WAIT_FOR_DECODER if self._in_flight.full() else None

    def snapshot(self) -> int:
        return self._next_offset

    def close(self) -> None:
        self._consumer.close()


_WAIT_FOR_DECODER = timedelta(milliseconds=5)


class TopicSource(FixedPartitionedSource[MessageBatch, int]):
    def __init__(self, settings: Settings, topic: str, in_flight: InFlight | None = None):
        self._settings = settings
        self._topic = topic
        self.in_flight = in_flight or InFlight(settings.kafka_max_in_flight_messages)

    def list_parts(self) -> list[str]:
        ensure_topics(self._settings, [self._topic])
        metadata = AdminClient(self._settings.kafka_client_config()).list_topics(self._topic, timeout=30)
        topic = metadata.topics[self._topic]
        if topic.error is not None:
            raise RuntimeError(f"cannot list the partitions of Kafka topic {self._topic!r}: {topic.error.str()}")
        return [f"{partition}-{self._topic}" for partition in sorted(topic.partitions)]  # as bytewax's own source

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        settings = self._settings
        if resume_state is not None:
            offset = resume_state
        else:
            offset = OFFSET_BEGINNING if settings.kafka_starting_offset == "earliest" else OFFSET_END
        config = {
            **settings.kafka_client_config(),
            "group.id": "marketstream",  # required by librdkafka; offsets are kept in Bytewax state, not here
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # prefetch per partition: enough to keep the decoder busy, small enough to bound memory
            "queued.max.messages.kbytes": 8_192,
            "queued.min.messages": 20_000,
            "max.partition.fetch.bytes": 524_288,
            "fetch.max.bytes": 2_097_152 + 1024,  # librdkafka wants at least message.max.bytes
            # once that prefetch queue is full librdkafka pauses fetching for this long (default 1 s): with a
            # small queue the default left the partition idle most of the time (5x slower reads measured)
            "fetch.queue.backoff.ms": 10,
        }
        return _PartitionReader(config, self._topic, int(for_part.split("-", 1)[0]), offset, settings.kafka_consume_batch_size,
                                settings.kafka_stop_at_end, self.in_flight)
