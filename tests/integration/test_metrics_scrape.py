"""Scraping a running consumer's Prometheus metrics: the figures match what it processed."""

import signal
import time

import orjson
from deltalake import DeltaTable

from tests.integration.kafka_helpers import produce
from tests.integration.private_servers import free_port
from tests.integration.scraping import scrape_if_serving, total
from tests.integration.test_fault_tolerance import consumer, log_of, stored, trade


def test_a_scrape_of_a_running_consumer_counts_what_it_read_stored_dead_lettered_and_skipped(lake):
    settings, topic, bucket = lake
    good = [trade(i) for i in range(400)]
    at_night = [(key, orjson.dumps(orjson.loads(value) | {"timestamp": "2026-11-24T03:00:00Z", "trade_id": f"n{i}"}))
                for i, (key, value) in enumerate(trade(i) for i in range(400, 407))]
    bad = [(b"T01", b"not json")] * 3 + [(b"T02", orjson.dumps({"symbol": "T02", "price": -1}))] * 2
    produce(settings, topic, good + at_night + bad)
    port = free_port()
    process = consumer(topic, bucket, kafka_stop_at_end=False, metrics_port=port, metrics_address="127.0.0.1",
                       batch_max_age_seconds=1.0)
    try:
        deadline = time.monotonic() + 120
        samples = {}
        while time.monotonic() < deadline:
            assert process.poll() is None, log_of(process)[-2000:]
            samples = scrape_if_serving(port)
            if total(samples, "marketstream_rows_committed_total") >= 400 and \
                    total(samples, "marketstream_dead_letters_total") >= 5:
                break
            time.sleep(0.5)
        assert total(samples, "marketstream_messages_read_total", topic=topic) == 412
        assert total(samples, "marketstream_rows_committed_total") == 400 == len(stored(settings, bucket))
        assert total(samples, "marketstream_files_committed_total") >= 20
        assert total(samples, "marketstream_dead_letters_total", dataset="stock") == 5
        assert total(samples, "marketstream_dead_letters_total", reason="not valid JSON") == 3
        assert total(samples, "marketstream_dead_letters_total", reason="field price") == 2
        assert total(samples, "marketstream_skipped_rows_total", dataset="stock") == 7
        assert total(samples, "marketstream_batch_rows_sum", dataset="stock") == 400
        assert total(samples, "marketstream_buffered_rows", dataset="stock") == 0  # all flushed
        assert total(samples, "marketstream_commit_seconds_count") >= 1
        # one commit per round of the sink's writes (group commit), each one a WRITE in the table's log
        writes = [entry for entry in DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).history()
                  if entry.get("operation") == "WRITE"]
        assert 1 <= total(samples, "marketstream_delta_commits_total", table=f"s3://{bucket}") == len(writes) <= \
            total(samples, "marketstream_commit_seconds_count", table=f"s3://{bucket}")
        assert total(samples, "marketstream_upload_seconds_count") >= 1
        assert total(samples, "marketstream_consumer_lag_messages", topic=topic) == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
