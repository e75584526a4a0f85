"""The Kafka source's read-ahead, without a broker: results in offset order, and a snapshot that never
passes a batch still being decoded."""

from concurrent.futures import Future

import pytest
from confluent_kafka import Message

from marketstream import shutdown
from sources.kafka_topic import InFlight, _PartitionReader


class _FakeConsumer:
    """Hands out the polls it is given, one per `take`; keeps the read-ahead futures for the test to finish."""

    def __init__(self, polls: list[list[int]]):
        self.polls = polls
        self.futures: list[tuple[Future, object]] = []

    def add(self, topic, partition, offset) -> None:
        pass

    def remove(self, topic, partition) -> None:
        pass

    def take(self, partition, in_flight):
        offsets = self.polls.pop(0) if self.polls else []
        return [Message(topic="t", partition=0, offset=o, key=b"k", value=b"m") for o in offsets], not self.polls

    def read_ahead(self, batch) -> Future:
        future = Future()
        self.futures.append((future, batch))
        return future


@pytest.fixture(autouse=True)
def _no_shutdown(monkeypatch):
    monkeypatch.setattr(shutdown, "requested", lambda: False)


def test_results_are_handed_over_in_order_and_the_snapshot_waits_for_them():
    consumer = _FakeConsumer([[0, 1], [2, 3], [4]])
    reader = _PartitionReader(consumer, "t", "inc", 0, 0, InFlight(100))

    assert reader.next_batch() == []  # the first poll is being decoded
    assert reader.next_batch() == []
    assert reader.snapshot() == ("inc", 0)
    consumer.futures[1][0].set_result("second")  # finished out of order: still waits for the first
    assert reader.next_batch() == []  # the last poll; the partition is at its end
    assert reader.snapshot() == ("inc", 0)

    consumer.futures[0][0].set_result("first")
    consumer.futures[2][0].set_result("third")
    assert reader.next_batch() == ["first", "second", "third"]  # at its end: every batch read ahead is handed over
    assert reader.snapshot() == ("inc", 5)
    with pytest.raises(StopIteration):
        reader.next_batch()


def test_a_shutdown_hands_over_what_was_read_ahead_before_stopping(monkeypatch):
    consumer = _FakeConsumer([[0, 1], [2, 3], [4]])
    reader = _PartitionReader(consumer, "t", "inc", 0, 0, InFlight(100))
    assert reader.next_batch() == []
    consumer.futures[0][0].set_result("first")

    monkeypatch.setattr(shutdown, "requested", lambda: True)
    assert reader.next_batch() == ["first"]
    assert reader.snapshot() == ("inc", 2)
    with pytest.raises(StopIteration):
        reader.next_batch()


def test_a_decoder_failure_stops_the_source_without_moving_its_snapshot():
    consumer = _FakeConsumer([[0, 1], [2]])
    reader = _PartitionReader(consumer, "t", "inc", 0, 0, InFlight(100))
    reader.next_batch()
    consumer.futures[0][0].set_exception(RuntimeError("decoder bug"))
    with pytest.raises(RuntimeError, match="decoder bug"):
        reader.next_batch()
    assert reader.snapshot() == ("inc", 0)
