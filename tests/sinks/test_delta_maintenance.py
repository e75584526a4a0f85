"""Compaction and vacuum on a Delta table in a local folder (no server), where a file's age can be set:
the vacuum deletes what no reader can need and keeps what one still may."""

import os
import time
from datetime import date

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

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


def test_tombstones_are_kept_as_long_as_the_files_they_protect(tmp_path):
    small_files_table(tmp_path)
    maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=6)
    assert DeltaTable(str(tmp_path)).metadata().configuration[TOMBSTONE_RETENTION] == "interval 21600 seconds"

    version = DeltaTable(str(tmp_path)).version()
    maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=6)
    assert DeltaTable(str(tmp_path)).version() == version, "an unchanged retention is not committed again"

    maintain_table(str(tmp_path), {}, today=TODAY, retention_hours=1.5)
    assert DeltaTable(str(tmp_path)).metadata().configuration[TOMBSTONE_RETENTION] == tombstone_retention(1.5) \
        == "interval 5400 seconds"
