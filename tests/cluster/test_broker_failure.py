"""A broker SIGKILLed mid-stream: with replication factor 3, min.insync.replicas=2 and acks=all, nothing
the brokers acknowledged is lost, producing and consuming go on on the two left, and the broker started
again rejoins every partition's in-sync replicas."""

import threading
import time

from confluent_kafka import TopicCollection

from tests.cluster.conftest import kill_server, stack
from tests.cluster.helpers import drained_exactly_once, log_of, stored_ids, streaming, wait_for_rows

RATE = 1_000


def partitions(settings, topic: str) -> list:
    admin = settings.kafka_cluster().admin()  # kept until the answer is in: a client freed earlier fails its requests
    return admin.describe_topics(TopicCollection([topic]))[topic].result().partitions


def leader_of_partition_0(settings, topic: str) -> int:
    return partitions(settings, topic)[0].leader.id


def all_in_sync(settings, topic: str) -> bool:
    return all(len(partition.isr) == 3 for partition in partitions(settings, topic))


def test_a_broker_killed_mid_stream_loses_no_acknowledged_trade_and_rejoins_when_restarted(tmp_path, unique):
    settings, bucket, process, producer = streaming(f"cl-broker-{unique}", tmp_path, RATE)
    topic = bucket.replace("-", "_")
    wait_for_rows(settings, bucket, 1, process, seconds=90)  # streaming: consumed and stored
    time.sleep(4)

    victim = leader_of_partition_0(settings, topic)
    killed_at = time.monotonic()
    kill_server(f"kafka-{victim}")
    time.sleep(12)  # producing on two brokers
    stored_early = len(stored_ids(settings, bucket))
    time.sleep(8)  # and consuming
    acked_while_down = len(producer.acknowledged_after(killed_at + 5))
    assert acked_while_down > 5 * RATE, "producing did not go on with a broker down"
    assert len(stored_ids(settings, bucket)) > stored_early + 3 * RATE, "consuming did not go on with a broker down"
    assert process.poll() is None, log_of(process)[-3000:]

    restarted_at = time.monotonic()
    restart = threading.Thread(target=stack, args=("up",))
    restart.start()
    deadline = time.monotonic() + 120
    while not all_in_sync(settings, topic):
        assert time.monotonic() < deadline, f"kafka-{victim} did not rejoin the in-sync replicas"
        time.sleep(0.5)
    rejoined_after = time.monotonic() - restarted_at
    restart.join(300)
    time.sleep(3)
    acknowledged = drained_exactly_once(settings, bucket, producer, process)
    print(f"\nbroker kill: kafka-{victim} (leader of partition 0) killed; longest time without an acknowledgement "
          f"after it {producer.largest_gap(killed_at - 1):.2f} s; restarted broker in every ISR after "
          f"{rejoined_after:.1f} s; {acknowledged} trades acknowledged, each stored once")
