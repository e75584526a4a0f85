"""The consumers' input: every partition of one Kafka topic, read in batches.

Each worker reads all its partitions with one librdkafka consumer and hands each partition's messages
over in batches: one `PolledMessages` item (values and keys as lists, offsets as a range or list), so the
dataflow pays Bytewax's per-item cost once per poll instead of once per message; the hot path downstream
decodes whole batches into Arrow columns.

Delivery guarantee: exactly-once input when the dataflow runs with Bytewax recovery (`-r`): the next
offset of each partition, with the topic's incarnation (its Kafka topic id), is its snapshot, and a
resumed flow re-reads from the snapshotted offsets (or from the beginning, if the topic was deleted and
created again since: its offsets start at 0 again), so
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
from itertools import groupby, repeat
from operator import is_not

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from marketstream import metrics, shutdown
from marketstream.kafka_cluster import KafkaCluster

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
class PolledMessages:
    """Consecutive messages of one topic partition."""

    topic: str
    partition: int
    offsets: list[int] | range = field(default_factory=list)
    """Their offsets: a `range` when they follow one another without a gap, as in the usual poll (a compacted
    or transactional topic leaves gaps), which spares a Python int per message."""
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    incarnation: str = ""
    """The topic's Kafka topic id (`marketstream.kafka_cluster.TopicInfo`)."""

    def __len__(self) -> int:
        return len(self.offsets)

    def offsets_at(self, positions: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """The offsets (int64) of the messages at `positions` (int64) in the batch."""
        if isinstance(self.offsets, range):
            return pc.add(positions, self.offsets.start)
        return pa.array(self.offsets, pa.int64()).take(positions)


class _SharedConsumer:
    """One librdkafka consumer for all the partitions a worker reads. Each poll may return messages of
    several partitions; they wait here, per partition, until that partition takes them. One consumer
    instead of one per partition: measured 1.5x faster reads and ~70 MB less memory for six partitions."""

    def __init__(self, config: dict, batch_size: int, on_close):
        self._consumer = Consumer(config)
        self._batch_size = batch_size
        self._waiting: dict[int, list] = {}
        self._at_end: set[int] = set()
        self._drained = False  # the last poll emptied librdkafka's queue
        self._on_close = on_close
        self._resolve_logical_offsets = True
        self._lock = threading.Lock()  # in case Bytewax builds several workers' partitions on one thread

    def add(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            self._waiting[partition] = []
            if offset in (OFFSET_BEGINNING, OFFSET_END) and self._resolve_logical_offsets:
                offset = self._watermark(topic, partition, offset)
            self._consumer.incremental_assign([TopicPartition(topic, partition, offset)])

    def _watermark(self, topic: str, partition: int, logical: int) -> int:
        """The offset `logical` (the partition's beginning or end) stands for now. Assigned a logical offset,
        librdkafka starts fetching only ~0.5 s later (measured: 0.51 s to the first message against 0.01 s);
        one watermark request costs a few ms. A broker not answering leaves the logical offset to librdkafka,
        for this partition and the next ones (no wait per partition)."""
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                             timeout=WATERMARK_TIMEOUT_SECONDS)
        except KafkaException as error:
            log.warning("%s: the offsets of partition %d are unknown (%s); librdkafka looks them up itself",
                        topic, partition, error.args[0].str())
            self._resolve_logical_offsets = False
            return logical
        return low if logical == OFFSET_BEGINNING else high

    def remove(self, topic: str, partition: int) -> None:
        with self._lock:
            self._waiting.pop(partition, None)
            if self._waiting:
                self._consumer.incremental_unassign([TopicPartition(topic, partition)])
                return
            self._consumer.close()
        self._on_close()

    def take(self, partition: int, in_flight: InFlight) -> tuple[list, bool]:
        """Messages of `partition` read so far (polling first if it has fewer than a batch), and whether
        the partition is at its end."""
        with self._lock:
            if len(self._waiting[partition]) < self._batch_size and not in_flight.full():
                self._poll(in_flight)
            waiting, at_end = self._waiting[partition], partition in self._at_end
            # while more is coming at once, wait for a full batch: fewer, larger items cost less downstream
            if len(waiting) < self._batch_size and not (self._drained or at_end or in_flight.full()):
                return [], False
            self._waiting[partition] = []
            return waiting, at_end

    def _poll(self, in_flight: InFlight) -> None:
        # per message only C-level calls (map, groupby): a Python step per message cost as much as decoding
        messages = self._consumer.consume(self._batch_size, 0.05)
        self._drained = len(messages) < self._batch_size
        if not messages:
            return
        errors = list(map(Message.error, messages))
        if any(map(is_not, errors, repeat(None))):  # `!= None` would ask KafkaError to compare itself with None
            messages = self._without_errors(messages, errors)
        read, start, last_offsets = 0, 0, {}
        # a poll holds runs of one partition (a fetch each): they are handed over run by run
        for partition, run in groupby(map(Message.partition, messages)):
            end = start + len(list(run))
            waiting = self._waiting.get(partition)
            if waiting is not None:
                waiting.extend(messages[start:end])
                read += end - start
                last_offsets[partition] = messages[end - 1].offset()
            start = end
        in_flight.add(read)
        if read:
            self._count(messages[0].topic(), read, last_offsets)

    def _without_errors(self, messages: list[Message], errors: list) -> list[Message]:
        """`messages` but the errors among them: a partition's end is noted, any other error logged."""
        kept = []
        for message, error in zip(messages, errors):
            if error is None:
                kept.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._at_end.add(message.partition())
            else:
                log.warning("%s: Kafka consumer error (librdkafka retries): %s", message.topic(), error)
        return kept

    def _count(self, topic: str, read: int, last_offsets: dict[int, int]) -> None:
        metrics.MESSAGES_READ.labels(topic).inc(read)
        for partition, offset in last_offsets.items():
            # the high watermark of the last fetch: no request to the broker
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high >= 0:
                metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(high - offset - 1, 0))


class _PartitionReader(StatefulSourcePartition[PolledMessages, int]):
    def __init__(self, consumer: _SharedConsumer, topic: str, incarnation: str, partition: int, offset: int,
                 in_flight: InFlight):
        self._consumer = consumer
        self._incarnation = incarnation
        self._in_flight = in_flight
        self._topic, self._partition = topic, partition
        self._next_offset = offset
        self._at_end = False
        consumer.add(topic, partition, offset)

    def next_batch(self) -> list[PolledMessages]:
        if self._at_end or shutdown.requested():
            raise StopIteration
        messages, self._at_end = self._consumer.take(self._partition, self._in_flight)
        if not messages:
            return []
        # a partition's messages come in offset order: first and last as far apart as their count, none is
        # missing between them
        first, last = messages[0].offset(), messages[-1].offset()
        offsets = range(first, last + 1) if last - first == len(messages) - 1 else list(map(Message.offset, messages))
        batch = PolledMessages(self._topic, self._partition, offsets, list(map(Message.key, messages)),
                               list(map(Message.value, messages)), self._incarnation)
        self._next_offset = batch.offsets[-1] + 1
        return [batch]

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + _WAIT_FOR_DECODER if self._in_flight.full() else None

    def snapshot(self) -> tuple[str, int]:
        return self._incarnation, self._next_offset

    def close(self) -> None:
        self._consumer.remove(self._topic, self._partition)


_WAIT_FOR_DECODER = timedelta(milliseconds=5)
WATERMARK_TIMEOUT_SECONDS = 2.0
FETCH_MAX_BYTES = 256 * 1024
BOUNDED_FETCHES = {
    # prefetch: enough to keep the decoder busy, small enough to bound memory
    "queued.max.messages.kbytes": 4_096,
    # a fetch is decompressed whole (JSON trades: ~10x) and its buffers live until every message of it is
    # consumed: 2 MB fetches cost ~50 MB of RSS, 256 kB ones the same speed. A larger record batch still
    # comes whole (the broker sends at least one).
    "fetch.max.bytes": FETCH_MAX_BYTES,
    "max.partition.fetch.bytes": FETCH_MAX_BYTES // 2,
    "message.max.bytes": FETCH_MAX_BYTES // 2,  # librdkafka wants fetch.max.bytes >= this
    # once the prefetch queue is full librdkafka pauses fetching for this long (default 1 s): with a small
    # queue the default left the consumer idle most of the time
    "fetch.queue.backoff.ms": 10,
    # how long the broker holds a fetch that found nothing new (default 0.5 s): such a fetch is the one that
    # tells a partition's end (KAFKA_STOP_AT_END), and a drain waited up to 0.5 s for its last partition's;
    # an idle consumer asks 10 times a second instead of twice, a trifle for the broker
    "fetch.wait.max.ms": 100,
}
"""librdkafka settings that bound a consumer's memory at full reading speed."""


class TopicSource(FixedPartitionedSource[PolledMessages, tuple[str, int]]):
    """Every partition of `topic` on `cluster`, at most `batch_size` messages per item and `in_flight`
    messages undecoded; without a snapshot from the `starting_offset` (`earliest` or `latest`); with
    `stop_at_end` the input ends at the end of every partition."""

    def __init__(self, cluster: KafkaCluster, topic: str, *, in_flight: InFlight, batch_size: int,
                 starting_offset: str = "earliest", stop_at_end: bool = False):
        if starting_offset not in ("earliest", "latest"):
            raise ValueError(f"starting_offset must be earliest or latest, not {starting_offset!r}")
        self._cluster = cluster
        self._topic = topic
        self._batch_size = batch_size
        self._starting_offset = starting_offset
        self._stop_at_end = stop_at_end
        self._incarnation: str | None = None
        self.in_flight = in_flight
        self._consumers: dict[int, _SharedConsumer] = {}  # per worker thread
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        self._incarnation = self._cluster.topic_incarnation(self._topic)
        metadata = self._cluster.admin().list_topics(self._topic, timeout=30)
        topic = metadata.topics[self._topic]
        if topic.error is not None:
            raise RuntimeError(f"cannot list the partitions of Kafka topic {self._topic!r}: {topic.error.str()}")
        return [f"{partition}-{self._topic}" for partition in sorted(topic.partitions)]  # as bytewax's own source

    def build_part(self, step_id: str, for_part: str, resume_state: tuple[str, int] | int | None) -> _PartitionReader:
        if self._incarnation is None:
            self._incarnation = self._cluster.topic_incarnation(self._topic)
        if isinstance(resume_state, int):  # snapshots taken before they named the incarnation
            resume_state = (self._incarnation, resume_state)
        if resume_state is not None and resume_state[0] == self._incarnation:
            offset = resume_state[1]
        elif resume_state is not None:
            log.warning("%s: the topic was deleted and created again since the last snapshot; reading partition %s "
                        "of the new topic from its beginning", self._topic, for_part.split("-", 1)[0])
            offset = OFFSET_BEGINNING
        else:
            offset = OFFSET_BEGINNING if self._starting_offset == "earliest" else OFFSET_END
        return _PartitionReader(self._worker_consumer(), self._topic, self._incarnation, int(for_part.split("-", 1)[0]),
                                offset, self.in_flight)

    def _worker_consumer(self) -> _SharedConsumer:
        """The consumer of the calling worker (a Bytewax worker is a thread), created on first use."""
        worker = threading.get_ident()
        with self._lock:
            consumer = self._consumers.get(worker)
            if consumer is None:
                config = {
                    **self._cluster.client_config,
                    "group.id": "marketstream",  # required by librdkafka; offsets are kept in Bytewax state, not here
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": self._stop_at_end,
                    # a resumed offset past the end (or before the start, after retention) reads from the
                    # first message there is: skipping to the end would lose what arrived meanwhile
                    "auto.offset.reset": "earliest",
                    **BOUNDED_FETCHES,
                }
                consumer = _SharedConsumer(config, self._batch_size,
                                           on_close=lambda: self._forget(worker))
                self._consumers[worker] = consumer
            return consumer

    def _forget(self, worker: int) -> None:
        with self._lock:
            self._consumers.pop(worker, None)
