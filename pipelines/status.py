"""`marketstream status`: for every dataset, how far its consumer is behind its topic, what its tables hold
and what was dead-lettered, read from Kafka and the tables themselves (no state of a running process).

A partition's position is the offset after the last one it has settled: stored in one of the dataset's
tables (their Delta transaction ids, current and former names) or dead-lettered (the tail of the dead-letter
topic). Its lag is the messages from there to the end of the partition, and in seconds the span of their
Kafka timestamps (set when the producer published them). Rows a dataset skips on purpose (real trades
outside NYSE sessions) leave no mark, so a partition whose last messages were skipped shows them as lag
until a stored message follows.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition

from marketstream.datasets import DATASETS, Dataset
from marketstream.kafka_cluster import KafkaCluster
from sinks.delta_commits import app_id_prefix
from sinks.delta_maintenance import is_closed

DEAD_LETTER_TAIL = 500
"""Dead letters read per partition for the most frequent reasons."""
TIMEOUT_SECONDS = 10.0


@dataclass
class TableStatus:
    name: str
    uri: str
    version: int | None = None
    """None: no table yet."""
    files: int = 0
    rows: int = 0
    files_awaiting_compaction: int = 0
    """Files in closed partitions that hold more than one file: what the next maintenance run rewrites."""
    last_commit: str | None = None
    last_commit_age_s: float | None = None


@dataclass
class DatasetStatus:
    dataset: str
    topic: str
    topic_exists: bool = False
    messages: int = 0
    """Messages the topic holds now (its retention may have removed older ones)."""
    last_message: str | None = None
    last_message_age_s: float | None = None
    lag_messages: int = 0
    lag_seconds: float = 0.0
    lag_by_partition: dict[int, int] = field(default_factory=dict)
    tables: list[TableStatus] = field(default_factory=list)
    dead_letters: int = 0
    top_reasons: list[tuple[str, int]] = field(default_factory=list)


def one_line(error: BaseException) -> str:
    """An object-store client's error (several indented lines with terminal colours) as one line."""
    text = re.sub(r"\x1b\[[0-9;]*m|↳", "", str(error))
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())[:400]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds_between(earlier_ms: int, later: datetime) -> float:
    return round(later.timestamp() - earlier_ms / 1000, 3)


class _TopicReader:
    """Watermarks of partitions and single messages at given offsets, with one consumer."""

    def __init__(self, client_config: dict[str, object]):
        self._consumer = Consumer({**client_config, "group.id": "marketstream-status", "enable.auto.commit": False,
                                   "enable.partition.eof": True})

    def watermarks(self, topic: str, partitions: int) -> list[tuple[int, int]]:
        return [self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_SECONDS)
                for p in range(partitions)]

    def read(self, topic: str, partition: int, first: int, count: int) -> list:
        """Up to `count` messages of one partition from offset `first`."""
        self._consumer.assign([TopicPartition(topic, partition, first)])
        messages = []
        while len(messages) < count:
            batch = self._consumer.consume(min(count - len(messages), 500), timeout=TIMEOUT_SECONDS)
            if not batch:
                break
            for message in batch:
                if message.error() is None:
                    messages.append(message)
            if any(m.error() is not None for m in batch):  # end of partition
                break
        return messages[:count]

    def timestamp_at(self, topic: str, partition: int, offset: int) -> int | None:
        """The Kafka timestamp (ms) of the message at `offset`."""
        found = self.read(topic, partition, offset, 1)
        return found[0].timestamp()[1] if found else None

    def close(self) -> None:
        self._consumer.close()


def _dead_letters(reader: _TopicReader, cluster: KafkaCluster, dataset: Dataset, incarnation: str | None,
                  status: DatasetStatus) -> dict[int, int]:
    """Counts the dead-letter topic and its most frequent reasons; the last source offset dead-lettered per
    source partition of the current topic incarnation."""
    info = cluster.existing_topic(dataset.dead_letter_topic, TIMEOUT_SECONDS)
    if info is None:
        return {}
    reasons: Counter[str] = Counter()
    settled: dict[int, int] = {}
    for partition, (low, high) in enumerate(reader.watermarks(dataset.dead_letter_topic, info.partitions)):
        status.dead_letters += high - low
        if high <= low:
            continue
        for message in reader.read(dataset.dead_letter_topic, partition, max(low, high - DEAD_LETTER_TAIL),
                                   DEAD_LETTER_TAIL):
            headers = {name: value for name, value in (message.headers() or [])}
            reason = (headers.get("dlq.reason") or b"").decode(errors="replace").splitlines()[0:1]
            reasons[(reason[0] if reason else "(no reason)")[:120]] += 1
            if headers.get("dlq.incarnation", b"").decode() == incarnation and "dlq.partition" in headers:
                source = int(headers["dlq.partition"])
                settled[source] = max(settled.get(source, -1), int(headers["dlq.offset"]))
    status.top_reasons = reasons.most_common(3)
    return settled


def _table(name: str, uri: str, storage_options: dict[str, str], today: date, closed_after_days: int,
           now: datetime):
    """The table at `uri` (None: there is none) and what it holds."""
    from deltalake import DeltaTable

    status = TableStatus(name, uri)
    try:
        if not DeltaTable.is_deltatable(uri, storage_options=storage_options):
            return None, status
    except OSError as exc:
        if "NoSuchBucket" in str(exc):
            return None, status
        raise
    table = DeltaTable(uri, storage_options=storage_options)
    status.version = table.version()
    files = pa.table(table.get_add_actions(flatten=True))
    status.files, status.rows = files.num_rows, int(sum(files.column("num_records").to_pylist()))
    partition_columns = [c for c in files.column_names if c.startswith("partition.")]
    if partition_columns and files.num_rows:
        counts = files.select(partition_columns).group_by(partition_columns, use_threads=False).aggregate(
            [([], "count_all")])
        status.files_awaiting_compaction = sum(
            row["count_all"] for row in counts.to_pylist()
            if row["count_all"] > 1 and is_closed({c.removeprefix("partition."): row[c] for c in partition_columns},
                                                  today, closed_after_days))
    last = table.history(1)
    if last and last[0].get("timestamp") is not None:
        status.last_commit = _iso(datetime.fromtimestamp(last[0]["timestamp"] / 1000, timezone.utc))
        status.last_commit_age_s = _seconds_between(last[0]["timestamp"], now)
    return table, status


def dataset_status(dataset: Dataset, tables: dict[str, str], cluster: KafkaCluster, storage_options: dict[str, str],
                   *, now: datetime, today: date, closed_after_days: int) -> DatasetStatus:
    """What `marketstream status` says of one dataset; `tables`: its Delta tables by SQL name, with URIs."""
    status = DatasetStatus(dataset.name, dataset.topic)
    opened = {}
    for name, uri in tables.items():
        table, table_status = _table(name, uri, storage_options, today, closed_after_days, now)
        status.tables.append(table_status)
        if table is not None:
            opened[name] = table
    reader = _TopicReader(cluster.client_config)
    try:
        info = cluster.existing_topic(dataset.topic, TIMEOUT_SECONDS)
        settled = _dead_letters(reader, cluster, dataset, info.incarnation if info else None, status)
        if info is None:
            return status
        status.topic_exists = True
        prefixes = [app_id_prefix(name, dataset.topic, info.incarnation) for name in (dataset.name, *dataset.former_names)]
        newest_ms, oldest_waiting_ms = None, None
        for partition, (low, high) in enumerate(reader.watermarks(dataset.topic, info.partitions)):
            status.messages += high - low
            if high <= low:
                continue
            stored = [table.transaction_version(f"{prefix}:{partition}") for table in opened.values() for prefix in prefixes]
            position = max([v for v in stored if v is not None] + [settled.get(partition, -1)]) + 1
            lag = high - max(position, low)
            last_ms = reader.timestamp_at(dataset.topic, partition, high - 1)
            if last_ms is not None:
                newest_ms = max(newest_ms or last_ms, last_ms)
            if lag > 0:
                status.lag_by_partition[partition] = lag
                status.lag_messages += lag
                first_ms = reader.timestamp_at(dataset.topic, partition, max(position, low))
                if first_ms is not None:
                    oldest_waiting_ms = min(oldest_waiting_ms or first_ms, first_ms)
        if newest_ms is not None:
            status.last_message = _iso(datetime.fromtimestamp(newest_ms / 1000, timezone.utc))
            status.last_message_age_s = _seconds_between(newest_ms, now)
            if oldest_waiting_ms is not None:
                status.lag_seconds = round((newest_ms - oldest_waiting_ms) / 1000, 3)
        return status
    finally:
        reader.close()


def dataset_tables(dataset: Dataset, kept_apart_prefix: str) -> dict[str, str]:
    tables = {dataset.name: f"s3://{dataset.bucket}"}
    if dataset.kept_apart_table:
        tables[dataset.kept_apart_table] = f"s3://{dataset.bucket}/{kept_apart_prefix}"
    return tables


@dataclass(frozen=True)
class Thresholds:
    max_lag_messages: int | None = None
    max_lag_seconds: float | None = None
    max_commit_age_seconds: float | None = None
    max_dead_letters: int | None = None


def alerts(statuses: list[DatasetStatus], limits: Thresholds) -> list[str]:
    """One line per threshold passed, naming the option."""
    found = []
    for s in statuses:
        if limits.max_lag_messages is not None and s.lag_messages > limits.max_lag_messages:
            found.append(f"{s.dataset}: lag {s.lag_messages:,} messages > {limits.max_lag_messages:,} (--max-lag-messages)")
        if limits.max_lag_seconds is not None and s.lag_seconds > limits.max_lag_seconds:
            found.append(f"{s.dataset}: lag {s.lag_seconds:g} s > {limits.max_lag_seconds:g} s (--max-lag-seconds)")
        if limits.max_dead_letters is not None and s.dead_letters > limits.max_dead_letters:
            found.append(f"{s.dataset}: {s.dead_letters:,} dead letters > {limits.max_dead_letters:,} (--max-dead-letters)")
        if limits.max_commit_age_seconds is not None and s.messages:
            ages = [t.last_commit_age_s for t in s.tables if t.last_commit_age_s is not None]
            newest = min(ages) if ages else None
            if newest is None or newest > limits.max_commit_age_seconds:
                said = "no commit yet" if newest is None else f"last commit {newest:,.0f} s ago"
                found.append(f"{s.dataset}: {said} > {limits.max_commit_age_seconds:g} s (--max-commit-age)")
    return found


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def render(statuses: list[DatasetStatus]) -> str:
    lines = []
    for s in statuses:
        lines.append(f"{s.dataset}")
        if s.topic_exists:
            last = f"last {_age(s.last_message_age_s)}" if s.last_message else "none yet"
            lines.append(f"  topic {s.topic}: {s.messages:,} messages, {last}; "
                         f"lag {s.lag_messages:,} messages, {s.lag_seconds:g} s")
        else:
            lines.append(f"  topic {s.topic}: does not exist yet")
        for t in s.tables:
            if t.version is None:
                lines.append(f"  table {t.name} ({t.uri}): none yet")
            else:
                lines.append(f"  table {t.name} ({t.uri}): version {t.version}, {t.files:,} files, {t.rows:,} rows, "
                             f"{t.files_awaiting_compaction:,} awaiting compaction, last commit {_age(t.last_commit_age_s)}")
        reasons = "; ".join(f"{count} × {reason}" for reason, count in s.top_reasons)
        lines.append(f"  dead letters: {s.dead_letters:,}" + (f" (latest: {reasons})" if reasons else ""))
    return "\n".join(lines)


def to_json(statuses: list[DatasetStatus], found_alerts: list[str], now: datetime) -> str:
    return json.dumps({"at": _iso(now), "datasets": [asdict(s) for s in statuses], "alerts": found_alerts}, indent=2)


def lake_status(cluster: KafkaCluster, storage_options: dict[str, str], kept_apart_prefix: str, *, now: datetime,
                today: date, closed_after_days: int, datasets: list[str] | None = None) -> list[DatasetStatus]:
    return [dataset_status(dataset, dataset_tables(dataset, kept_apart_prefix), cluster, storage_options, now=now,
                           today=today, closed_after_days=closed_after_days)
            for name, dataset in DATASETS.items() if not datasets or name in datasets]

