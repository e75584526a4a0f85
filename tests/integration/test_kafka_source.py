"""The Kafka source on the real broker: one consumer per worker, batches handed out per partition."""

import os

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from sources.kafka_topic import FETCH_MAX_BYTES, InFlight, TopicSource
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
