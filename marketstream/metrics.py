"""The Prometheus metrics of every dataflow, in one place: the sources and sinks count into them, each
process serves them on `METRICS_PORT` (`pipelines.runtime`), and the Grafana dashboard
(`monitoring/grafana/dashboards/marketstream.json`) is built on these names (a test checks that every name it queries is here).

Labels stay few: a topic, a table, a dataset, a source step, and for dead letters and skipped rows a
*kind* of reason (`reason_kind`), never a raw message or value, so the series count stays bounded.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

DATAFLOW = Info("marketstream_dataflow", "the dataflow this process runs (its flow id)")

# --- consumers
MESSAGES_READ = Counter("marketstream_messages_read", "Kafka messages a consumer read", ["topic"])
CONSUMER_LAG = Gauge("marketstream_consumer_lag_messages",
                     "messages after the last one read, per partition (from the last fetch's high watermark)",
                     ["topic", "partition"])
DEAD_LETTERS = Counter("marketstream_dead_letters", "messages published to a dead-letter topic",
                       ["dataset", "reason"])
SKIPPED_ROWS = Counter("marketstream_skipped_rows", "valid rows a dataset does not store", ["dataset", "reason"])
BATCH_ROWS = Histogram("marketstream_batch_rows", "rows of a flushed window batch (one Kafka partition)",
                       ["dataset"], buckets=(10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000))
BUFFERED_ROWS = Gauge("marketstream_buffered_rows", "rows a consumer process holds in its open window batches, "
                      "not yet flushed (at most BATCH_MAX_BUFFERED_ROWS)", ["dataset"])
BATCH_AGE = Histogram("marketstream_batch_age_seconds", "age of a window batch's first row when it was flushed",
                      ["dataset"], buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120))
ROWS_COMMITTED = Counter("marketstream_rows_committed", "rows committed to a lake table", ["table"])
FILES_COMMITTED = Counter("marketstream_files_committed", "data files committed to a lake table", ["table"])
DELTA_COMMITS = Counter("marketstream_delta_commits", "Delta commits made to a lake table (one can hold the "
                        "writes of several sink partitions: group commit)", ["table"])
COMMIT_SECONDS = Histogram("marketstream_commit_seconds", "time to commit to a Delta table, retries included",
                           ["table"], buckets=_LATENCY_BUCKETS)
UPLOAD_SECONDS = Histogram("marketstream_upload_seconds", "time to upload one flush's files, retries included",
                           buckets=_LATENCY_BUCKETS)
RETRIES = Counter("marketstream_retries", "operations tried again after a failure",
                  ["operation"])  # object_store, delta, dead_letter
BARS_LATE_TRADES = Counter("marketstream_bars_late_trades",
                           "trades older than their ticker's watermark, folded into their bar by a correction",
                           ["table"])

# --- producers
MESSAGES_PUBLISHED = Counter("marketstream_messages_published", "messages Kafka acknowledged", ["topic"])
DELIVERY_FAILURES = Counter("marketstream_delivery_failures", "messages Kafka refused after the producer's retries",
                            ["topic"])
API_CALLS = Counter("marketstream_api_calls", "polls of an upstream API, by outcome (ok, retried, refused)",
                    ["source", "outcome"])
RATE_LIMIT_WAITS = Counter("marketstream_rate_limit_waits", "waits an upstream asked for (429 Retry-After)",
                           ["source"])
RATE_LIMIT_WAIT_SECONDS = Counter("marketstream_rate_limit_wait_seconds", "seconds spent in those waits",
                                  ["source"])

ALL = (DATAFLOW, MESSAGES_READ, CONSUMER_LAG, DEAD_LETTERS, SKIPPED_ROWS, BATCH_ROWS, BUFFERED_ROWS, BATCH_AGE, ROWS_COMMITTED,
       FILES_COMMITTED, DELTA_COMMITS, COMMIT_SECONDS, UPLOAD_SECONDS, RETRIES, BARS_LATE_TRADES, MESSAGES_PUBLISHED, DELIVERY_FAILURES, API_CALLS,
       RATE_LIMIT_WAITS, RATE_LIMIT_WAIT_SECONDS)

_FIELD = re.compile(r"field '([A-Za-z_][A-Za-z0-9_.]{0,40})'")
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|\d[\d,.]*")


def reason_kind(reason: str) -> str:
    """A bounded label for a dead-letter or skip reason: `field price` for any complaint about field
    'price', otherwise the reason's text before its first colon without quoted values and numbers."""
    found = _FIELD.match(reason)
    if found:
        return f"field {found.group(1)}"
    head = _VALUES.sub("", reason.split(":", 1)[0])
    return " ".join(head.split()).strip("'\"")[:48] or "other"
