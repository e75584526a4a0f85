"""Compaction, vacuum and checkpoints of a Delta table while a consumer streams into it: no row lost,
none doubled, fewer files."""

import signal
import threading
import time
from datetime import date

import orjson
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

import sinks.delta_maintenance as maintenance
from marketstream.lake import lake_filesystem, read_delta
from tests.integration.kafka_helpers import produce
from tests.integration.test_fault_tolerance import consumer, log_of, trade

pytestmark = pytest.mark.integration
TODAY = date(2026, 11, 26)  # the trades are dated 2026-11-23 to 25: closed partitions, compacted


def test_compaction_while_a_consumer_streams_loses_and_doubles_nothing(lake, monkeypatch):
    settings, topic, bucket = lake
    options = settings.delta_storage_options()
    synthetic = [(b"T01", orjson.dumps(orjson.loads(trade(i)[1]) | {"source": "synthetic", "symbol": "T01"}))
                 for i in range(500)]
    produce(settings, topic, [trade(i) for i in range(10_000)] + synthetic)
    process = consumer(topic, bucket, lake_format="delta", kafka_stop_at_end=False, batch_max_age_seconds=0.5,
                       batch_max_buffered_rows=300)
    total, reports = 40_000, []
    producing = threading.Thread(target=lambda: [produce(settings, topic, [trade(i) for i in range(start, start + 3_000)])
                                                 or time.sleep(0.5) for start in range(10_000, total, 3_000)])
    try:
        deadline = time.monotonic() + 60
        while not lake_filesystem(settings).exists(f"{bucket}/_delta_log"):
            assert time.monotonic() < deadline and process.poll() is None, log_of(process)[-2000:]
            time.sleep(0.2)
        producing.start()
        while producing.is_alive() or len(reports) < 3:  # compactions race the streaming commits
            try:
                reports.append(maintenance.maintain_table(f"s3://{bucket}", options, today=TODAY, vacuum=False))
            except Exception as exc:  # noqa: BLE001 - a compaction that lost a race is tried on the next run
                assert "ommit" in str(exc), exc
            assert process.poll() is None, log_of(process)[-2000:]
        deadline = time.monotonic() + 120
        while read_delta(settings, bucket).num_rows < total:
            assert time.monotonic() < deadline and process.poll() is None, log_of(process)[-2000:]
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_of(process)[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
        producing.join()

    assert sum(report.files_compacted for report in reports) > 0
    ids = read_delta(settings, bucket).column("trade_id")
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total

    monkeypatch.setattr(maintenance, "MIN_RETENTION_HOURS", 0)  # this test's own table: nothing else reads it
    last = maintenance.maintain_table(f"s3://{bucket}", options, today=TODAY, retention_hours=0)
    assert last.files_after < last.files_before or last.files_compacted == 0
    assert last.files_vacuumed > 0
    ids = read_delta(settings, bucket).column("trade_id")
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total
    assert read_delta(settings, bucket, "_synthetic").num_rows == 500  # a folder starting with _ is not vacuumed
    files = DeltaTable(f"s3://{bucket}", storage_options=options).file_uris()
    assert len(files) <= 3 * 20  # one file per ticker and day once compacted
    assert lake_filesystem(settings).exists(f"{bucket}/_delta_log/_last_checkpoint")


def test_a_vacuum_retention_shorter_than_an_hour_is_refused():
    with pytest.raises(ValueError, match="under 1 h"):
        maintenance.maintain_table("s3://unused", {}, today=TODAY, retention_hours=0.5)


def test_the_maintenance_dataflow_compacts_each_table_on_its_schedule(lake):
    from bytewax.testing import TestingSink, run_main

    from dataflows.lake_maintenance import build_maintenance_flow

    settings, topic, bucket = lake
    produce(settings, topic, [trade(i) for i in range(3_000)])
    for start in (0, 1000, 2000):  # three runs: three files per ticker and day
        assert consumer(topic, bucket, lake_format="delta", kafka_starting_offset="earliest").wait(120) == 0
        produce(settings, topic, [trade(i) for i in range(3_000 + start, 4_000 + start)])
    files_before = len(DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).file_uris())
    out = []
    flow = build_maintenance_flow(settings.model_copy(update={"produce_for_seconds": 3}),
                                  {"stock": f"s3://{bucket}", "missing": f"s3://{bucket}/_none"},
                                  today=lambda now: TODAY, sink=TestingSink(out))
    run_main(flow)
    assert len(out) == 1 and out[0].startswith(f"s3://{bucket}: version ")
    files_after = len(DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).file_uris())
    assert files_after == 60 < files_before  # 20 tickers x 3 days, one file each
    ids = read_delta(settings, bucket).column("trade_id")
    assert pc.count_distinct(ids).as_py() == len(ids)
