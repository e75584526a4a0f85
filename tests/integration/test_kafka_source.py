"""The Kafka source on the real broker: one consumer per worker, batches handed out per partition."""

import logging
import os
import time

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

from sources.kafka_topic import BOUNDED_FETCHES, FETCH_MAX_BYTES, InFlight, TopicSource, _SharedConsumer
from tests.conftest import make_settings
from tests.integration.kafka_helpers import produce

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("in_flight_limit", [150, 100_000])
def test_every_message_is_handed_out_once_per_partition_in_offset_order(stack, unique, in_flight_limit):
    """A tiny in-flight limit exercises handing out partial batches while the decoder lags behind."""
    settings = make_settings(kafka_stop_at_end=True, kafka_topic_partitions=3, kafka_poll_max_messages=100)
    topic = f"it_source_{unique}"
    produce(settings, topic, [(f"k{i % 7}".encode(), f"m{i}".encode()) for i in range(3_000)])

    in_flight = InFlight(in_flight_limit)
    source = TopicSource(settings.kafka_cluster(), topic, in_flight=in_flight, batch_size=100, stop_at_end=True)
    flow = Dataflow("source_only")
    batches = op.input("in", flow, source)

    def decoded(batch):
        in_flight.release(len(batch))  # what the consumer flow's decode step does
        return batch

    out = []
    op.output("out", op.map("decode", batches, decoded), TestingSink(out))
    run_main(flow)

    assert sum(len(b) for b in out) == 3_000
    assert sorted(v for b in out for v in b.values) == sorted(f"m{i}".encode() for i in range(3_000))
    for partition in {b.partition for b in out}:
        offsets = [o for b in out if b.partition == partition for o in b.offsets]
        assert offsets == list(range(len(offsets)))  # each partition whole, in order, once
    assert all(len(b) <= in_flight_limit + 100 for b in out)  # what is in flight plus at most one poll
    assert in_flight.count == 0


def test_messages_larger_than_the_fetch_size_are_read_whole(stack, unique):
    """The consumer fetches little at a time to bound memory; a larger message must still come through."""
    settings = make_settings(kafka_stop_at_end=True, kafka_topic_partitions=1)
    topic = f"it_source_large_{unique}"
    large = os.urandom(3 * FETCH_MAX_BYTES)  # random: compression cannot make it fit
    produce(settings, topic, [(b"k", b"small-0"), (b"k", large), (b"k", b"small-2")])

    in_flight = InFlight(100)
    flow = Dataflow("source_large")
    out = []
    batches = op.map("decode", op.input("in", flow, TopicSource(settings.kafka_cluster(), topic, in_flight=in_flight,
                                                              batch_size=settings.kafka_poll_max_messages,
                                                              stop_at_end=True)),
                     lambda batch: in_flight.release(len(batch)) or batch)
    op.output("out", batches, TestingSink(out))
    run_main(flow)

    assert [v for b in out for v in b.values] == [b"small-0", large, b"small-2"]


def _source_batches(settings, topic: str) -> list:
    in_flight = InFlight(100_000)
    flow = Dataflow("source_batches")
    out = []
    batches = op.map("decode", op.input("in", flow, TopicSource(settings.kafka_cluster(), topic, in_flight=in_flight,
                                                              batch_size=1_000, stop_at_end=True)),
                     lambda batch: in_flight.release(len(batch)) or batch)
    op.output("out", batches, TestingSink(out))
    run_main(flow)
    return out


def _offsets_by_value(settings, topic: str) -> dict[bytes, int]:
    """Each message's offset, read by a plain consumer to the partition's end (a transaction's marker may be
    its last offset, so the end is librdkafka's end-of-partition event, not the high watermark)."""
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer({**settings.kafka_client_config(), "group.id": "test-offsets", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, deadline = {}, time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return seen
                continue
            seen[message.value()] = message.offset()
    finally:
        consumer.close()
    raise TimeoutError(f"{topic} not read to its end in 30 s")


def test_a_poll_of_consecutive_offsets_holds_a_range_and_one_with_gaps_each_offset(stack, unique):
    """Each transaction leaves a gap after its messages (its commit marker takes an offset): a batch spanning
    one lists every message's own offset, a batch without gap holds them as a range; either way the offsets
    of positions in the batch (`offsets_at`, what the lake's rows record) are those a plain reader sees."""
    import pyarrow as pa
    from confluent_kafka import Producer

    settings = make_settings(kafka_stop_at_end=True, kafka_topic_partitions=1)
    gapless, gapped = f"it_source_gapless_{unique}", f"it_source_gapped_{unique}"
    produce(settings, gapless, [(b"k", f"m{i}".encode()) for i in range(30)])
    settings.kafka_cluster().ensure_topics([gapped])
    producer = Producer({**settings.kafka_client_config(), "transactional.id": f"gaps-{unique}"})
    producer.init_transactions(30)
    for transaction in range(3):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(gapped, key=b"k", value=f"t{transaction}m{i}".encode())
        producer.commit_transaction(30)

    for topic, gaps in ((gapless, False), (gapped, True)):
        seen = _offsets_by_value(settings, topic)
        batches = _source_batches(settings, topic)
        assert sum(len(batch) for batch in batches) == len(seen)
        for batch in batches:
            assert isinstance(batch.offsets, range) is not gaps or len(batch) < 6
            expected = [seen[value] for value in batch.values]
            assert list(batch.offsets) == expected
            assert batch.offsets_at(pa.array(range(len(batch)), pa.int64())).to_pylist() == expected
        if gaps:
            assert any(not isinstance(batch.offsets, range) for batch in batches)
            assert max(seen.values()) - min(seen.values()) > len(seen) - 1  # the markers' offsets


def _shared_consumer(client_config: dict) -> _SharedConsumer:
    return _SharedConsumer({**client_config, "group.id": "test", "enable.auto.commit": False, **BOUNDED_FETCHES},
                           batch_size=100, on_close=lambda: None)


def _assigned(consumer: _SharedConsumer) -> list[tuple[int, int]]:
    return [(part.partition, part.offset) for part in consumer._consumer.assignment()]


def test_a_partition_read_from_its_beginning_or_end_is_assigned_the_offset_that_is_there_now(stack, unique):
    """Given a logical offset, librdkafka fetches only ~0.5 s after the assignment: the source asks for
    the partition's watermarks itself. Its beginning is the first record retention left; from its end,
    what is produced afterwards is read, and nothing before."""
    settings = make_settings(kafka_topic_partitions=2)
    topic = f"it_source_ends_{unique}"
    produce(settings, topic, [(b"k", f"m{i}".encode()) for i in range(50)], partition=0)
    for deleted in settings.kafka_cluster().admin().delete_records([TopicPartition(topic, 0, 20)]).values():
        deleted.result(30)

    consumer = _shared_consumer(settings.kafka_cluster().client_config)
    consumer.add(topic, 0, OFFSET_BEGINNING)
    consumer.add(topic, 1, OFFSET_END)
    assert _assigned(consumer) == [(0, 20), (1, 0)]
    produce(settings, topic, [(b"k", b"later")], partition=1)

    read: dict[int, list[bytes]] = {0: [], 1: []}
    deadline = time.monotonic() + 30
    while (len(read[0]) < 30 or not read[1]) and time.monotonic() < deadline:
        for partition in read:
            messages, _ = consumer.take(partition, InFlight(1_000))
            read[partition] += [message.value() for message in messages]
    consumer.remove(topic, 0)
    consumer.remove(topic, 1)
    assert read == {0: [f"m{i}".encode() for i in range(20, 50)], 1: [b"later"]}


def test_a_broker_not_answering_leaves_logical_offsets_to_librdkafka_without_a_wait_per_partition(caplog):
    consumer = _shared_consumer({"bootstrap.servers": "127.0.0.1:9", "socket.connection.setup.timeout.ms": 1_000})
    with caplog.at_level(logging.WARNING, logger="sources.kafka_topic"):
        consumer.add("nowhere", 0, OFFSET_BEGINNING)
        consumer.add("nowhere", 1, OFFSET_END)
        consumer.add("nowhere", 2, 7)
    assigned = _assigned(consumer)
    for partition in range(3):
        consumer.remove("nowhere", partition)
    assert assigned == [(0, OFFSET_BEGINNING), (1, OFFSET_END), (2, 7)]
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith("nowhere: the offsets of partition 0 are unknown (Failed to get watermark offsets: ")
    assert warning.endswith("); librdkafka looks them up itself")
