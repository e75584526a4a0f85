"""Dead letters on the real stack: one per bad message across restarts and worker counts, and always
small enough for the broker, the original kept in the bucket when it is not."""

import hashlib
import subprocess
import sys

import orjson
import pyarrow.compute as pc
import pytest
from confluent_kafka import Producer

from marketstream.lake import lake_filesystem
from tests.integration.kafka_helpers import produce, read_topic
from tests.integration.test_fault_tolerance import REPO, init_recovery, stored, trade

pytestmark = pytest.mark.integration


def run_consumer(topic: str, bucket: str, *args: str) -> None:
    factory = f"tests.integration.flows:stock_consume({topic!r}, {bucket!r})"
    done = subprocess.run([sys.executable, "-m", "bytewax.run", factory, *args], cwd=REPO, timeout=180,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def bad_messages(count: int) -> list[tuple[bytes, bytes]]:
    kinds = [b"not json", b"[1]", orjson.dumps({"symbol": "AAPL"}), b'{"symbol":"A","symbol":"B"}']
    return [(b"T%02d" % (i % 20), kinds[i % len(kinds)] + b" " * (i // len(kinds))) for i in range(count)]


def test_each_bad_message_has_one_dead_letter_across_restarts_and_worker_counts(lake, tmp_path):
    settings, topic, bucket = lake
    bad = bad_messages(27)
    produce(settings, topic, [trade(i) for i in range(300)] + bad + [trade(i) for i in range(300, 600)])
    recovery = init_recovery(tmp_path / "recovery")
    run_consumer(topic, bucket)
    run_consumer(topic, bucket, "-w", "2")  # no recovery: re-reads everything
    run_consumer(topic, bucket, "-w", "3", "-r", str(recovery), "-s", "1", "-b", "0")  # a fresh recovery store
    produce(settings, topic, bad_messages(30)[27:])
    run_consumer(topic, bucket, "-r", str(recovery), "-s", "1", "-b", "0")

    dead = read_topic(settings, f"{topic}.dlq")
    origins = sorted((int(dict(m.headers())["dlq.partition"]), int(dict(m.headers())["dlq.offset"])) for m in dead)
    assert len(origins) == 30 and len(set(origins)) == 30
    ids = stored(settings, bucket)
    assert len(ids) == 600 and pc.count_distinct(ids).as_py() == 600


def oversized_trade(size: int) -> bytes:
    """A trade of exactly `size` bytes whose `exchange` field is far too long (so it is a dead letter)."""
    message = orjson.loads(trade(0)[1]) | {"exchange": ""}
    filler = size - len(orjson.dumps(message))
    return orjson.dumps(message | {"exchange": "X" * filler})


def test_dead_letters_of_messages_around_the_broker_limit_always_fit(lake):
    settings, topic, bucket = lake
    produce(settings, topic, [trade(0)])  # creates the topic
    limit = settings.kafka_cluster().topic_message_limit(topic)
    sizes = {"well under": 100_000, "just under": limit - 2_000, "at": limit, "over": limit + 50_000}
    # compressed, each is accepted by the broker however large it is unpacked
    producer = Producer({**settings.kafka_client_config(), "compression.type": "lz4", "message.max.bytes": 2_000_000})
    originals = {}
    for name, size in sizes.items():
        originals[name] = oversized_trade(size)
        producer.produce(topic, originals[name], b"T00", partition=0)
    assert producer.flush(30) == 0
    produce(settings, topic, [trade(i) for i in range(1, 200)])

    run_consumer(topic, bucket)
    run_consumer(topic, bucket)  # a restart publishes none of them again

    dead = {int(dict(m.headers())["dlq.offset"]): m for m in read_topic(settings, f"{topic}.dlq")}
    assert len(dead) == 4
    fs = lake_filesystem(settings)
    by_size = {len(original): name for name, original in originals.items()}
    matched = set()
    for offset, message in sorted(dead.items()):
        headers = dict(message.headers())
        assert b"'exchange' must be at most 16" in headers["dlq.reason"]
        # told apart by size, not by offset: a batch the producer retries can land after the next one
        name = by_size[int(headers["dlq.original.size"]) if "dlq.original.size" in headers else len(message.value())]
        original = originals[name]
        matched.add(name)
        if name == "well under":
            assert message.value() == original and "dlq.original.uri" not in headers
            continue
        assert len(message.value()) <= 4096 and original.startswith(message.value()), name
        assert int(headers["dlq.original.size"]) == len(original)
        assert headers["dlq.original.sha256"] == hashlib.sha256(original).hexdigest().encode()
        uri = headers["dlq.original.uri"].decode()
        assert uri == f"s3://{bucket}/_dead_letters/{topic}/{headers['dlq.incarnation'].decode()}/0/{offset:020d}"
        assert fs.cat(uri.removeprefix("s3://")) == original
    assert matched == set(originals)
    assert len(stored(settings, bucket)) == 200


def test_dead_letters_wait_for_a_broker_that_is_down_and_are_published_once_it_is_back(stack, tmp_path, unique):
    from functools import cache
    from threading import Thread

    from sinks.dead_letters import DeadLetter, DeadLetterSink
    from sinks.object_store import ObjectStore
    from tests.conftest import make_settings
    from tests.integration.private_servers import PrivateKafka

    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    try:
        settings = make_settings(kafka_bootstrap_servers=kafka.bootstrap, kafka_topic_partitions=2)
        sink = DeadLetterSink(settings.kafka_cluster(), topic=f"dl_{unique}.dlq", source_topic=f"dl_{unique}", bucket="unused",
                              store=cache(lambda: ObjectStore(settings.s3_storage_options())), delivery_timeout_ms=2_000)
        part = sink.build("dead_letter", 0, 1)
        incarnation = settings.kafka_cluster().topic_incarnation(f"dl_{unique}")
        letters = [DeadLetter("stock", f"dl_{unique}", incarnation, 1, offset, b"k", b"bad", "why")
                   for offset in (7, 8)]
        kafka.stop()
        writer = Thread(target=part.write_batch, args=(letters,))
        writer.start()
        writer.join(8)
        assert writer.is_alive(), "write_batch returned while the broker was down"
        kafka.start()
        writer.join(120)
        assert not writer.is_alive()
        part.write_batch(letters)  # replayed: already published
        part.close()
        dead = read_topic(settings, f"dl_{unique}.dlq")
        assert sorted(int(dict(m.headers())["dlq.offset"]) for m in dead) == [7, 8]
    finally:
        kafka.stop()
