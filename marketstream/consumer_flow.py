"""The one consumer dataflow: Kafka topic -> decode and validate -> dead-letter -> key -> batch -> Parquet.

Each `dataflows/*_consume.py` is a `Dataset` declaration handed to `build_consumer_flow`.

Guarantees: every message read ends in exactly one place: a Parquet row, a dead-letter record carrying
its reason, or a counted and logged skip (a valid record the dataset declines to store, such as a real
trade outside the NYSE session). A message that breaks the parser in an unforeseen way is dead-lettered
too; the flow keeps running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import bytewax.operators as op
import pyarrow as pa
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from marketstream.batching import SizeOrAgeBatcher
from marketstream.records import InvalidRecord
from marketstream.settings import Settings, get_settings
from sinks.kafka import KafkaProducerSink
from sinks.layout import object_key, partition_path
from sinks.parquet import Batch, ParquetSink
from sources.kafka import TopicSource

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 1_000


@dataclass(frozen=True)
class Dataset:
    """What a consumer needs to know about one dataset."""

    name: str
    topic: str
    bucket: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    parse: Callable[[bytes | None], dict]
    """Validate one message value into a row (file columns plus partition fields); raise InvalidRecord."""
    prefix: Callable[[dict, Settings], str] = lambda row, settings: ""
    """An object-key prefix above the hive partitions, for rows kept apart (e.g. synthetic trades)."""
    skip_reason: Callable[[dict], str | None] = lambda row: None
    """Why a valid row is not stored (counted and logged), or None to store it."""

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"


@dataclass(frozen=True)
class Rejected:
    """A message that failed validation, bound for the dead-letter topic."""

    message: KafkaSourceMessage
    reason: str

    def to_dead_letter(self, dataset: str) -> KafkaSinkMessage:
        msg = self.message
        return KafkaSinkMessage(
            key=msg.key,
            value=msg.value,
            headers=[
                ("dlq.reason", self.reason[:MAX_REASON_CHARS].encode()),
                ("dlq.dataset", dataset.encode()),
                ("dlq.topic", str(msg.topic).encode()),
                ("dlq.partition", str(msg.partition).encode()),
                ("dlq.offset", str(msg.offset).encode()),
            ],
        )


@dataclass
class SkipCounter:
    """Counts valid rows a dataset declines to store, logging a summary at most every `interval` s."""

    dataset: str
    interval: float = 10.0
    counts: dict[str, int] = field(default_factory=dict)
    _logged_at: float = field(default_factory=time.monotonic)

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if time.monotonic() - self._logged_at >= self.interval:
            self.report()

    def report(self) -> None:
        for reason, count in self.counts.items():
            log.info("%s: not stored so far: %d rows %s", self.dataset, count, reason)
        self._logged_at = time.monotonic()


def decode(dataset: Dataset, msg: KafkaSourceMessage) -> dict | Rejected:
    """Validate a message into a row carrying its Kafka lineage, or a `Rejected` with the reason."""
    try:
        row = dataset.parse(msg.value)
    except InvalidRecord as exc:
        return Rejected(msg, str(exc))
    except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the flow or lose the message
        return Rejected(msg, f"unexpected {type(exc).__name__} while parsing: {exc}")
    row["kafka_partition"] = msg.partition
    row["kafka_offset"] = msg.offset
    return row


def _consumer_errors(dataset: Dataset, item: KafkaSourceMessage | KafkaError) -> KafkaSourceMessage | None:
    if isinstance(item, KafkaError):
        log.warning("%s: Kafka consumer error (the source retries): %s", dataset.name, item.err)
        return None
    return item


def build_consumer_flow(
    dataset: Dataset,
    settings: Settings | None = None,
    *,
    source: Source | None = None,
    lake_sink: Sink | None = None,
    dead_letter_sink: Sink | None = None,
) -> Dataflow:
    """The dataflow for `dataset`; tests may replace the Kafka source and either sink."""
    settings = settings or get_settings()
    if lake_sink is None:
        settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")

    flow = Dataflow(f"{dataset.name}_consume")
    items = op.input("kafka_in", flow, source or TopicSource(settings, dataset.topic))
    messages = op.filter_map("consumer_errors", items, partial(_consumer_errors, dataset))
    decoded = op.map("decode", messages, partial(decode, dataset))
    split = op.branch("valid", decoded, lambda item: not isinstance(item, Rejected))

    dead_letters = op.map("to_dead_letter", split.falses, lambda r: r.to_dead_letter(dataset.name))
    op.output("dead_letter", dead_letters, dead_letter_sink or KafkaProducerSink(settings, dataset.dead_letter_topic))

    skipped = SkipCounter(dataset.name)

    def keep(row: dict) -> bool:
        reason = dataset.skip_reason(row)
        if reason is None:
            return True
        skipped.add(reason)
        return False

    def batch_key(row: dict) -> str:
        hive = partition_path([(name, row[name]) for name in dataset.partition_by])
        return f"{object_key(dataset.prefix(row, settings), hive)}|{row['kafka_partition']}"

    kept = op.filter("skip", split.trues, keep)
    keyed = op.key_on("key", kept, batch_key)
    batcher = partial(SizeOrAgeBatcher, settings.batch_max_rows, timedelta(seconds=settings.batch_max_age_seconds))
    batched = op.stateful_batch("batch", keyed, lambda state: batcher(state))

    def to_batch(key_rows: tuple[str, list[dict]]) -> Batch:
        key, rows = key_rows
        prefix, kafka_partition = key.rsplit("|", 1)
        return Batch(prefix, int(kafka_partition), rows)

    batches = op.map("to_batch", batched, to_batch)
    op.output(
        "lake",
        batches,
        lake_sink or ParquetSink(settings, bucket=dataset.bucket, topic=dataset.topic, schema=dataset.schema),
    )
    return flow
