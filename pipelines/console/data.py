"""What the console shows, read from Kafka and the lake as `marketstream status` and `marketstream sql` read
them, as plain JSON-ready values. No figure is made up: what was not read is None, and the reason says why.

- **Overview**: `pipelines.status.lake_status` itself, Kafka's answers waited for `OVERVIEW_PATIENCE_SECONDS`
  (a console refreshes; a stuck broker must not hold the page for the command line's 30 s). An object store
  that does not answer is one error line naming S3_ENDPOINT_URL; a Kafka that does not answer is each
  dataset's `unread`, with the figures that depend on it None.
- **Bars**: one ticker-day of a bars table (`pipelines.chart.bars_of`), minutes as Unix seconds.
- **Tables**: each Delta table's version, files, rows and its newest commits with the Kafka offsets they
  settled (the `txn` actions of the commit: app id `marketstream:<dataset>:<topic>:<incarnation>:<partition>`,
  version = the last offset stored), and its maintenance runs (delta-rs's OPTIMIZE and VACUUM commits, and
  the bars writer's rewrites, marked `MAINTENANCE_COMMIT`) with the files and bytes they replaced or deleted,
  all as the log entries hold them. A table is loaded afresh on every request; the log entries already read
  are kept, as a committed entry never changes.
- **Dead letters**: the newest of each dead-letter topic, read from its partitions' tails, with their headers.
- **SQL**: `pipelines.query` (DuckDB without file, network or extension access, its configuration locked),
  at most `SQL_ROWS` rows, `SQL_MEMORY_LIMIT`, interrupted after `SQL_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

import pyarrow as pa

from marketstream.datasets import DATASETS
from marketstream.lake import MAINTENANCE_COMMIT, log_actions
from marketstream.settings import Settings

OVERVIEW_PATIENCE_SECONDS = 3.0
"""How long one refresh of the overview waits for Kafka before it says a figure is unknown."""
LAST_TRY_SECONDS = 0.5
"""And how long each Kafka query made after that still gets (the command line's: 3 s)."""
DEAD_LETTERS_PER_PARTITION = 50
"""Dead letters read from the tail of each dead-letter partition."""
EXCERPT_BYTES = 300
SQL_ROWS = 1_000
SQL_TIMEOUT_SECONDS = 10.0
SQL_MEMORY_LIMIT = "512MB"
HISTORY_COMMITS = 20
LOG_LOOKBACK_COMMITS = 500
"""How far back the Tables page looks for maintenance runs: the log entries of a table's newest 500 versions
(dataflows.lake_maintenance runs hourly; a consumer commits about every BATCH_MAX_AGE_SECONDS)."""
MAINTENANCE_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def tables_of(settings: Settings) -> dict[str, str]:
    """The tables the console shows and queries: those of `marketstream sql`."""
    from pipelines.sql_command import sql_tables

    return sql_tables(settings)


_LAKES: dict[int, tuple] = {}
_LAKES_LOCK = threading.Lock()


def lake(settings: Settings):
    """The lake of `settings` (`pipelines.sql_command.lake_of`) and an s3fs client on it, made once and
    shared by every request: a client made per request (twice a second per open ticker page) leaves its
    sessions to be closed by the garbage collector, on whatever event loop it then runs in."""
    with _LAKES_LOCK:
        if id(settings) not in _LAKES:
            from pipelines.sql_command import lake_of

            made = lake_of(settings, tables_of(settings))
            _LAKES[id(settings)] = (settings, made)  # the settings kept: their id is not reused meanwhile
        return _LAKES[id(settings)][1]


def overview(settings: Settings, now: datetime | None = None, open_table=None) -> dict:
    """The data of `marketstream status --json`, plus `error` (the object store did not answer) and
    `kafka_unreachable` (some Kafka figures were not read); `open_table`: how the tables are loaded
    (`pipelines.status.dataset_status`)."""
    from dataclasses import replace

    from marketstream.calendar import exchange_date
    from pipelines import status

    now = now or datetime.now(timezone.utc)
    cluster = settings.kafka_cluster()
    quiet = replace(cluster, client_config={**cluster.client_config, "log_level": 0})
    try:
        found = status.lake_status(quiet, settings.delta_storage_options(), lake(settings).arrow_filesystem,
                                   settings.stock_synthetic_prefix, settings.bars_bucket, now=now,
                                   today=exchange_date(now), closed_after_days=settings.lake_compact_closed_after_days,
                                   patience_seconds=OVERVIEW_PATIENCE_SECONDS, last_try_seconds=LAST_TRY_SECONDS,
                                   open_table=open_table)
    except Exception as exc:  # noqa: BLE001 - whatever the object store's (or Kafka's) client raised: one line
        from confluent_kafka import KafkaException

        if isinstance(exc, KafkaException):
            what = f"cannot read Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
        else:
            what = f"cannot read the object store at {settings.s3_endpoint_url} (S3_ENDPOINT_URL)"
        return {"at": _iso(now), "datasets": [], "derived": [], "error": f"{what}: {status.one_line(exc)}",
                "kafka_unreachable": None}
    unread = found.unread
    return {"at": _iso(now), "datasets": [asdict(s) for s in found.datasets],
            "derived": [asdict(d) for d in found.derived], "error": None,
            "kafka_unreachable": (f"cannot read Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): "
                                  + "; ".join(unread)) if unread else None}


class Refresher:
    """The overview computed again and again in a thread of its own, `pause` seconds apart, from start-up
    and while someone looks: after `idle` seconds without a request (an open overview asks twice a second) it
    rests, so that the other pages do not share the machine with it, until the next request (whose answer is
    then the last one read, with the time it was read, until the next round is done). `latest()` is None
    until the first round is done."""

    def __init__(self, compute, pause: float = 0.2, idle: float = 5.0):
        self._compute, self._pause, self._idle = compute, pause, idle
        self._latest: dict | None = None
        self._asked = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-overview", daemon=True)
        self._ready = threading.Condition()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(OVERVIEW_PATIENCE_SECONDS * 3)

    def _run(self) -> None:
        while not self._stop.is_set():
            # short relative sleeps rather than timed waits on an event: those wait for a year under libfaketime
            # (`make test-clock-ahead`), whose clock the absolute deadline of a timed wait is taken from
            if time.monotonic() - self._asked > self._idle:
                time.sleep(0.05)
                continue
            started = time.monotonic()
            try:
                found = self._compute()
            except Exception as exc:  # noqa: BLE001 - the page shows it; the next round tries again
                found = {"at": _iso(datetime.now(timezone.utc)), "datasets": [], "derived": [],
                         "error": f"{type(exc).__name__}: {exc}"[:400], "kafka_unreachable": None}
            found["took_s"] = round(time.monotonic() - started, 3)
            with self._ready:
                self._latest = found
                self._ready.notify_all()
            time.sleep(self._pause)

    def latest(self, wait: float = 0.0) -> dict | None:
        self._asked = time.monotonic()
        with self._ready:
            if self._latest is None and wait:
                self._ready.wait_for(lambda: self._latest is not None, wait)
            return self._latest


def bars(settings: Settings, ticker: str, day: date, synthetic: bool) -> list[dict]:
    """`ticker`'s one-minute bars of `day`, oldest first: time (Unix seconds of the minute), open, high, low,
    close, volume, trades."""
    from pipelines.chart import bars_of, check_ticker

    check_ticker(ticker)
    rows = bars_of(lake(settings), "bars_synthetic" if synthetic else "bars", ticker, day)
    return [{"time": int(row["minute"].timestamp()), "open": row["open"], "high": row["high"], "low": row["low"],
             "close": row["close"], "volume": row["volume"]} for row in sorted(rows, key=lambda r: r["minute"])]


def news_and_sentiment(settings: Settings, ticker: str, day: date, synthetic: bool) -> dict:
    """What was said about `ticker` on `day` (`pipelines.chart.said_about`): its news articles, oldest first
    (time: Unix seconds of their minute, as the bars'; headline, source, url, sentiment), and, where the
    signals table has the minute, the mean sentiment of the news and of the posts of the 15 minutes ending with
    it (null: none scored)."""
    from pipelines.chart import check_ticker, said_about

    check_ticker(ticker)
    said = said_about(lake(settings), ticker, day, synthetic)
    minute = lambda moment: int(moment.timestamp()) // 60 * 60  # noqa: E731
    return {
        "news": [{"time": minute(row["datetime"]), "at": row["datetime"].isoformat(), "headline": row["headline"],
                  "source": row["source"], "url": row["url"], "sentiment": row.get("sentiment")} for row in said.news],
        "sentiment": [{"time": int(row["minute"].timestamp()), "news": row.get("news_sentiment_15m"),
                       "posts": row.get("posts_sentiment_15m")} for row in said.sentiment],
    }


def commit_facts(commit_text: str) -> dict:
    """What one commit's log entry says: when and what (its `commitInfo`'s timestamp and operation; a commit
    marked `MAINTENANCE_COMMIT` as `WRITE (rewrite)`), the files it added (their rows, from their statistics,
    and bytes) and removed (and bytes: None where a removal does not say), whether it is a maintenance run,
    what a vacuum deleted from the store (its operation metrics), and its transaction ids: a consumer's
    `marketstream:<dataset>:<topic>:<incarnation>:<partition>` as `<topic> [<partition>]` -> the last Kafka
    offset stored; any other (the bars' per-day write count) as it is."""
    facts = {"operation": None, "at": None, "maintenance": False, "files_added": 0, "rows_added": 0, "bytes_added": 0,
             "files_removed": 0, "bytes_removed": 0, "files_to_delete": None, "bytes_to_delete": None,
             "files_deleted": None, "transactions": {}}
    for action in log_actions(commit_text):
        if "commitInfo" in action:
            info = action["commitInfo"]
            operation, marked = info.get("operation"), info.get(MAINTENANCE_COMMIT)
            metrics = info.get("operationMetrics") or {}
            facts.update(operation=f"{operation} ({marked})" if marked else operation,
                         maintenance=bool(marked) or operation in MAINTENANCE_OPERATIONS,
                         at=_iso(datetime.fromtimestamp(info["timestamp"] / 1000, timezone.utc))
                         if info.get("timestamp") is not None else None,
                         files_to_delete=metrics.get("numFilesToDelete"), bytes_to_delete=metrics.get("sizeOfDataToDelete"),
                         files_deleted=metrics.get("numDeletedFiles"))
        elif "add" in action:
            facts["files_added"] += 1
            facts["bytes_added"] += action["add"]["size"]
            stats = action["add"].get("stats")
            facts["rows_added"] += json.loads(stats).get("numRecords", 0) if stats else 0
        elif "remove" in action:
            facts["files_removed"] += 1
            size = action["remove"].get("size")
            facts["bytes_removed"] = None if size is None or facts["bytes_removed"] is None else facts["bytes_removed"] + size
        elif "txn" in action:
            app_id, parts = action["txn"]["appId"], action["txn"]["appId"].split(":")
            shown = f"{parts[2]} [{parts[4]}]" if len(parts) == 5 and parts[0] == "marketstream" else app_id
            facts["transactions"][shown] = action["txn"]["version"]
    return facts


def tables(settings: Settings) -> list[dict]:
    """Each lake table: version, files, rows, its newest `HISTORY_COMMITS` commits with the Kafka offsets
    they settled, and its maintenance runs among its newest `LOG_LOOKBACK_COMMITS` commits. A table not made
    yet says so (`version` None). The tables are read at once, each in a thread of its own."""
    named = tables_of(settings)
    with ThreadPoolExecutor(max_workers=len(named), thread_name_prefix="console-tables") as pool:
        return list(pool.map(lambda item: _table(settings, *item), named.items()))


def _table(settings: Settings, name: str, uri: str) -> dict:
    from marketstream.lake import delta_table_at

    entry = {"name": name, "uri": uri, "version": None, "files": 0, "rows": 0, "history": [], "maintenance": [],
             "commits_read": 0}
    table = delta_table_at(uri, settings.delta_storage_options())
    if table is None:
        return entry
    files = pa.table(table.get_add_actions(flatten=True))
    entry.update(version=table.version(), files=files.num_rows,
                 rows=int(sum(n or 0 for n in files.column("num_records").to_pylist())))
    found = _log_entries(lake(settings).arrow_filesystem, uri, table.metadata().id, table.version())
    newest = [{"version": version, **found[version]} for version in sorted(found, reverse=True) if found[version]]
    entry.update(history=newest[:HISTORY_COMMITS], maintenance=[commit for commit in newest if commit["maintenance"]],
                 commits_read=len(newest))
    return entry


_ENTRIES: dict[str, dict[int, dict | None]] = {}
_ENTRIES_LOCK = threading.Lock()
_ENTRY_READERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="console-log")
"""Log entries are read by pyarrow's S3 client, which waits without the GIL: s3fs, whose every request is
signed and parsed in Python on one event loop, took 3 times as long for the Tables page's few hundred."""


def _log_entries(arrow_filesystem, uri: str, table_id: str, version: int) -> dict[int, dict | None]:
    """`commit_facts` of the table's log entries of its newest `LOG_LOOKBACK_COMMITS` versions through
    `version` (None: removed by log retention). Each entry is read once while the console runs: a committed
    entry never changes, and a table made again at the same address has another id."""
    log = uri.removeprefix("s3://").rstrip("/") + "/_delta_log"
    wanted = range(max(0, version - LOG_LOOKBACK_COMMITS + 1), version + 1)
    with _ENTRIES_LOCK:
        known = _ENTRIES.setdefault(table_id, {})
        found = {number: known[number] for number in wanted if number in known}

    def read(number: int) -> tuple[int, dict | None]:
        try:
            with arrow_filesystem.open_input_stream(f"{log}/{number:020d}.json") as stream:
                return number, commit_facts(stream.read().decode())
        except FileNotFoundError:
            return number, None

    found.update(_ENTRY_READERS.map(read, [number for number in wanted if number not in found]))
    with _ENTRIES_LOCK:
        _ENTRIES[table_id] = found
    return found


def _text(raw: bytes | None, limit: int = EXCERPT_BYTES) -> str | None:
    return None if raw is None else raw[:limit].decode("utf-8", errors="replace")


def dead_letters(settings: Settings, limit: int = 100) -> dict:
    """The newest `limit` dead letters of every dataset, newest first: dataset, reason, origin (topic,
    partition, offset), the original's excerpt and, for an original too large, where it is stored."""
    from confluent_kafka import Consumer, TopicPartition

    from marketstream.kafka_cluster import read_partition

    cluster = settings.kafka_cluster()
    config = {**cluster.client_config, "log_level": 0}
    consumer = Consumer({**config, "group.id": "marketstream-console", "enable.auto.commit": False,
                         "enable.partition.eof": True, "fetch.wait.max.ms": 10})  # see pipelines.status
    deadline = time.monotonic() + OVERVIEW_PATIENCE_SECONDS * 2
    letters, unread = [], []
    try:
        for dataset in DATASETS.values():
            topic = dataset.dead_letter_topic
            try:
                metadata = consumer.list_topics(topic, timeout=max(deadline - time.monotonic(), 0.5)).topics.get(topic)
            except Exception as exc:  # noqa: BLE001 - Kafka did not answer
                unread.append(f"{topic}: {exc}")
                continue
            if metadata is None or metadata.error is not None:
                continue
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                           timeout=max(deadline - time.monotonic(), 0.5))
                if high <= low:
                    continue
                for message in read_partition(consumer, topic, partition, max(low, high - DEAD_LETTERS_PER_PARTITION),
                                              high, give_up_at=deadline, poll_seconds=0.2):
                    headers = {key: value for key, value in (message.headers() or [])}
                    header = lambda name: _text(headers.get(name), 1000)  # noqa: E731
                    letters.append({
                        "dataset": header("dlq.dataset") or dataset.name,
                        "at": _iso(datetime.fromtimestamp(message.timestamp()[1] / 1000, timezone.utc)),
                        "at_ms": message.timestamp()[1],
                        "reason": header("dlq.reason"), "topic": header("dlq.topic"),
                        "partition": int(headers["dlq.partition"]) if "dlq.partition" in headers else None,
                        "offset": int(headers["dlq.offset"]) if "dlq.offset" in headers else None,
                        "key": _text(message.key(), 200), "excerpt": _text(message.value()),
                        "size": len(message.value() or b""),
                        "original_uri": header("dlq.original.uri"), "original_size": header("dlq.original.size"),
                        "dead_letter": f"{topic}[{partition}]@{message.offset()}"})
    except Exception as exc:  # noqa: BLE001 - a broker gone mid-read: what was read is shown, and why not more
        unread.append(str(exc)[:400])
    finally:
        consumer.close()
    letters.sort(key=lambda letter: letter["at_ms"], reverse=True)
    return {"letters": letters[:limit], "total_read": len(letters),
            "error": (f"cannot read Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): "
                      + "; ".join(unread)) if unread else None}


class NotAnOriginal(Exception):
    """The address given is not where a dead letter's original is stored."""


def dead_letter_original(settings: Settings, uri: str) -> bytes:
    """The original of a dead letter too large for the broker, as `dlq.original.uri` names it: only under
    `s3://<a dataset's bucket>/_dead_letters/`, so this reads nothing else of the store."""
    import re

    buckets = {dataset.bucket for dataset in DATASETS.values()}
    found = re.fullmatch(r"s3://([a-z0-9.-]+)/_dead_letters/([A-Za-z0-9._-]+/){3}[0-9]+(\.key)?", uri)
    if found is None or found.group(1) not in buckets or "/../" in uri or "/./" in uri:
        raise NotAnOriginal(f"{uri[:200]!r} is not the address of a dead letter's original")
    try:
        return lake(settings).filesystem.cat_file(uri.removeprefix("s3://"))
    except FileNotFoundError:
        raise NotAnOriginal(f"{uri[:200]} holds nothing (removed?)") from None


class SqlRefused(Exception):
    """The query failed, ran out of time or memory, or the store did not answer: one line."""


@dataclass
class SqlAnswer:
    columns: list[str]
    rows: list[list]
    cut: bool
    seconds: float
    table: pa.Table


class _Collected:
    def __init__(self):
        self.schema, self.batches = None, []

    def begin(self, schema: pa.Schema) -> None:
        self.schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def sql(settings: Settings, query: str, *, rows: int = SQL_ROWS, timeout: float | None = None,
        memory_limit: str = SQL_MEMORY_LIMIT) -> SqlAnswer:
    """`query` over the lake's tables as `marketstream sql` answers it, locked down: no file, network or
    extension access, at most `rows` rows and `memory_limit`, interrupted after `timeout` seconds (default
    `SQL_TIMEOUT_SECONDS`)."""
    timeout = SQL_TIMEOUT_SECONDS if timeout is None else timeout
    from pipelines.query import BadRequest, QueryFailed, StoreUnreachable, connect, run, spill_directory, tables_named
    from pipelines.time_travel import TimeTravel, open_tables

    if len(query) > 20_000:
        raise SqlRefused("the query is longer than 20 000 characters")
    started = time.monotonic()
    tables = lake(settings)
    try:
        tables.check_reachable()
        opened = open_tables(tables, tables_named(query, tables.tables), TimeTravel())
        collected = _Collected()
        with spill_directory() as spill:
            connection = connect(opened.datasets, allow_files=False, memory_limit=memory_limit, spill_directory=spill)
            timer = threading.Timer(timeout, connection.interrupt)
            timer.start()
            try:
                outcome = run(connection, query, collected, rows)
            finally:
                timer.cancel()
                connection.close()
    except (BadRequest, QueryFailed, StoreUnreachable) as exc:
        seconds = time.monotonic() - started
        text = str(exc)
        if seconds >= timeout and "INTERRUPT" in text.upper():
            text = f"stopped after {timeout:g} s (the console's time limit): {text}"
        raise SqlRefused(text) from None
    table = (pa.Table.from_batches(collected.batches, schema=collected.schema) if collected.schema is not None
             else pa.table({}))
    columns = [column.to_pylist() for column in table.columns]  # by position: a name may repeat
    rows = [[_json_value(value) for value in row] for row in zip(*columns)]
    return SqlAnswer(table.column_names, rows, outcome.cut, round(time.monotonic() - started, 3), table)
