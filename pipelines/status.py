"""`marketstream status`: for every dataset, how far its consumer is behind its topic, what its tables hold
and what was dead-lettered, read from Kafka and the tables themselves (no state of a running process); and
the tables derived from a dataset (the one-minute bars of `stock`), which have no topic of their own.

A partition's position is the offset after the last one it has settled: stored in one of the dataset's
tables (their Delta transaction ids, current and former names) or dead-lettered (the tail of the dead-letter
topic). Its lag is the messages from there to the end of the partition, and in seconds the span of their
Kafka timestamps (set when the producer published them). Rows a dataset skips on purpose (real trades
outside NYSE sessions) leave no mark, so a partition whose last messages were skipped shows them as lag
until a stored message follows.

A figure is never shown that was not read: every Kafka query (metadata, watermarks, messages) is tried
again while the broker is slow, paused or unreachable, for at most `PATIENCE_SECONDS` per run; a figure
still not read then is None ("unknown"), with every figure that depends on it, and `DatasetStatus.unread`
says why.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from marketstream.datasets import BARS_TABLES, DATASETS, STOCK, Dataset, lake_tables
from marketstream.kafka_cluster import KafkaCluster, TopicInfo, read_partition
from marketstream.lake import delta_table_at, log_actions
from sinks.delta_commits import app_id_prefix
from sinks.delta_maintenance import is_closed, partitions_lacking_stats

T = TypeVar("T")
OpenTable = Callable[[str, dict[str, str]], object]
"""How a Delta table is loaded: `(uri, storage_options)` -> the table, None where there is none."""

DEAD_LETTER_TAIL = 500
"""Dead letters read per partition for the most frequent reasons."""
PATIENCE_SECONDS = 30.0
"""How long one run waits for Kafka's answers (a busy, paused or unreachable broker) before it says unknown."""
LAST_TRY_SECONDS = 3.0
"""A query made once the patience is spent still gets this long: a broker that answers again is read."""
POLL_SECONDS = 0.5
RETRY_PAUSE_SECONDS = 0.5


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
    files_without_stats: int = 0
    """Files whose log entry lacks a bound or null count readers' data skipping needs (written before 2026-12):
    filters skip them until the next maintenance run writes them again."""
    last_commit: str | None = None
    last_commit_age_s: float | None = None


@dataclass
class DatasetStatus:
    """What status says of one dataset. A Kafka figure that is None could not be read (`unread` says why),
    except `last_message`, None also while the topic holds no message."""

    dataset: str
    topic: str
    topic_exists: bool | None = False
    messages: int | None = 0
    """Messages the topic holds now (its retention may have removed older ones)."""
    last_message: str | None = None
    last_message_age_s: float | None = None
    lag_messages: int | None = 0
    lag_seconds: float | None = 0.0
    lag_by_partition: dict[int, int] = field(default_factory=dict)
    tables: list[TableStatus] = field(default_factory=list)
    dead_letters: int | None = 0
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    unread: str | None = None
    """Why some Kafka figures are unknown; None when every one was read."""


@dataclass
class DerivedStatus:
    """Tables computed from a dataset's topic by a dataflow of their own (the bars): no topic of their own, so
    no offsets; how far behind they are is read in time instead."""

    name: str
    derived_from: str
    """The dataset whose topic they are computed from."""
    tables: list[TableStatus] = field(default_factory=list)
    newest_held: str | None = None
    """The time of the newest trade the tables hold (the largest `close_ts` of their files' statistics); None:
    they hold none yet."""
    behind_seconds: float | None = None
    """How much older that trade is than the newest message of the source's topic (0 when it is that one or
    the topic holds none): the dataflow's lag in time. A minute's bar is written once its window closes, so
    in steady state this is up to a minute plus the allowed lateness and a batch age. None: unknown (the
    topic's newest message not read, or the tables hold nothing yet while the topic has messages)."""


@dataclass
class LakeStatus:
    datasets: list[DatasetStatus]
    derived: list[DerivedStatus]

    @property
    def unread(self) -> list[str]:
        """Why figures are unknown, one reason per dataset that has some."""
        return [f"{s.dataset}: {s.unread}" for s in self.datasets if s.unread]


def one_line(error: BaseException) -> str:
    """An object-store client's error (several indented lines with terminal colours) as one line."""
    text = re.sub(r"\x1b\[[0-9;]*m|↳", "", str(error))
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())[:400]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds_between(earlier_ms: int, later: datetime) -> float:
    return round(later.timestamp() - earlier_ms / 1000, 3)


class KafkaUnreadable(Exception):
    """Kafka did not give a figure within the patience; the message says which and why."""


def _refused(error: KafkaError) -> bool:
    """Whether retrying cannot help: credentials or permissions refused."""
    return error.fatal() or "AUTH" in error.name()


class _TopicReader:
    """Topics, watermarks and messages, with one consumer. Each query is tried again after a failure (a
    timeout, a lost connection, metadata not known yet) until `deadline` (`time.monotonic`), then raises
    `KafkaUnreadable`; a query made after the deadline still gets one try of `last_try` seconds."""

    def __init__(self, cluster: KafkaCluster, deadline: float, last_try: float = LAST_TRY_SECONDS):
        self._cluster, self._deadline, self._last_try = cluster, deadline, last_try
        # auto.offset.reset=error: an offset retention removed meanwhile is reported, not skipped silently;
        # fetch.wait.max.ms: each read assigns another partition, and with the default (500 ms) every one waited
        # for the fetch the broker held for the previous one (measured: 0.5 s per partition read, 10 ms with it)
        self._consumer = Consumer({**cluster.client_config, "group.id": "marketstream-status", "enable.auto.commit": False,
                                   "enable.partition.eof": True, "auto.offset.reset": "error", "fetch.wait.max.ms": 10})

    def _patiently(self, what: str, query: Callable[[float], T]) -> T:
        while True:
            try:
                return query(max(self._deadline - time.monotonic(), self._last_try))
            except KafkaException as exc:
                error = exc.args[0]
                text = error.str() if isinstance(error, KafkaError) else str(error)
                if time.monotonic() >= self._deadline or (isinstance(error, KafkaError) and _refused(error)):
                    raise KafkaUnreadable(f"{what}: {text}") from None
                time.sleep(RETRY_PAUSE_SECONDS)

    def topic(self, topic: str) -> TopicInfo | None:
        """`topic`'s incarnation and partitions; None: there is no such topic."""
        return self._patiently(f"the metadata of {topic}", lambda timeout: self._cluster.existing_topic(topic, timeout))

    def watermark(self, topic: str, partition: int) -> tuple[int, int]:
        """The first offset retention left and the offset after the last message."""
        return self._patiently(f"the offsets of {topic} [{partition}]", lambda timeout: self._consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout))

    def watermarks(self, topic: str, partitions: int) -> list[tuple[int, int]]:
        return [self.watermark(topic, p) for p in range(partitions)]

    def read(self, topic: str, partition: int, first: int, end: int) -> list:
        """The messages of one partition from offset `first` to `end` (exclusive: a high watermark read before);
        fewer only when retention removed some meanwhile."""
        give_up_at = max(self._deadline, time.monotonic() + self._last_try)
        try:
            return list(read_partition(self._consumer, topic, partition, first, end, give_up_at=give_up_at,
                                       poll_seconds=POLL_SECONDS))
        except (TimeoutError, KafkaException) as exc:
            raise KafkaUnreadable(str(exc)) from None

    def timestamp_at(self, topic: str, partition: int, offset: int, end: int) -> int | None:
        """The Kafka timestamp (ms) of the message at `offset`, or of the first one after it that retention
        left; None: none is left before `end`."""
        found = self.read(topic, partition, offset, offset + 1)
        if not found:
            low = self.watermark(topic, partition)[0]
            found = self.read(topic, partition, low, low + 1) if offset < low < end else []
        return found[0].timestamp()[1] if found else None

    def close(self) -> None:
        self._consumer.close()


def _dead_letters(reader: _TopicReader, dataset: Dataset, incarnation: str | None, status: DatasetStatus) -> dict[int, int]:
    """Counts the dead-letter topic and its most frequent reasons; the last source offset dead-lettered per
    source partition of the current topic incarnation."""
    info = reader.topic(dataset.dead_letter_topic)
    if info is None:
        status.dead_letters = 0
        return {}
    marks = reader.watermarks(dataset.dead_letter_topic, info.partitions)
    status.dead_letters = sum(high - low for low, high in marks)
    reasons: Counter[str] = Counter()
    settled: dict[int, int] = {}
    for partition, (low, high) in enumerate(marks):
        if high <= low:
            continue
        for message in reader.read(dataset.dead_letter_topic, partition, max(low, high - DEAD_LETTER_TAIL), high):
            headers = {name: value for name, value in (message.headers() or [])}
            reason = (headers.get("dlq.reason") or b"").decode(errors="replace").splitlines()[0:1]
            reasons[(reason[0] if reason else "(no reason)")[:120]] += 1
            if headers.get("dlq.incarnation", b"").decode() == incarnation and "dlq.partition" in headers:
                source = int(headers["dlq.partition"])
                settled[source] = max(settled.get(source, -1), int(headers["dlq.offset"]))
    status.top_reasons = reasons.most_common(3)
    return settled


def _table(name: str, uri: str, storage_options: dict[str, str], log_filesystem, today: date,
           closed_after_days: int, now: datetime, open_table: OpenTable | None = None):
    """The table at `uri` (None: there is none), what it holds, and its files' add actions with their
    statistics (None with no table)."""
    status = TableStatus(name, uri)
    table = (open_table or delta_table_at)(uri, storage_options)
    if table is None:
        return None, status, None
    status.version = table.version()
    files = pa.table(table.get_add_actions(flatten=True))
    status.files, status.rows = files.num_rows, int(sum(n or 0 for n in files.column("num_records").to_pylist()))
    status.files_without_stats = partitions_lacking_stats(table)[1]
    partition_columns = [c for c in files.column_names if c.startswith("partition.")]
    if partition_columns and files.num_rows:
        counts = files.select(partition_columns).group_by(partition_columns, use_threads=False).aggregate(
            [([], "count_all")])
        status.files_awaiting_compaction = sum(
            row["count_all"] for row in counts.to_pylist()
            if row["count_all"] > 1 and is_closed({c.removeprefix("partition."): row[c] for c in partition_columns},
                                                  today, closed_after_days))
    last_ms = _commit_millis(log_filesystem, uri, status.version)
    if last_ms is not None:
        status.last_commit = _iso(datetime.fromtimestamp(last_ms / 1000, timezone.utc))
        status.last_commit_age_s = _seconds_between(last_ms, now)
    return table, status, files


def _commit_millis(log_filesystem, uri: str, version: int) -> int | None:
    """When `version` of the table at `uri` was committed (its log entry's `commitInfo` timestamp; None where
    the entry has none, or is gone: a table made anew at the address since it was loaded), read through
    `log_filesystem` (pyarrow's, which waits for the store without the GIL: delta-rs's `history(1)` held it
    through the whole read, stalling the console's web server and the chaos sampler's other threads)."""
    entry = f"{uri.removeprefix('s3://').rstrip('/')}/_delta_log/{version:020d}.json"
    try:
        with log_filesystem.open_input_stream(entry) as stream:
            actions = log_actions(stream.read().decode())
    except FileNotFoundError:
        return None
    for action in actions:
        if "commitInfo" in action:
            return action["commitInfo"].get("timestamp")
    return None


def _kafka_figures(status: DatasetStatus, dataset: Dataset, tables: list, reader: _TopicReader, now: datetime) -> None:
    """Reads `status`'s Kafka figures in turn; when one cannot be read (`KafkaUnreadable`), it and those that
    depend on it stay None."""
    status.topic_exists = status.messages = status.lag_messages = status.lag_seconds = status.dead_letters = None
    info = reader.topic(dataset.topic)
    status.topic_exists = info is not None
    marks = reader.watermarks(dataset.topic, info.partitions) if info else []
    status.messages = sum(high - low for low, high in marks)
    settled = _dead_letters(reader, dataset, info.incarnation if info else None, status)
    if info is None:
        status.lag_messages, status.lag_seconds = 0, 0.0
        return
    prefixes = [app_id_prefix(name, dataset.topic, info.incarnation) for name in (dataset.name, *dataset.former_names)]
    waiting_from: dict[int, int] = {}
    for partition, (low, high) in enumerate(marks):
        stored = [table.transaction_version(f"{prefix}:{partition}") for table in tables for prefix in prefixes]
        position = max(max([v for v in stored if v is not None] + [settled.get(partition, -1)]) + 1, low)
        if high > position:
            waiting_from[partition] = position
            status.lag_by_partition[partition] = high - position
    status.lag_messages = sum(status.lag_by_partition.values())
    newest_ms, oldest_waiting_ms = None, None
    for partition, (low, high) in enumerate(marks):
        if high <= low:
            continue
        last_ms = reader.timestamp_at(dataset.topic, partition, high - 1, high)
        if last_ms is not None:
            newest_ms = max(newest_ms or last_ms, last_ms)
        if partition in waiting_from:
            first_ms = reader.timestamp_at(dataset.topic, partition, waiting_from[partition], high)
            if first_ms is not None:
                oldest_waiting_ms = min(oldest_waiting_ms or first_ms, first_ms)
                # timestamps are the producers' clocks, not the log's order: a message held back by an outage
                # lands after newer ones; the newest time is the newest read
                newest_ms = max(newest_ms or first_ms, first_ms)
    if newest_ms is not None:
        status.last_message = _iso(datetime.fromtimestamp(newest_ms / 1000, timezone.utc))
        status.last_message_age_s = _seconds_between(newest_ms, now)
    status.lag_seconds = round((newest_ms - oldest_waiting_ms) / 1000, 3) if oldest_waiting_ms is not None else 0.0


def dataset_status(dataset: Dataset, tables: dict[str, str], cluster: KafkaCluster, storage_options: dict[str, str],
                   log_filesystem, *, now: datetime, today: date, closed_after_days: int, deadline: float | None = None,
                   last_try: float = LAST_TRY_SECONDS, open_table: OpenTable | None = None) -> DatasetStatus:
    """What `marketstream status` says of one dataset; `tables`: its Delta tables by SQL name, with URIs;
    `log_filesystem`: a pyarrow filesystem on their store (the local one for tables on disk); `deadline`
    (`time.monotonic`): until when Kafka's answers are waited for (default `PATIENCE_SECONDS`), and a query made
    after it still gets `last_try` seconds; `open_table(uri, storage_options)`: how a table is loaded (default
    `delta_table_at`; `marketstream.lake.LoadedTables` for a reader that looks again and again)."""
    status = DatasetStatus(dataset.name, dataset.topic)
    opened = []
    for name, uri in tables.items():
        table, table_status, _ = _table(name, uri, storage_options, log_filesystem, today, closed_after_days, now,
                                        open_table)
        status.tables.append(table_status)
        if table is not None:
            opened.append(table)
    reader = _TopicReader(cluster, time.monotonic() + PATIENCE_SECONDS if deadline is None else deadline, last_try)
    try:
        _kafka_figures(status, dataset, opened, reader, now)
    except KafkaUnreadable as exc:
        status.unread = str(exc)
    finally:
        reader.close()
    return status


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

    OPTIONS = {"max_lag_messages": "--max-lag-messages", "max_lag_seconds": "--max-lag-seconds",
               "max_commit_age_seconds": "--max-commit-age", "max_dead_letters": "--max-dead-letters"}

    def problem(self) -> str | None:
        """Why these thresholds cannot be used (one is negative or not a number), naming its option."""
        for name, option in self.OPTIONS.items():
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                return f"{option} must be a number of 0 or more, not {value:g}"
        return None


def alerts(statuses: list[DatasetStatus], limits: Thresholds) -> list[str]:
    """One line per threshold passed, naming the option. An unknown figure passes no threshold: status
    exits 3 for it instead."""
    found = []
    for s in statuses:
        if None not in (limits.max_lag_messages, s.lag_messages) and s.lag_messages > limits.max_lag_messages:
            found.append(f"{s.dataset}: lag {s.lag_messages:,} messages > {limits.max_lag_messages:,} (--max-lag-messages)")
        if None not in (limits.max_lag_seconds, s.lag_seconds) and s.lag_seconds > limits.max_lag_seconds:
            found.append(f"{s.dataset}: lag {s.lag_seconds:g} s > {limits.max_lag_seconds:g} s (--max-lag-seconds)")
        if None not in (limits.max_dead_letters, s.dead_letters) and s.dead_letters > limits.max_dead_letters:
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


def _table_lines(tables: list[TableStatus]) -> list[str]:
    lines = []
    for t in tables:
        if t.version is None:
            lines.append(f"  table {t.name} ({t.uri}): none yet")
        else:
            lines.append(f"  table {t.name} ({t.uri}): version {t.version}, {t.files:,} files, {t.rows:,} rows, "
                         f"{t.files_awaiting_compaction:,} awaiting compaction, last commit {_age(t.last_commit_age_s)}"
                         + (f"; {t.files_without_stats:,} files without full statistics (run marketstream maintain)"
                            if t.files_without_stats else ""))
    return lines


def _topic_line(s: DatasetStatus) -> str:
    if s.topic_exists is None:
        return f"  topic {s.topic}: unknown"
    if not s.topic_exists:
        return f"  topic {s.topic}: does not exist yet"
    messages = "messages unknown" if s.messages is None else f"{s.messages:,} messages"
    if s.messages == 0:
        last = "none yet"
    else:
        last = "last unknown" if s.last_message is None else f"last {_age(s.last_message_age_s)}"
    if s.lag_messages is None:
        lag = "lag unknown"
    else:
        lag = f"lag {s.lag_messages:,} messages, " + ("seconds unknown" if s.lag_seconds is None else f"{s.lag_seconds:g} s")
    return f"  topic {s.topic}: {messages}, {last}; {lag}"


def render(statuses: list[DatasetStatus], derived: list[DerivedStatus] = ()) -> str:
    lines = []
    for s in statuses:
        lines += [s.dataset, _topic_line(s), *_table_lines(s.tables)]
        if s.dead_letters is None:
            lines.append("  dead letters: unknown")
        else:
            reasons = "; ".join(f"{count} × {reason}" for reason, count in s.top_reasons)
            lines.append(f"  dead letters: {s.dead_letters:,}" + (f" (latest: {reasons})" if reasons else ""))
        if s.unread:
            lines.append(f"  not read from Kafka: {s.unread}")
    for d in derived:
        lines += [f"{d.name} (computed from {d.derived_from}'s topic by its own dataflow)", *_table_lines(d.tables),
                  _behind_line(d)]
    return "\n".join(lines)


def _behind_line(d: DerivedStatus) -> str:
    held = f" (newest trade held {d.newest_held})" if d.newest_held else ""
    if d.behind_seconds is not None:
        return f"  behind its source's topic: {d.behind_seconds:g} s{held}"
    return "  behind its source's topic: " + ("unknown" + held if d.newest_held else "no trade held yet")


def to_json(statuses: list[DatasetStatus], found_alerts: list[str], now: datetime,
            derived: list[DerivedStatus] = ()) -> str:
    return json.dumps({"at": _iso(now), "datasets": [asdict(s) for s in statuses],
                       "derived": [asdict(d) for d in derived], "alerts": found_alerts}, indent=2)


DERIVED = {"bars": (STOCK.name, BARS_TABLES)}
"""Tables that have no topic of their own, by name: the dataset they are computed from, and their SQL names."""


def lake_status(cluster: KafkaCluster, storage_options: dict[str, str], log_filesystem, kept_apart_prefix: str,
                bars_bucket: str, *, now: datetime, today: date, closed_after_days: int, datasets: list[str] | None = None,
                patience_seconds: float = PATIENCE_SECONDS, last_try_seconds: float = LAST_TRY_SECONDS,
                open_table: OpenTable | None = None) -> LakeStatus:
    """Every dataset's status (or those named in `datasets`, derived ones included), Kafka's answers waited
    for `patience_seconds` in all, then `last_try_seconds` for each query still made (the console, which
    refreshes every second, waits less than the command line); `log_filesystem` and `open_table` as for
    `dataset_status`."""
    deadline = time.monotonic() + patience_seconds
    found = [dataset_status(dataset, dataset_tables(dataset, kept_apart_prefix), cluster, storage_options,
                            log_filesystem, now=now, today=today, closed_after_days=closed_after_days, deadline=deadline,
                            last_try=last_try_seconds, open_table=open_table)
             for name, dataset in DATASETS.items() if not datasets or name in datasets]
    derived = []
    for name, (source, _) in DERIVED.items():
        if datasets and name not in datasets:
            continue
        source_status = next((s for s in found if s.dataset == source), None) or dataset_status(
            DATASETS[source], dataset_tables(DATASETS[source], kept_apart_prefix), cluster, storage_options,
            log_filesystem, now=now, today=today, closed_after_days=closed_after_days, deadline=deadline,
            last_try=last_try_seconds, open_table=open_table)
        derived.append(derived_status(name, source_status, storage_options, log_filesystem, kept_apart_prefix,
                                      bars_bucket, now=now, today=today, closed_after_days=closed_after_days,
                                      open_table=open_table))
    return LakeStatus(found, derived)


def derived_status(name: str, source: DatasetStatus, storage_options: dict[str, str], log_filesystem,
                   kept_apart_prefix: str, bars_bucket: str, *, now: datetime, today: date, closed_after_days: int,
                   open_table: OpenTable | None = None) -> DerivedStatus:
    """What status says of the derived tables `name` (`DERIVED`), `source` being their dataset's status."""
    uris = lake_tables(kept_apart_prefix, bars_bucket)
    opened = [_table(table, uris[table], storage_options, log_filesystem, today, closed_after_days, now, open_table)
              for table in DERIVED[name][1]]
    status = DerivedStatus(name, DERIVED[name][0], [table_status for _, table_status, _ in opened])
    derived_behind(status, [files for _, _, files in opened if files is not None], source, now)
    return status


def derived_behind(status: DerivedStatus, tables_files: list[pa.Table], source: DatasetStatus, now: datetime) -> None:
    """`status.newest_held` from the statistics of the tables' files (their add actions, flattened), and how
    far it is behind `source`'s topic."""
    held = []
    for files in tables_files:
        if "max.close_ts" in files.column_names and files.num_rows:
            newest = pc.max(files.column("max.close_ts")).as_py()
            if newest is not None:
                held.append(newest)
    newest_held = max(held, default=None)
    status.newest_held = _iso(newest_held) if newest_held else None
    if source.messages == 0:
        status.behind_seconds = 0.0
    elif source.last_message_age_s is not None and newest_held is not None:
        newest_message = now.timestamp() - source.last_message_age_s
        status.behind_seconds = round(max(newest_message - newest_held.timestamp(), 0.0), 3)
