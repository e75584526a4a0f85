"""The product on the cluster profile, configured by `.env` alone: `dataflows.stock_produce` reads its
tickers from PostgreSQL over verified TLS and publishes over SASL_SSL to three replicated brokers;
`dataflows.stock_consume` stores every trade once in the Delta table on four MinIO nodes over TLS, and
`marketstream sql` reads them back."""

import subprocess
import sys
import time

import orjson
from confluent_kafka import KafkaException

from marketstream import schemas
from marketstream.lake import read_table
from tests.cluster.conftest import cluster_process_env, cluster_settings
from tests.cluster.helpers import log_of
from tests.integration.kafka_helpers import read_topic
from tests.integration.processes import logged


def delete_topic(settings, topic: str) -> None:
    admin = settings.kafka_cluster().admin()
    try:
        admin.delete_topics([topic])[topic].result()
    except KafkaException as exc:
        if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
            raise
    deadline = time.monotonic() + 60
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} was not deleted"
        time.sleep(0.5)


def test_synthetic_trades_reach_the_delta_table_once_each_over_sasl_ssl_minio_tls_and_postgres_tls(tmp_path):
    settings = cluster_settings()
    delete_topic(settings, "stock_trades")  # this run's trades only: the table keeps earlier runs' under other ids
    producer = logged([sys.executable, "-m", "bytewax.run", "dataflows.stock_produce"], cwd=tmp_path,
                      env=cluster_process_env(STOCK_SOURCE="synthetic", SYNTHETIC_TRADES_PER_SECOND="20",
                                              PRODUCE_FOR_SECONDS="10"))
    assert producer.wait(120) == 0, log_of(producer)[-3000:]
    produced = sorted(orjson.loads(message.value())["trade_id"] for message in read_topic(settings, "stock_trades"))
    assert len(produced) > 10 * 20 * 5

    consumer = logged([sys.executable, "-m", "bytewax.run", "dataflows.stock_consume"], cwd=tmp_path,
                      env=cluster_process_env(KAFKA_STOP_AT_END="true"))
    assert consumer.wait(180) == 0, log_of(consumer)[-3000:]
    assert "Traceback" not in log_of(consumer) + log_of(producer)

    run = {trade_id.rsplit("-", 1)[0] for trade_id in produced}
    stored = read_table(settings, "stock-data", schemas.STOCK_TRADES_PARTITIONING, prefix="_synthetic").column("trade_id")
    assert sorted(t for t in stored.to_pylist() if t.rsplit("-", 1)[0] in run) == produced

    # and an analyst's query reads them back over TLS (DuckDB on pyarrow's S3 client and delta-rs)
    (run_id,) = run
    query = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sql", "--format", "csv",
         f"SELECT count(*) AS rows, count(DISTINCT trade_id) AS trades FROM stock_synthetic "
         f"WHERE starts_with(trade_id, '{run_id}-')"],
        cwd=tmp_path, env=cluster_process_env(), capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr[-3000:]
    assert query.stdout.split() == ['"rows","trades"', f"{len(produced)},{len(produced)}"]
