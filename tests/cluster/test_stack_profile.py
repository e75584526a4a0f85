"""The cluster profile is what it says: topics the project creates are replicated three times with
min.insync.replicas=2 and no unclean election, internal topics too, and every server speaks TLS only; `stack.sh
start` knows its servers."""

import socket
import ssl
import subprocess

import pytest
from confluent_kafka import Consumer, TopicCollection
from confluent_kafka.admin import ConfigResource, ResourceType

from tests.cluster.conftest import CA, CLUSTER_ENV, cluster_settings, stack


def test_topics_the_project_creates_have_three_replicas_two_in_sync_required_and_no_unclean_election(unique):
    settings = cluster_settings()
    topic = f"cl_profile_{unique}"
    cluster = settings.kafka_cluster()
    cluster.ensure_topics([topic])
    admin = cluster.admin()
    described = admin.describe_topics(TopicCollection([topic]))[topic].result()
    assert [len(partition.replicas) for partition in described.partitions] == [3] * settings.kafka_topic_partitions
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result()
    assert configs["min.insync.replicas"].value == "2"
    assert configs["unclean.leader.election.enable"].value == "false"
    admin.delete_topics([topic])


def test_the_consumer_offsets_topic_has_three_replicas(unique):
    settings = cluster_settings()
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"cl-{unique}"})
    try:
        consumer.list_topics(timeout=10)
        consumer.committed([], timeout=10)  # makes sure a group coordinator (and its topic) exists
    finally:
        consumer.close()
    admin = settings.kafka_cluster().admin()
    described = admin.describe_topics(TopicCollection(["__consumer_offsets"]))["__consumer_offsets"].result()
    assert {len(partition.replicas) for partition in described.partitions} == {3}


def handshake(port: int) -> str:
    """The TLS version the server on `port` negotiates with a client trusting only the stack's CA."""
    context = ssl.create_default_context(cafile=str(CA))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return tls.version()


def test_kafka_and_every_minio_node_speak_tls_with_a_certificate_of_the_stacks_ca():
    brokers = [int(address.rsplit(":", 1)[1]) for address in CLUSTER_ENV["KAFKA_BOOTSTRAP_SERVERS"].split(",")]
    minio = [int(CLUSTER_ENV["MINIO_PORT"]) + node for node in range(4)]
    assert len(brokers) == 3
    for port in brokers + minio:
        assert handshake(port).startswith("TLSv1.")


@pytest.mark.parametrize("name", ["kafka-9", "minio-5", "redis", ""])
def test_start_refuses_a_server_the_cluster_has_not_with_one_line_naming_those_it_has(name):
    with pytest.raises(subprocess.CalledProcessError) as refused:
        stack("start", name)
    assert refused.value.stderr.strip().splitlines()[-1] == (
        f"[stack] error: start: no server named {name or '(none)'} (one of: kafka-1 kafka-2 kafka-3 minio-1 minio-2 "
        "minio-3 minio-4 postgres)")
