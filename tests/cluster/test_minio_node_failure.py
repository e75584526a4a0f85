"""A MinIO node SIGKILLed mid-run: the erasure set (four drives, EC:2) keeps its read and write quorum on
three, so the consumer goes on committing, readers go on reading, and nothing is lost or doubled; the node
started again rejoins."""

import time

from deltalake import DeltaTable

from tests.cluster.conftest import kill_server, server_alive, stack
from tests.cluster.helpers import drained_exactly_once, log_of, stored_ids, streaming, wait_for_rows

RATE = 1_000
LOST_NODE = "minio-3"
"""Not the node the clients' S3_ENDPOINT_URL names: a client reaches the set through one endpoint (in
production, a load balancer in front of every node)."""


def test_a_minio_node_killed_mid_run_loses_neither_reads_nor_writes(tmp_path, unique):
    settings, bucket, process, producer = streaming(f"cl-minio-{unique}", tmp_path, RATE)
    wait_for_rows(settings, bucket, 1, process)
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

    stack("start", LOST_NODE)  # the node rejoins, started alone as the chaos soak does
    assert server_alive(LOST_NODE)
    stack("up")  # starts nothing: waits until every node is ready and the set has its quorum
    time.sleep(3)
    acknowledged = drained_exactly_once(settings, bucket, producer, process)
    print(f"\nminio node kill: {LOST_NODE} down 15 s; {table.version() - version_at_kill} commits and "
          f"{rows_while_down - rows_at_kill} rows stored meanwhile; {acknowledged} trades, each stored once")
