"""A broker SIGKILLed mid-stream: with replication factor 3, min.insync.replicas=2 and acks=all, nothing
the brokers acknowledged is lost, producing and consuming go on on the two left, and the broker started
again rejoins every partition's in-sync replicas."""

import signal
import threading
import time

from confluent_kafka import TopicCollection

from tests.cluster.conftest import cluster_settings, kill_server, stack
from tests.cluster.helpers import SteadyProducer, consumer, exactly_once, log_of, stored_ids, wait_for_rows

RATE = 1_000


def leader_of_partition_0(settings, topic: str) -> int:
    described = settings.kafka_cluster().admin().describe_topics(TopicCollection([topic]))[topic].result()
    return described.partitions[0].leader.id


def all_in_sync(settings, topic: str) -> bool:
    described = settings.kafka_cluster().admin().describe_topics(TopicCollection([topic]))[topic].result()
    return all(len(partition.isr) == 3 for partition in described.partitions)


def test_a_broker_killed_mid_stream_loses_no_acknowledged_trade_and_rejoins_when_restarted(tmp_path, unique):
    settings = cluster_settings()
    topic, bucket = f"cl_broker_{unique}", f"cl-broker-{unique}"
    settings.kafka_cluster().ensure_topics([topic])
    process = consumer(topic, bucket, tmp_path)
    producer = SteadyProducer(settings, topic, RATE).start()
    time.sleep(8)

    victim = leader_of_partition_0(settings, topic)
    killed_at = time.monotonic()
    kill_server(f"kafka-{victim}")
    time.sleep(12)  # producing and consuming on two brokers
    acked_while_down = sum(1 for t in producer.acked.values() if t > killed_at + 5)
    assert acked_while_down > 5 * RATE, "producing did not go on with a broker down"
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
    producer.stop()

    assert producer.failed == []
    acknowledged = set(producer.acked)
    wait_for_rows(settings, bucket, len(acknowledged), process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log_of(process)[-3000:]
    rows, distinct, missing = exactly_once(stored_ids(settings, bucket), acknowledged)
    assert (rows, distinct, missing) == (len(acknowledged), len(acknowledged), 0)
    print(f"\nbroker kill: kafka-{victim} (leader of partition 0) killed; longest time without an acknowledgement "
          f"after it {producer.largest_gap(killed_at - 1):.2f} s; restarted broker in every ISR after "
          f"{rejoined_after:.1f} s; {len(acknowledged)} trades acknowledged, each stored once")
