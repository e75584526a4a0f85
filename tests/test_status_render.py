"""How `marketstream status` reads to a person and to a monitor (no server: the figures are given)."""

from pipelines.status import DatasetStatus, TableStatus, Thresholds, alerts, render


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
