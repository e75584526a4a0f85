"""`marketstream status` against the real stack: lag in messages and seconds, tables, dead letters, alerts."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timezone

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from marketstream.datasets import MACRO, STOCK
from marketstream.lake import arrow_filesystem, lake_filesystem
from pipelines import cli
from pipelines import status as status_module
from pipelines.status import Thresholds, alerts, dataset_status, dataset_tables
from tests.conftest import STACK_ENV, make_settings
from tests.integration.kafka_helpers import produce
from tests.integration.private_servers import PrivateKafka
from tests.integration.test_fault_tolerance import REPO, consumer, log_of, stored, trade

# The broker deletes messages published more than its retention (7 days) before *its* clock, at a check every
# 5 minutes: publication times are therefore a day before the real now, and the status's clock follows them.
PUBLISHED = (int(time.time()) - 86_400) * 1000
NOW = datetime.fromtimestamp(PUBLISHED / 1000 + 75_600, timezone.utc)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def status_of(settings, topic, bucket, now=NOW):
    dataset = replace(STOCK, topic=topic, bucket=bucket)
    return dataset_status(dataset, dataset_tables(dataset, settings.stock_synthetic_prefix), settings.kafka_cluster(),
                          settings.delta_storage_options(), arrow_filesystem(settings), now=now, today=date(2026, 11, 25), closed_after_days=1)


def test_status_follows_a_consumer_through_lag_storage_and_dead_letters(lake):
    settings, topic, bucket = lake
    good = [trade(i) for i in range(300)]
    bad = [(b"T00", b"not json"), (b"T00", b'{"symbol": "T00"}'), (b"T00", b"not json either")]
    # one partition, a message a second: the lag in seconds is the span of the waiting messages
    produce(settings, topic, good + bad, timestamps_ms=[PUBLISHED + 1000 * i for i in range(303)], partition=0)

    before = status_of(settings, topic, bucket)
    assert before.topic_exists and before.messages == 303
    assert before.lag_messages == 303 and before.lag_by_partition == {0: 303} and before.lag_seconds == 302
    assert before.last_message == iso(PUBLISHED + 302_000) and before.last_message_age_s == 75_298
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

    # a message delivered last with an older timestamp (another producer's, held back by a broker outage: seen
    # in make chaos as a lag of -15 s): the newest time is the newest read, so the span is never negative
    produce(settings, topic, [trade(310)], timestamps_ms=[PUBLISHED + 1000 * 390], partition=0)
    delayed = status_of(settings, topic, bucket)
    assert delayed.lag_messages == 11 and delayed.lag_seconds == 0
    assert delayed.last_message == iso(PUBLISHED + 1000 * 400)


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


@pytest.fixture(scope="module")
def private_kafka(stack, tmp_path_factory):
    with PrivateKafka(tmp_path_factory.mktemp("kafka")) as kafka:
        yield kafka


@pytest.fixture
def pause_at_first_read(private_kafka, monkeypatch):
    """`pause(seconds)`: the private broker is stopped (SIGSTOP) when status first reads a message, after it
    read the topic's metadata and offsets, and resumed `seconds` later (at the latest when the test ends)."""
    original, timers = status_module._TopicReader.read, []

    def pause(seconds: float) -> None:
        def read(self, *args):
            if not timers:
                os.kill(private_kafka.process.pid, signal.SIGSTOP)
                timers.append(threading.Timer(seconds, os.kill, (private_kafka.process.pid, signal.SIGCONT)))
                timers[0].start()
            return original(self, *args)

        monkeypatch.setattr(status_module._TopicReader, "read", read)

    yield pause
    for timer in timers:
        timer.cancel()
    os.kill(private_kafka.process.pid, signal.SIGCONT)


def test_a_broker_paused_while_status_reads_is_waited_for_and_every_figure_is_read(private_kafka, pause_at_first_read,
                                                                                unique):
    settings = make_settings(kafka_bootstrap_servers=private_kafka.bootstrap)
    topic = f"paused_{unique}"
    produce(settings, topic, [trade(i) for i in range(300)], timestamps_ms=[PUBLISHED + 1000 * i for i in range(300)],
            partition=0)
    pause_at_first_read(15)  # longer than any single librdkafka timeout of status, shorter than its patience
    paused = status_of(settings, topic, f"paused-{unique}")
    assert (paused.messages, paused.lag_messages, paused.lag_seconds) == (300, 300, 299)
    assert paused.last_message == iso(PUBLISHED + 299_000)
    assert paused.unread is None


def test_what_a_paused_broker_does_not_give_is_unknown_never_zero_and_status_exits_3(private_kafka, pause_at_first_read,
                                                                                  capsys):
    settings = make_settings(kafka_bootstrap_servers=private_kafka.bootstrap)
    produce(settings, MACRO.topic, [(b"cpi", b"{}")] * 300, timestamps_ms=[PUBLISHED + 1000 * i for i in range(300)],
            partition=0)
    pause_at_first_read(45)  # longer than status's patience, 30 s
    out = io.StringIO()
    assert cli.status(settings, True, Thresholds(max_lag_seconds=3600), ["macro"], now=NOW, out=out) == 3
    macro = json.loads(out.getvalue())["datasets"][0]
    assert (macro["messages"], macro["lag_messages"]) == (300, 300), "what was read before the pause is shown"
    assert macro["lag_seconds"] is None and macro["last_message"] is None, "not read: unknown, not 0"
    assert macro["unread"].startswith("the messages ")
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"marketstream status: cannot read Kafka at {private_kafka.bootstrap} "
                                "(KAFKA_BOOTSTRAP_SERVERS): macro: the messages ")


def test_status_shows_the_bars_tables(stack, unique, tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake

    settings = make_settings()
    bucket = f"it-bars-{unique}"
    lake_filesystem(settings).mkdir(bucket)
    try:
        for minute in (0, 1):  # two commits, two files in one partition of a closed day
            rows = pa.table({"ticker": ["AAPL"] * 3, "date": pa.array([date(2026, 11, 24)] * 3),
                             "minute": pa.array([datetime(2026, 11, 24, 15, minute, tzinfo=timezone.utc)] * 3),
                             "volume": [1.0, 2.0, 3.0]})
            write_deltalake(f"s3://{bucket}", rows, partition_by=["ticker", "date"], mode="append",
                            storage_options=settings.delta_storage_options())
        env = {**STACK_ENV, "BARS_BUCKET": bucket, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", "status", "--json", "--dataset", "bars"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["datasets"] == []
        [bars] = document["derived"]
        assert (bars["name"], bars["derived_from"]) == ("bars", "stock")
        real, synthetic = bars["tables"]
        assert (real["name"], real["uri"], real["version"], real["files"], real["rows"]) == (
            "bars", f"s3://{bucket}", 1, 2, 6)
        assert real["files_awaiting_compaction"] == 2 and real["last_commit_age_s"] >= 0
        committed = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).history(1)[0]
        assert real["last_commit"] == datetime.fromtimestamp(committed["timestamp"] / 1000, timezone.utc).isoformat(
            timespec="seconds").replace("+00:00", "Z")
        assert (synthetic["name"], synthetic["uri"], synthetic["version"]) == (
            "bars_synthetic", f"s3://{bucket}/_synthetic", None)
    finally:
        lake_filesystem(settings).rm(bucket, recursive=True)


def test_the_bars_behind_their_topic_are_the_newest_trade_they_hold_against_the_topics_newest_message(stack, unique):
    """Read from the files' statistics of both tables (the newest `close_ts` of either), against the source's
    newest message: 0 when the topic holds none, unknown when that message's time is, or nothing is held."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from pipelines.status import DatasetStatus, DerivedStatus, derived_behind

    settings = make_settings()
    bucket = f"it-bars-behind-{unique}"
    lake_filesystem(settings).mkdir(bucket)
    options = settings.delta_storage_options()
    try:
        for uri, closes in ((f"s3://{bucket}", [datetime(2026, 11, 24, 15, 0, 40, tzinfo=timezone.utc),
                                                 datetime(2026, 11, 24, 15, 1, 10, tzinfo=timezone.utc)]),
                            (f"s3://{bucket}/_synthetic", [datetime(2026, 11, 24, 15, 2, 5, tzinfo=timezone.utc)])):
            rows = pa.table({"ticker": ["AAPL"] * len(closes), "date": pa.array([date(2026, 11, 24)] * len(closes)),
                             "close_ts": pa.array(closes, pa.timestamp("us", tz="UTC"))})
            write_deltalake(uri, rows, partition_by=["ticker", "date"], storage_options=options)
        tables = [pa.table(DeltaTable(uri, storage_options=options).get_add_actions(flatten=True))
                  for uri in (f"s3://{bucket}", f"s3://{bucket}/_synthetic")]
        now = datetime(2026, 11, 24, 15, 5, 0, tzinfo=timezone.utc)

        def behind(source: DatasetStatus, held=tables) -> DerivedStatus:
            found = DerivedStatus("bars", "stock")
            derived_behind(found, held, source, now)
            return found

        newest_message_20_s_ago = DatasetStatus("stock", "stock_trades", topic_exists=True, messages=9, last_message_age_s=20)
        found = behind(newest_message_20_s_ago)  # the message at 15:04:40, the newest trade held at 15:02:05
        assert (found.newest_held, found.behind_seconds) == ("2026-11-24T15:02:05Z", 155.0)
        assert behind(DatasetStatus("stock", "stock_trades", topic_exists=True, messages=0)).behind_seconds == 0.0
        unknown = DatasetStatus("stock", "stock_trades", topic_exists=None, messages=None, last_message_age_s=None)
        assert behind(unknown).behind_seconds is None and behind(unknown).newest_held == "2026-11-24T15:02:05Z"
        assert (behind(newest_message_20_s_ago, held=[]).newest_held, behind(newest_message_20_s_ago, held=[]).behind_seconds) == (None, None)
        ahead = DatasetStatus("stock", "stock_trades", topic_exists=True, messages=9, last_message_age_s=200)
        assert behind(ahead).behind_seconds == 0.0  # a trade time after its message's (clocks apart) is not ahead
    finally:
        lake_filesystem(settings).rm(bucket, recursive=True)
