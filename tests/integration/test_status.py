"""`marketstream status` against the real stack: lag in messages and seconds, tables, dead letters, alerts."""

import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timezone

import pyarrow.compute as pc
from deltalake import DeltaTable

from marketstream.datasets import STOCK
from pipelines.status import Thresholds, alerts, dataset_status, dataset_tables
from tests.conftest import STACK_ENV
from tests.integration.kafka_helpers import produce
from tests.integration.test_fault_tolerance import REPO, consumer, log_of, stored, trade

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
PUBLISHED = int(datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc).timestamp() * 1000)


def status_of(settings, topic, bucket, now=NOW):
    dataset = replace(STOCK, topic=topic, bucket=bucket)
    return dataset_status(dataset, dataset_tables(dataset, settings.stock_synthetic_prefix), settings.kafka_cluster(),
                          settings.delta_storage_options(), now=now, today=date(2026, 11, 25), closed_after_days=1)


def test_status_follows_a_consumer_through_lag_storage_and_dead_letters(lake):
    settings, topic, bucket = lake
    good = [trade(i) for i in range(300)]
    bad = [(b"T00", b"not json"), (b"T00", b'{"symbol": "T00"}'), (b"T00", b"not json either")]
    # one partition, a message a second: the lag in seconds is the span of the waiting messages
    produce(settings, topic, good + bad, timestamps_ms=[PUBLISHED + 1000 * i for i in range(303)], partition=0)

    before = status_of(settings, topic, bucket)
    assert before.topic_exists and before.messages == 303
    assert before.lag_messages == 303 and before.lag_by_partition == {0: 303} and before.lag_seconds == 302
    assert before.last_message == "2026-11-24T15:05:02Z" and before.last_message_age_s == 75_298
    assert [t.version for t in before.tables] == [None, None] and before.dead_letters == 0
    assert alerts([before], Thresholds(max_lag_messages=100, max_lag_seconds=60, max_commit_age_seconds=3600)) == [
        "stock: lag 303 messages > 100 (--max-lag-messages)",
        "stock: lag 302 s > 60 s (--max-lag-seconds)",
        "stock: no commit yet > 3600 s (--max-commit-age)"]

    process = consumer(topic, bucket, batch_max_rows=2)
    assert process.wait(120) == 0, log_of(process)[-2000:]
    assert pc.count_distinct(stored(settings, bucket)).as_py() == 300

    after = status_of(settings, topic, bucket)
    assert after.lag_messages == 0 and after.lag_seconds == 0, "dead-lettered messages are settled too"
    real = after.tables[0]
    assert real.name == "stock" and real.rows == 300 and real.files >= 3 and real.version >= 1
    # trades of 23, 24 and 25 Nov: on the 25th the first two days are closed; five trades per ticker and day, a file per two at most
    folders = Counter(uri.rsplit("/", 1)[0] for uri in DeltaTable(f"s3://{bucket}", storage_options=settings
                                                                   .delta_storage_options()).file_uris())
    awaiting = sum(n for folder, n in folders.items() if n > 1 and "date=2026-11-25" not in folder)
    assert awaiting > 0 and real.files_awaiting_compaction == awaiting
    assert after.dead_letters == 3
    assert sum(count for _, count in after.top_reasons) == 3
    assert alerts([after], Thresholds(max_lag_messages=0, max_dead_letters=3)) == []
    assert alerts([after], Thresholds(max_dead_letters=2)) == ["stock: 3 dead letters > 2 (--max-dead-letters)"]

    produce(settings, topic, [trade(i) for i in range(300, 310)],
            timestamps_ms=[PUBLISHED + 1000 * (400 + i) for i in range(10)], partition=0)
    later = status_of(settings, topic, bucket)
    assert later.lag_messages == 10 and later.lag_seconds == 9


def test_status_says_in_one_line_that_kafka_cannot_be_reached(tmp_path):
    env = {**STACK_ENV, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "status", "--dataset", "macro"], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("marketstream status: cannot read Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS): ")


def test_status_says_in_one_line_that_the_object_store_cannot_be_reached(tmp_path):
    env = {**STACK_ENV, "S3_ENDPOINT_URL": "http://127.0.0.1:1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "status", "--dataset", "macro"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("marketstream status: cannot read the object store at http://127.0.0.1:1 (S3_ENDPOINT_URL): ")


def test_status_json_is_one_document_a_script_can_read(stack, tmp_path):
    import json

    env = {**STACK_ENV, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "status", "--json", "--dataset", "macro",
                           "--dataset", "news"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [d["dataset"] for d in document["datasets"]] == ["macro", "news"] and document["alerts"] == []
    assert {"lag_messages", "lag_seconds", "tables", "dead_letters", "top_reasons"} <= set(document["datasets"][0])
