"""How `marketstream status` reads to a person and to a monitor (no server: the figures are given)."""

import math

import pytest
from hypothesis import given, strategies as st

from pipelines.status import DatasetStatus, DerivedStatus, TableStatus, Thresholds, alerts, render


def test_a_dataset_reads_as_topic_tables_and_dead_letters():
    stock = DatasetStatus("stock", "stock_trades", topic_exists=True, messages=12_345, last_message="2026-11-24T15:00:00Z",
                          last_message_age_s=7_200, lag_messages=40, lag_seconds=3.5,
                          tables=[TableStatus("stock", "s3://stock-data", version=12, files=310, rows=12_000,
                                              files_awaiting_compaction=30, last_commit_age_s=42),
                                  TableStatus("stock_synthetic", "s3://stock-data/_synthetic")],
                          dead_letters=3, top_reasons=[("price: must be positive", 2), ("not JSON", 1)])
    macro = DatasetStatus("macro", "macrodata")
    assert render([stock, macro]).splitlines() == [
        "stock",
        "  topic stock_trades: 12,345 messages, last 2.0 h ago; lag 40 messages, 3.5 s",
        "  table stock (s3://stock-data): version 12, 310 files, 12,000 rows, 30 awaiting compaction, last commit 42 s ago",
        "  table stock_synthetic (s3://stock-data/_synthetic): none yet",
        "  dead letters: 3 (latest: 2 × price: must be positive; 1 × not JSON)",
        "macro",
        "  topic macrodata: does not exist yet",
        "  dead letters: 0",
    ]


def test_commit_age_alerts_only_for_a_dataset_with_messages_and_uses_its_newest_table():
    idle = DatasetStatus("macro", "macrodata", topic_exists=True)
    busy = DatasetStatus("stock", "stock_trades", topic_exists=True, messages=10,
                         tables=[TableStatus("stock", "s3://stock-data", version=3, last_commit_age_s=4_000),
                                 TableStatus("stock_synthetic", "s3://x", version=9, last_commit_age_s=30)])
    assert alerts([idle, busy], Thresholds(max_commit_age_seconds=60)) == []
    busy.tables[1].last_commit_age_s = 90
    assert alerts([idle, busy], Thresholds(max_commit_age_seconds=60)) == [
        "stock: last commit 90 s ago > 60 s (--max-commit-age)"]


def test_a_figure_kafka_did_not_give_reads_as_unknown_never_as_zero():
    read_before = DatasetStatus("stock", "stock_trades", topic_exists=True, messages=303, lag_messages=303,
                                lag_seconds=None, dead_letters=2, unread="the messages 0..0 of stock_trades [0]: no answer")
    nothing = DatasetStatus("macro", "macrodata", topic_exists=None, messages=None, lag_messages=None, lag_seconds=None,
                            dead_letters=None, unread="the metadata of macrodata: timed out")
    assert render([read_before, nothing]).splitlines() == [
        "stock",
        "  topic stock_trades: 303 messages, last unknown; lag 303 messages, seconds unknown",
        "  dead letters: 2",
        "  not read from Kafka: the messages 0..0 of stock_trades [0]: no answer",
        "macro",
        "  topic macrodata: unknown",
        "  dead letters: unknown",
        "  not read from Kafka: the metadata of macrodata: timed out",
    ]
    assert alerts([read_before, nothing], Thresholds(max_lag_seconds=0, max_dead_letters=5, max_lag_messages=500)) == [], \
        "an unknown figure passes no threshold (status exits 3 for it)"


def test_the_bars_tables_are_shown_with_what_they_are_computed_from():
    bars = DerivedStatus("bars", "stock", [TableStatus("bars", "s3://bars-data", version=4, files=12, rows=3_000,
                                                       files_awaiting_compaction=2, last_commit_age_s=75),
                                           TableStatus("bars_synthetic", "s3://bars-data/_synthetic")])
    assert render([], [bars]).splitlines() == [
        "bars (computed from stock's topic by its own dataflow)",
        "  table bars (s3://bars-data): version 4, 12 files, 3,000 rows, 2 awaiting compaction, last commit 1.2 min ago",
        "  table bars_synthetic (s3://bars-data/_synthetic): none yet",
        "  behind its source's topic: no trade held yet",
    ]


thresholds = st.builds(Thresholds, st.none() | st.integers(-10**6, 10**6),
                       st.none() | st.floats(allow_nan=True, allow_infinity=True),
                       st.none() | st.floats(allow_nan=True, allow_infinity=True), st.none() | st.integers(-10**6, 10**6))


@given(thresholds)
def test_a_threshold_is_refused_exactly_when_one_is_negative_or_not_a_number_naming_its_option(limits):
    values = {"--max-lag-messages": limits.max_lag_messages, "--max-lag-seconds": limits.max_lag_seconds,
              "--max-commit-age": limits.max_commit_age_seconds, "--max-dead-letters": limits.max_dead_letters}
    bad = [option for option, value in values.items() if value is not None and not (math.isfinite(value) and value >= 0)]
    problem = limits.problem()
    assert (problem is None) == (not bad)
    if bad:
        assert problem.startswith(f"{bad[0]} must be a number of 0 or more")


@pytest.mark.parametrize("option", ["--max-lag-messages", "--max-dead-letters"])
def test_the_command_refuses_a_negative_threshold_in_one_line(option, capsys):
    from pipelines.cli import main

    assert main(["status", option, "-1"]) == 2
    assert capsys.readouterr().err == f"marketstream status: {option} must be a number of 0 or more, not -1\n"


def test_files_without_full_statistics_are_counted_and_said(tmp_path):
    import json
    import os
    from datetime import date, datetime, timezone

    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction

    from pipelines.status import _table, _table_lines

    schema = pa.schema([("ticker", pa.string()), ("source", pa.string()), ("kafka_offset", pa.int64())])
    DeltaTable.create(str(tmp_path), schema, partition_by=["ticker"])
    (tmp_path / "ticker=A").mkdir()
    pq.write_table(pa.table({"source": ["alpaca"], "kafka_offset": [5]}), tmp_path / "ticker=A" / "f.parquet")
    stats = json.dumps({"numRecords": 1, "minValues": {"kafka_offset": 5}, "maxValues": {"kafka_offset": 5}})
    add = AddAction("ticker=A/f.parquet", os.path.getsize(tmp_path / "ticker=A" / "f.parquet"), {"ticker": "A"}, 1, True, stats)
    DeltaTable(str(tmp_path)).create_write_transaction([add], mode="append", schema=schema, partition_by=["ticker"])
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    _, status, _ = _table("stock", str(tmp_path), {}, pafs.LocalFileSystem(), date(2026, 11, 25), 1, now)
    assert (status.files, status.rows, status.files_without_stats) == (1, 1, 1)
    committed_ms = DeltaTable(str(tmp_path)).history(1)[0]["timestamp"]  # the commit's own time, as delta-rs reads it
    committed = datetime.fromtimestamp(committed_ms // 1000, timezone.utc)
    assert status.last_commit == committed.isoformat().replace("+00:00", "Z")
    assert status.last_commit_age_s == pytest.approx(now.timestamp() - committed_ms / 1000, abs=0.001)
    loaded = DeltaTable(str(tmp_path))
    (tmp_path / "_delta_log" / "00000000000000000001.json").unlink()  # as if the table were made anew since
    assert _table("stock", str(tmp_path), {}, pafs.LocalFileSystem(), date(2026, 11, 25), 1, now,
                  open_table=lambda uri, options: loaded)[1].last_commit is None
    assert "1 files without full statistics (run marketstream maintain)" in _table_lines([status])[0]


def test_the_bars_read_as_their_tables_and_how_far_behind_their_sources_topic_they_are():
    tables = [TableStatus("bars", "s3://bars-data"), TableStatus("bars_synthetic", "s3://bars-data/_synthetic", version=4,
                                                                 files=3, rows=90, last_commit_age_s=5)]
    lines = lambda **figures: render([], [DerivedStatus("bars", "stock", tables, **figures)]).splitlines()  # noqa: E731
    assert lines(newest_held="2026-11-24T15:02:05Z", behind_seconds=75.5) == [
        "bars (computed from stock's topic by its own dataflow)",
        "  table bars (s3://bars-data): none yet",
        "  table bars_synthetic (s3://bars-data/_synthetic): version 4, 3 files, 90 rows, 0 awaiting compaction, last commit 5 s ago",
        "  behind its source's topic: 75.5 s (newest trade held 2026-11-24T15:02:05Z)",
    ]
    assert lines(newest_held="2026-11-24T15:02:05Z")[-1] == \
        "  behind its source's topic: unknown (newest trade held 2026-11-24T15:02:05Z)"
    assert lines()[-1] == "  behind its source's topic: no trade held yet"
