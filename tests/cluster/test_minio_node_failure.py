"""A MinIO node SIGKILLed mid-run: the erasure set (four drives, EC:2) keeps its read and write quorum on
three, so the consumer goes on committing, readers go on reading, and nothing is lost or doubled; the node
started again rejoins."""

import signal
import threading
import time

from deltalake import DeltaTable

from tests.cluster.conftest import cluster_settings, kill_server, stack
from tests.cluster.helpers import SteadyProducer, consumer, exactly_once, log_of, stored_ids, wait_for_rows

RATE = 1_000
LOST_NODE = "minio-3"
"""Not the node the clients' S3_ENDPOINT_URL names: a client reaches the set through one endpoint (in
production, a load balancer in front of every node)."""


def test_a_minio_node_killed_mid_run_loses_neither_reads_nor_writes(tmp_path, unique):
    settings = cluster_settings()
    topic, bucket = f"cl_minio_{unique}", f"cl-minio-{unique}"
    settings.kafka_cluster().ensure_topics([topic])
    process = consumer(topic, bucket, tmp_path)
    producer = SteadyProducer(settings, topic, RATE).start()
    wait_for_rows(settings, bucket, 1, process, seconds=60)
    time.sleep(4)
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())

    kill_server(LOST_NODE)
    version_at_kill, rows_at_kill = table.version(), len(stored_ids(settings, bucket))
    time.sleep(15)
    rows_while_down = len(stored_ids(settings, bucket))  # a read with a node down
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())
    assert table.version() > version_at_kill + 3, "commits stopped with a node down:\n" + log_of(process)[-3000:]
    assert rows_while_down > rows_at_kill + 5 * RATE
    assert process.poll() is None, log_of(process)[-3000:]

    restart = threading.Thread(target=stack, args=("up",))
    restart.start()
    restart.join(300)
    time.sleep(3)
    producer.stop()
    assert producer.failed == []
    acknowledged = set(producer.acked)
    wait_for_rows(settings, bucket, len(acknowledged), process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log_of(process)[-3000:]
    assert exactly_once(stored_ids(settings, bucket), acknowledged) == (len(acknowledged), len(acknowledged), 0)
    print(f"\nminio node kill: {LOST_NODE} down 15 s; {table.version() - version_at_kill} commits and "
          f"{rows_while_down - rows_at_kill} rows stored meanwhile; {len(acknowledged)} trades, each stored once")
