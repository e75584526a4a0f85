"""Compaction and vacuum on a Delta table in a local folder (no server), where a file's age can be set:
the vacuum deletes what no reader can need and keeps what one still may."""

import os
import time
from datetime import date

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from sinks.delta_commits import CHECKPOINT_INTERVAL
from sinks.delta_maintenance import TOMBSTONE_RETENTION, maintain_table, tombstone_retention

TODAY = date(2026, 11, 25)
TWO_DAYS = 2 * 86_400


def age(path, seconds: float) -> None:
    """Make `path` `seconds` old by the clock the code reads (the file system's own may differ from it)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def small_files_table(path) -> None:
    """Ten one-row appends to a closed day, written two days ago, beside a folder that is not the table's."""
    for price in range(10):
        write_deltalake(str(path), pa.table({"date": [date(2026, 11, 23)], "price": [float(price)]}),
                        mode="append", partition_by=["date"])
    for data_file in (path / "date=2026-11-23").iterdir():
        age(data_file, TWO_DAYS)
    (path / "_synthetic").mkdir()
    (path / "_synthetic" / "other-table.parquet").write_bytes(b"not this table's")
    age(path / "_synthetic" / "other-table.parquet", TWO_DAYS)


def test_vacuum_deletes_old_uploads_no_version_refers_to_and_keeps_files_just_replaced(tmp_path):
    small_files_table(tmp_path)
    replaced = {f.name for f in (tmp_path / "date=2026-11-23").iterdir()}
    old_orphan = tmp_path / "date=2026-11-23" / "upload-of-a-crashed-consumer.parquet"
    young_orphan = tmp_path / "date=2026-11-23" / "upload-waiting-for-its-commit.parquet"
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"PAR1")
    age(old_orphan, TWO_DAYS)
    age(young_orphan, 0)

    report = maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=1)

    assert report.files_compacted == 10 and report.files_written == 1
    assert not old_orphan.exists() and report.files_vacuumed == 1
    assert young_orphan.exists()
    # replaced a moment ago, though written two days ago: a reader that loaded the table before the
    # compaction may still be reading them
    assert replaced <= {f.name for f in (tmp_path / "date=2026-11-23").iterdir()}
    assert (tmp_path / "_synthetic" / "other-table.parquet").exists()
    assert sorted(DeltaTable(str(tmp_path)).to_pyarrow_table().column("price").to_pylist()) == [float(p) for p in range(10)]


def test_tombstones_are_kept_as_long_as_the_files_they_protect_and_the_log_is_checkpointed_every_ten_commits(tmp_path):
    small_files_table(tmp_path)  # made by delta-rs's defaults: a checkpoint every 100 commits
    maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=6)
    configuration = DeltaTable(str(tmp_path)).metadata().configuration
    assert configuration[TOMBSTONE_RETENTION] == "interval 21600 seconds"
    assert {name: configuration.get(name) for name in CHECKPOINT_INTERVAL} == CHECKPOINT_INTERVAL

    version = DeltaTable(str(tmp_path)).version()
    maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=6)
    assert DeltaTable(str(tmp_path)).version() == version, "an unchanged retention is not committed again"

    maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=1.5)
    assert DeltaTable(str(tmp_path)).metadata().configuration[TOMBSTONE_RETENTION] == tombstone_retention(1.5) \
        == "interval 5400 seconds"


def test_without_vacuum_the_checkpoint_interval_is_set_and_the_tombstone_retention_left_alone(tmp_path):
    small_files_table(tmp_path)
    maintain_table(str(tmp_path), {}, today=TODAY, vacuum=False)
    configuration = DeltaTable(str(tmp_path)).metadata().configuration
    assert TOMBSTONE_RETENTION not in configuration
    assert {name: configuration.get(name) for name in CHECKPOINT_INTERVAL} == CHECKPOINT_INTERVAL


def test_files_written_without_full_statistics_are_written_again_with_them_and_found_by_filters(tmp_path):
    """The files consumers added before 2026-12 bounded only `kafka_offset`: every filter on another column
    skipped them. Maintenance finds them by their log entries and writes their partitions again."""
    import json

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    from sinks.delta_maintenance import partitions_lacking_stats

    schema = pa.schema([("ticker", pa.string()), ("source", pa.string()), ("kafka_offset", pa.int64())])
    DeltaTable.create(str(tmp_path), schema, partition_by=["ticker"])
    adds = []
    for ticker, offsets in (("A", [1, 2]), ("B", [3]), ("C", [4, 5])):
        (tmp_path / f"ticker={ticker}").mkdir()
        path = tmp_path / f"ticker={ticker}" / "old.parquet"
        pq.write_table(pa.table({"source": ["alpaca"] * len(offsets), "kafka_offset": offsets}), path)
        stats = {"numRecords": len(offsets), "minValues": {"kafka_offset": offsets[0]},
                 "maxValues": {"kafka_offset": offsets[-1]}}
        if ticker == "C":  # this one was written by delta-rs itself, with everything
            stats |= {"minValues": {"kafka_offset": 4, "source": "alpaca"}, "maxValues": {"kafka_offset": 5, "source": "alpaca"},
                      "nullCount": {"kafka_offset": 0, "source": 0}}
        adds.append(AddAction(f"ticker={ticker}/old.parquet", os.path.getsize(path), {"ticker": ticker}, 1, True,
                              json.dumps(stats)))
    DeltaTable(str(tmp_path)).create_write_transaction(adds, mode="append", schema=schema, partition_by=["ticker"])

    def found() -> int:
        return DeltaTable(str(tmp_path)).to_pyarrow_dataset().to_table(filter=ds.field("source") == "alpaca").num_rows

    assert found() == 2
    assert partitions_lacking_stats(DeltaTable(str(tmp_path))) == ([[("ticker", "=", "A")], [("ticker", "=", "B")]], 2)
    report = maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=1, vacuum=False)
    assert report.files_repaired == 2
    assert partitions_lacking_stats(DeltaTable(str(tmp_path))) == ([], 0)
    assert found() == 5 and DeltaTable(str(tmp_path)).to_pyarrow_table().num_rows == 5
